-- mpctl.cli: the command line. A few commands are written here (ports, recipes, test, sim);
-- the tool commands (fs, exec, run, repl, firmware, history, ...) are scripts in
-- lua/mpctl/commands/, in the recipe format; every other word names a workflow recipe, so teams
-- add workflows by dropping a .lua file into recipes/.
--
-- Exit codes: 0 success, 1 recipe or test failure, 2 usage error.

local M = {}

local EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

local USAGE = [[
usage: mpctl [options] COMMAND|RECIPE [options] [key=value ...] [words ...]

Built-in commands:
  ports                     serial ports with USB ids, the board they look like and, when a
                            MicroPython REPL answers, what it runs (--json, --probe, --no-probe)
  recipes                   the recipes mpctl can find, with their descriptions
  test PATH... [--port P]   run test files (*_test.lua, and device *.py with --port);
                            --tap, --junit FILE; ends with "N passed, N failed"
  sim NAME --listen URL     serve a simulated device (pty, socket://, rfc2217://127.0.0.1:PORT)
  help [RECIPE]             this text, or a recipe's description and options

Tool commands (mpctl help NAME): fs, exec, run, repl, firmware, history

Workflow recipes (mpctl recipes lists them all): esp32_flash, verify_repl, rollback, ...
  RECIPE is a path to a .lua file or a name looked up in ./recipes, $MPCTL_PATH,
  ~/.config/mpctl/recipes, then the installed recipes.

Options:
  --port PORT       serial port: /dev/ttyUSB0, socket://HOST:PORT, rfc2217://HOST:PORT, sim://NAME
  --baud N          baud rate
  --board ID        board id (boards/ID.lua), e.g. ESP32_GENERIC
  -v, --verbose     more output (twice: debug)
  -q, --quiet       errors only
  --json            events as JSON lines on stdout, for other programs
  --allow-exec      let the recipe run programs (os.execute, io.popen) and load native code
  --version         print the version
  -h, --help        this text
  --                everything after it is a plain word for the recipe

Exit codes: 0 success, 1 recipe or test failure, 2 usage error.
]]

-- Options every recipe accepts; --name VALUE takes the next word unless written --name=VALUE.
local VALUE_OPTIONS = { port = true, baud = true, board = true, device = true, junit = true, listen = true }
local FLAG_OPTIONS = { json = true, quiet = true, verbose = true, help = true, version = true,
  tap = true, ["allow-exec"] = true, probe = true, ["no-probe"] = true }
-- Options every recipe sees in its arg table.
local RECIPE_OPTIONS = { "port", "baud", "board", "device" }
local SHORT = { v = "verbose", q = "quiet", h = "help" }

-- ---------------------------------------------------------------------------------------
-- helpers

local function usage_error(msg)
  error({ usage = true, msg = msg }, 0)
end

-- The candidates closest to `word`, best first (at most `n`, only reasonably close ones).
function M.closest(word, candidates, n)
  return require("mpctl.text").closest(word, candidates, n or 3)
end

-- Parses argv into { command=, opts={}, arg={ positional..., key=value } }.
-- key=value words land in arg; malformed ones (no key, no value) are usage errors.
-- `declared`: the recipe's own options ({name=true}); written `--name VALUE` they take the next
-- word, like --port does.
function M.parse(argv, declared)
  declared = declared or {}
  local opts, arg, words = { verbose = 0 }, {}, {}
  local command
  local i, rest = 1, false
  local function set_option(name, value)
    if name == "verbose" then opts.verbose = opts.verbose + 1
    else opts[name] = value end
  end
  while i <= #argv do
    local w = argv[i]
    if rest then
      if command == nil then command = w else arg[#arg + 1] = w; words[#words + 1] = w end
    elseif w == "--" then
      rest = true
    elseif w:sub(1, 2) == "--" and #w > 2 then
      local name, value = w:match("^%-%-([^=]+)=(.*)$")
      name = name or w:sub(3)
      if (VALUE_OPTIONS[name] or declared[name]) and value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then usage_error("option --" .. name .. " needs a value") end
      end
      if VALUE_OPTIONS[name] or FLAG_OPTIONS[name] then
        set_option(name, value == nil and true or value)
      else
        -- recipe-specific option: validated against the recipe's @option lines later
        arg[name] = (value == nil) and true or value
        opts._recipe_flags = opts._recipe_flags or {}
        opts._recipe_flags[#opts._recipe_flags + 1] = name
      end
    elseif w:sub(1, 1) == "-" and #w > 1 and not w:match("^%-%d") then
      for c in w:sub(2):gmatch(".") do
        if SHORT[c] then set_option(SHORT[c], true)
        else
          arg[c] = true
          opts._recipe_flags = opts._recipe_flags or {}
          opts._recipe_flags[#opts._recipe_flags + 1] = c
        end
      end
    elseif command == nil then
      command = w
    else
      words[#words + 1] = w
      local key, value = w:match("^([%a_][%w_%-]*)=(.*)$")
      if key then
        if value == "" then usage_error("'" .. w .. "' has no value (write key=value)") end
        arg[key] = value
        opts._keys = opts._keys or {}
        opts._keys[#opts._keys + 1] = key
      elseif w:sub(1, 1) == "=" then
        usage_error("'" .. w .. "' has no key (write key=value)")
      else
        arg[#arg + 1] = w
      end
    end
    i = i + 1
  end
  for _, k in ipairs(RECIPE_OPTIONS) do
    if opts[k] ~= nil and arg[k] == nil then arg[k] = opts[k] end
  end
  return { command = command, opts = opts, arg = arg, words = words }
end

-- ---------------------------------------------------------------------------------------
-- recipes

local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- Folders searched for recipes, in order.
function M.recipe_dirs(info)
  local fs = require("mpctl.fs")
  local dirs = { "recipes" }
  for dir in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do
    dirs[#dirs + 1] = dir .. "/recipes"
    dirs[#dirs + 1] = dir
  end
  dirs[#dirs + 1] = fs.xdg("config") .. "/recipes"
  if info.datadir then dirs[#dirs + 1] = info.datadir .. "/recipes" end
  return dirs
end

-- Where `require("NAME")` in a recipe finds a workflow recipe shipped with mpctl (after the
-- folder of the recipe itself): the installed recipes folder.
function M.installed_recipe_dirs(info)
  return info.datadir and { info.datadir .. "/recipes" } or {}
end

-- Reads a recipe's declared description (`--- text`) and options (`-- @option name: help`).
function M.recipe_meta(path)
  local meta = { options = {}, option_names = {} }
  local f = io.open(path, "r")
  if not f then return meta end
  for line in f:lines() do
    local d = line:match("^%-%-%-%s*(.-)%s*$")
    if d and not meta.description and d ~= "" then meta.description = d end
    local name, help = line:match("^%-%-%s*@option%s+([%w_%-]+)%s*:?%s*(.-)%s*$")
    if name then
      meta.options[#meta.options + 1] = { name = name, help = help }
      meta.option_names[name] = true
    end
    if line:match("^%-%-%s*@raw%-args") then meta.raw_args = true end
    if not line:match("^%-%-") and not line:match("^%s*$") then break end
  end
  f:close()
  return meta
end

-- Every recipe name found, first one wins: { name = path }.
function M.all_recipes(info)
  local fs = require("mpctl.fs")
  local found, order = {}, {}
  for _, dir in ipairs(M.recipe_dirs(info)) do
    local st = fs.stat(dir)
    if st and st.type == "dir" then
      for _, name in ipairs(fs.list(dir)) do
        local base = name:match("^(.+)%.lua$")
        if base and not found[base] then
          found[base] = fs.join(dir, name)
          order[#order + 1] = base
        end
      end
    end
  end
  table.sort(order)
  return found, order
end

-- A tool command shipped with mpctl: lua/mpctl/commands/NAME.lua on the library path (the
-- installed library, or an MPCTL_PATH folder's lua/). Found before recipes, so a recipe folder
-- cannot shadow `fs` or `firmware` by accident.
function M.find_command(word)
  if not word:match("^[%w_%-]+$") then return nil end
  return package.searchpath("mpctl.commands." .. word, package.path)
end

-- The tool command names, sorted (for help and "did you mean").
function M.command_names()
  local fs = require("mpctl.fs")
  local names, seen = {}, {}
  for dir in package.path:gmatch("([^;]+)/%?%.lua") do
    local st = fs.stat(dir .. "/mpctl/commands")
    if st and st.type == "dir" then
      for _, f in ipairs(fs.list(dir .. "/mpctl/commands")) do
        local base = f:match("^(.+)%.lua$")
        if base and not seen[base] then seen[base] = true; names[#names + 1] = base end
      end
    end
  end
  table.sort(names)
  return names
end

function M.find_recipe(word, info)
  if word:find("/", 1, true) or word:match("%.lua$") then
    if file_exists(word) then return word end
    usage_error("no recipe file " .. word)
  end
  local cmd = M.find_command(word)
  if cmd then return cmd end
  for _, dir in ipairs(M.recipe_dirs(info)) do
    local p = dir .. "/" .. word .. ".lua"
    if file_exists(p) then return p end
  end
  local _, names = M.all_recipes(info)
  for _, c in ipairs(M.command_names()) do names[#names + 1] = c end
  local near = M.closest(word, names)
  usage_error("unknown command or recipe '" .. word .. "'" ..
    (#near > 0 and ("; did you mean: " .. table.concat(near, ", ") .. "?") or "") ..
    " (mpctl recipes lists them)")
end

local COMMON_RECIPE_KEYS = { port = true, baud = true, board = true, device = true }

local function check_recipe_options(parsed, meta, name)
  if #meta.options == 0 then return end -- a recipe that declares nothing takes anything
  local declared = {}
  for _, o in ipairs(meta.options) do declared[#declared + 1] = o.name end
  local function check(key, kind)
    if COMMON_RECIPE_KEYS[key] or meta.option_names[key] then return end
    local near = M.closest(key, declared)
    usage_error(string.format("%s: unknown %s '%s'%s (mpctl help %s)", name, kind, key,
      #near > 0 and ("; did you mean " .. table.concat(near, ", ") .. "?") or "", name))
  end
  for _, f in ipairs(parsed.opts._recipe_flags or {}) do check(f, "option") end
  if not meta.raw_args then
    for _, k in ipairs(parsed.opts._keys or {}) do check(k, "setting") end
  end
end

-- A recipe declaring `-- @raw-args` takes key=value-looking words (Python code like `x=1`)
-- as plain words, in the order given.
local function unparse_keys(parsed)
  for _, k in ipairs(parsed.opts._keys or {}) do parsed.arg[k] = nil end
  for i = #parsed.arg, 1, -1 do parsed.arg[i] = nil end
  for i, w in ipairs(parsed.words) do parsed.arg[i] = w end
  parsed.opts._keys = nil
end

local function recipe_help(path, name)
  local meta = M.recipe_meta(path)
  local out = { "mpctl " .. name .. ": " .. (meta.description or "(no description)"), "  file: " .. path }
  if #meta.options > 0 then
    out[#out + 1] = "  options (as --name or name=value):"
    for _, o in ipairs(meta.options) do
      out[#out + 1] = string.format("    %-14s %s", o.name, o.help)
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local function run_recipe(parsed, info)
  local path = M.find_recipe(parsed.command, info)
  local name = path:match("([^/]+)%.lua$") or path
  if parsed.opts.help then
    io.stdout:write(recipe_help(path, name))
    return EXIT_OK
  end
  local meta = M.recipe_meta(path)
  if meta.raw_args then unparse_keys(parsed) end
  check_recipe_options(parsed, meta, name)
  local sandbox = require("mpctl.sandbox")
  local env = sandbox.env(path, { allow_exec = parsed.opts["allow-exec"], arg = parsed.arg,
    recipe_dirs = M.installed_recipe_dirs(info) })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then
    io.stderr:write("mpctl: " .. tostring(err) .. "\n")
    return EXIT_FAIL
  end
  local result = table.pack(xpcall(chunk, function(e)
    if type(e) == "table" then return e end
    return { msg = tostring(e), traceback = debug.traceback(tostring(e), 2) }
  end))
  if result[1] then
    local rv = result[2]
    if type(rv) == "number" then return math.tointeger(rv) or EXIT_FAIL end
    if rv == false then return EXIT_FAIL end
    return EXIT_OK
  end
  error(result[2], 0)
end

-- ---------------------------------------------------------------------------------------
-- built-in commands

local function cmd_recipes(parsed, info)
  local found, order = M.all_recipes(info)
  local ui = require("mpctl.ui")
  if parsed.opts.json then
    for _, name in ipairs(order) do
      io.stdout:write(ui.json_encode({ name = name, path = found[name],
        description = M.recipe_meta(found[name]).description or "" }) .. "\n")
    end
    return EXIT_OK
  end
  for _, name in ipairs(order) do
    io.stdout:write(string.format("%-18s %s\n", name, M.recipe_meta(found[name]).description or ""))
  end
  return EXIT_OK
end

-- Board families guessed from USB ids in boards/*.lua.
local function guess_boards(vid, pid)
  if not vid then return {} end
  local ok, board = pcall(require, "mpctl.board")
  if not ok or not board.match_usb then return {} end
  local ok2, list = pcall(board.match_usb, vid, pid)
  if not ok2 then return {} end
  local fams, seen = {}, {}
  for _, b in ipairs(list) do
    local f = b.family or b.chip or b.id
    if not seen[f] then seen[f] = true; fams[#fams + 1] = f end
  end
  return fams, list
end

function M.describe_ports(ports)
  local rows = {}
  for _, p in ipairs(ports) do
    local fams, boards = guess_boards(p.vid, p.pid)
    local ids = {}
    for _, b in ipairs(boards or {}) do ids[#ids + 1] = b.id end
    rows[#rows + 1] = {
      path = p.path, vid = p.vid, pid = p.pid, serial = p.serial,
      manufacturer = p.manufacturer, product = p.product, description = p.description,
      transport = p.transport, families = fams, boards = ids,
      usb = p.vid and string.format("%04X:%04X", p.vid, p.pid) or nil,
    }
  end
  table.sort(rows, function(a, b) return a.path < b.path end)
  return rows
end

-- Asks the REPL on a port what firmware runs there (board id, version). Short timeouts: a
-- port with no MicroPython behind it must not hold up the listing. Busy ports are left alone.
local function probe_port(path)
  local ok, result = pcall(function()
    local port <close> = require("mpctl.serial").open(path, { baud = 115200, timeout = 1 })
    local repl = require("mpctl.repl").attach(port, { timeout = 1 })
    local id = require("mpctl.firmware").identify(repl)
    pcall(repl.close, repl)
    return id
  end)
  return ok and result or nil
end

local function cmd_ports(parsed)
  local serial = require("mpctl.serial")
  local ui = require("mpctl.ui")
  -- --port P: describe just that port (any URL, e.g. rfc2217:// or sim://), always probed
  local listed = parsed.opts.port and { { path = parsed.opts.port } } or serial.list()
  if parsed.opts.port then parsed.opts.probe = true end
  local rows = M.describe_ports(listed)
  -- By default only USB ports are asked (a bare UART may have anything behind it);
  -- --probe asks every port, --no-probe none.
  for _, r in ipairs(rows) do
    if not parsed.opts["no-probe"] and (parsed.opts.probe or r.usb) then
      local id = probe_port(r.path)
      if id then
        r.firmware = { board = id.board, variant = id.variant, version = id.version, machine = id.machine }
      end
    end
  end
  -- USB devices without a serial port (DFU, BOOTSEL): mpctl.dfu.ports
  local usb_rows = {}
  if not parsed.opts.port then usb_rows = require("mpctl.dfu.ports").rows() end
  if parsed.opts.json then
    for _, r in ipairs(rows) do io.stdout:write(ui.json_encode(r) .. "\n") end
    require("mpctl.dfu.ports").write(usb_rows, true)
    return EXIT_OK
  end
  require("mpctl.dfu.ports").write(usb_rows, false)
  if #rows == 0 and #usb_rows > 0 then return EXIT_OK end
  if #rows == 0 then
    io.stdout:write("no serial ports found (try --port sim://micropython for the built-in simulator)\n")
    return EXIT_OK
  end
  for _, r in ipairs(rows) do
    local what = table.concat({ r.manufacturer or "", r.product or r.description or "" }, " "):gsub("^%s+", "")
    local runs = ""
    if r.firmware then
      runs = "runs MicroPython " .. (r.firmware.version or "?") ..
        (r.firmware.board and (" (" .. r.firmware.board .. (r.firmware.variant and ("-" .. r.firmware.variant) or "") .. ")") or "")
    end
    io.stdout:write(string.format("%-20s %-10s %-14s %-30s %s %s\n", r.path, r.usb or "-", r.serial or "-",
      what, #r.families > 0 and ("looks like: " .. table.concat(r.families, "/")) or "", runs))
  end
  return EXIT_OK
end

local function cmd_test(parsed, info)
  local paths = {}
  for i = 1, #parsed.arg do paths[i] = parsed.arg[i] end
  if #paths == 0 then usage_error("mpctl test needs at least one file or folder") end
  local sandbox = require("mpctl.sandbox")
  local test = require("mpctl.test")
  local _, failed = test.run({
    paths = paths, tap = parsed.opts.tap, junit = parsed.opts.junit,
    port = parsed.opts.port, baud = parsed.opts.baud and tonumber(parsed.opts.baud),
    exe = info.exe,
    env_for = function(file)
      return sandbox.env(file, { allow_exec = parsed.opts["allow-exec"], arg = parsed.arg })
    end,
  })
  return failed > 0 and EXIT_FAIL or EXIT_OK
end

-- `mpctl sim NAME --listen URL [k=v ...]`: serves a simulator. fd://N is the far end of a
-- sim:// port (RFC 2217 over a socketpair); other URLs are listeners the simulator accepts on.
local function cmd_sim(parsed)
  local name = parsed.arg[1]
  if not name then usage_error("mpctl sim needs a simulator name, e.g. mpctl sim micropython --listen pty") end
  local ok, sim = pcall(require, "mpctl.sim." .. name)
  if not ok then
    if tostring(sim):find("module 'mpctl.sim." .. name .. "' not found", 1, true) then
      usage_error("no simulator named '" .. name .. "'")
    end
    error(sim, 0)
  end
  -- USB simulators (mpctl sim pyboard [-- COMMAND]) serve a simulated bus, not a serial port
  if sim.usb then return sim.run(parsed) end
  local url = parsed.opts.listen or "pty"
  local serial = require("mpctl.serial")
  local opts = {}
  for k, v in pairs(parsed.arg) do if type(k) == "string" then opts[k] = v end end
  local target
  local fd = url:match("^fd://(%d+)$")
  if fd then
    target = serial.listen(url, { rfc2217 = true })
  else
    target = serial.listen(url, opts)
  end
  local rv = sim.serve(target, opts)
  return type(rv) == "number" and rv or EXIT_OK
end

local BUILTIN = { ports = cmd_ports, recipes = cmd_recipes, test = cmd_test, sim = cmd_sim }

-- ---------------------------------------------------------------------------------------

local function configure_ui(opts)
  local ok, ui = pcall(require, "mpctl.ui")
  if not ok then return end
  local level = "info"
  if opts.quiet then level = "quiet"
  elseif opts.verbose >= 2 then level = "debug"
  elseif opts.verbose == 1 then level = "verbose" end
  ui.configure({ level = level, json = opts.json and true or false })
end

local function report_error(e, opts)
  local msg, tb
  if type(e) == "table" then
    msg, tb = e.msg or e.message or tostring(e), e.traceback
  else
    msg = tostring(e)
  end
  local ok, ui = pcall(require, "mpctl.ui")
  if ok and opts.json then
    ui.event({ event = "error", message = msg, kind = require("mpctl.errors").kind(e),
      usage = type(e) == "table" and e.usage or nil })
  end
  io.stderr:write("mpctl: " .. msg .. "\n")
  if tb and opts.verbose and opts.verbose > 0 then io.stderr:write(tb .. "\n") end
end

function M.main(argv, info)
  local ok, parsed = pcall(M.parse, argv)
  if not ok then
    io.stderr:write("mpctl: " .. (type(parsed) == "table" and parsed.msg or tostring(parsed)) .. "\n")
    return EXIT_USAGE
  end
  local opts = parsed.opts
  configure_ui(opts)
  if opts.version and not parsed.command then
    io.stdout:write("mpctl " .. info.version .. "\n")
    return EXIT_OK
  end
  local cmd = parsed.command
  if cmd == "help" then
    if parsed.arg[1] then
      parsed.command, parsed.opts.help = parsed.arg[1], true
      table.remove(parsed.arg, 1)
      cmd = parsed.command
    else
      io.stdout:write(USAGE)
      return EXIT_OK
    end
  end
  if not cmd then
    if opts.help then io.stdout:write(USAGE) return EXIT_OK end
    io.stderr:write(USAGE)
    return EXIT_USAGE
  end
  if opts.help and BUILTIN[cmd] then
    io.stdout:write(USAGE)
    return EXIT_OK
  end
  local rok, rv = pcall(function()
    if BUILTIN[cmd] then return BUILTIN[cmd](parsed, info) end
    -- now that the recipe is known, parse again so its declared options take values
    if not parsed.opts.help then
      local meta = M.recipe_meta(M.find_recipe(cmd, info))
      if next(meta.option_names) then parsed = M.parse(argv, meta.option_names) end
    end
    return run_recipe(parsed, info)
  end)
  if rok then return rv end
  -- The exit code follows the error's kind (usage 2, interrupted 130, else 1). The report runs
  -- shielded: a pending Ctrl-C must not cut it short; then the interrupt is acknowledged.
  local errors = require("mpctl.errors")
  return errors.shield(function()
    require("mpctl.ui").finish_progress()
    report_error(rv, opts)
    require("mpctl.interrupt").acknowledge()
    if type(rv) == "table" and rv.usage then return EXIT_USAGE end
    return errors.exit_code(rv)
  end)
end

return M
