-- mpctl.cli: the command line. A few commands are written here (ports, recipes, test, sim);
-- the tool commands (fs, exec, run, repl, firmware, history, ...) are scripts in
-- lua/mpctl/commands/, in the recipe format; every other word names a workflow recipe, so teams
-- add workflows by dropping a .lua file into recipes/.
--
-- Exit codes: 0 success, 1 recipe or test failure, 2 usage error, 130 interrupted.

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
  ls|cat|cp|rm|mkdir|sha256|rmdir|touch|tree|df ...   the same as mpctl fs ... (mpremote's habits)

Tool commands (mpctl help NAME): fs, exec, run, repl, firmware, history

Workflow recipes (mpctl recipes lists them all): esp32_flash, verify_repl, rollback, ...
  RECIPE is a path to a .lua file or a name looked up in ./recipes, $MPCTL_PATH,
  ~/.config/mpctl/recipes, then the installed recipes.

Options:
  -p, --port PORT   serial port: /dev/ttyUSB0, socket://HOST:PORT, rfc2217://HOST:PORT, sim://NAME,
                    auto (the only attached board); default $MPCTL_PORT
  -b, --baud N      baud rate
  --board ID        board id (boards/ID.lua), e.g. ESP32_GENERIC
  -v, --verbose     more output (twice: debug)
  -q, --quiet       errors only
  --json            events as JSON lines on stdout, for other programs
  --allow-fs        let the recipe read and write files outside the current folder, its own
                    folder, MPCTL_PATH, mpctl's config/cache/state folders and the temp folder
  --allow-exec      let the recipe run programs (os.execute, io.popen) and load native code
                    (implies --allow-fs)
  --version         print the version
  -h, --help        this text
  --                everything after it is a plain word for the recipe

Exit codes: 0 success, 1 recipe or test failure, 2 usage error, 130 interrupted.
]]

-- Options mpctl itself knows. Value options take the next word (`--port P`) or `--port=P`;
-- flags stand alone.
local VALUE_OPTIONS = { port = true, baud = true, board = true, device = true, junit = true, listen = true }
local FLAG_OPTIONS = { json = true, quiet = true, verbose = true, help = true, version = true,
  tap = true, ["allow-exec"] = true, ["allow-fs"] = true, probe = true, ["no-probe"] = true }
-- Options every recipe sees in its arg table.
local RECIPE_OPTIONS = { "port", "baud", "board", "device" }
-- Short options: -v -q -h are flags; -p and -b take a value, as esptool users type them.
local SHORT = { v = "verbose", q = "quiet", h = "help", p = "port", b = "baud" }
-- Options any command accepts (the rest are checked per built-in command or by the recipe).
local GLOBAL_OPTIONS = { json = true, quiet = true, verbose = true, help = true, ["allow-exec"] = true,
  ["allow-fs"] = true }

-- ---------------------------------------------------------------------------------------
-- helpers

local function usage_error(msg)
  error({ usage = true, msg = msg }, 0)
end

-- The candidates closest to `word`, best first (at most `n`, only reasonably close ones).
function M.closest(word, candidates, n)
  return require("mpctl.text").closest(word, candidates, n or 3)
end

local function flag_value(name, value)
  if value == nil then return true end
  local v = require("mpctl.options").convert({ kind = "bool" }, value)
  if v == nil then usage_error("--" .. name .. "=" .. value .. ": accepted values: yes, no") end
  return v
end

-- Parses argv into { command=, opts={}, arg={ positional..., key=value } }.
-- key=value words land in arg; malformed ones (no key, no value) are usage errors.
-- `declared`: the recipe's own options by name (mpctl.options specs). A yes|no option given as
-- `--name` alone is true; any other declared option written `--name VALUE` takes the next word,
-- like --port does. `--name=VALUE` always gives a value.
function M.parse(argv, declared)
  declared = declared or {}
  local opts, arg, words = { verbose = 0, _given = {} }, {}, {}
  local command
  local i, rest = 1, false
  local function set_option(name, value)
    opts._given[#opts._given + 1] = name
    if name == "verbose" then opts.verbose = opts.verbose + (value == false and 0 or 1)
    else opts[name] = value end
  end
  local function recipe_flag(name, value)
    arg[name] = value
    opts._recipe_flags = opts._recipe_flags or {}
    opts._recipe_flags[#opts._recipe_flags + 1] = name
  end
  local function takes_value(name)
    if VALUE_OPTIONS[name] then return true end
    local o = declared[name]
    return o ~= nil and not require("mpctl.options").is_flag(o)
  end
  local function next_value(name)
    i = i + 1
    local value = argv[i]
    if value == nil then usage_error("option --" .. name .. " needs a value") end
    return value
  end
  while i <= #argv do
    local w = argv[i]
    if rest then
      if command == nil then command, opts._command_index = w, i else arg[#arg + 1] = w; words[#words + 1] = w end
    elseif w == "--" then
      rest = true
    elseif w:sub(1, 2) == "--" and #w > 2 then
      local name, value = w:match("^%-%-([^=]+)=(.*)$")
      name = name or w:sub(3)
      if value == nil and takes_value(name) then value = next_value(name) end
      if VALUE_OPTIONS[name] then
        if value == "" then usage_error("option --" .. name .. " needs a value") end
        set_option(name, value)
      elseif FLAG_OPTIONS[name] then
        set_option(name, flag_value(name, value))
      else
        -- recipe-specific option: checked against the recipe's @option lines later
        recipe_flag(name, value == nil and true or value)
      end
    elseif w:sub(1, 1) == "-" and #w > 1 and not w:match("^%-%d") then
      local j = 2
      while j <= #w do
        local c = w:sub(j, j)
        local long = SHORT[c]
        if long and VALUE_OPTIONS[long] then
          -- -p PORT or -pPORT
          local value = w:sub(j + 1)
          if value == "" then value = next_value(long) end
          set_option(long, value)
          break
        elseif long then
          set_option(long, true)
        elseif declared[c] and takes_value(c) then
          local value = w:sub(j + 1)
          if value == "" then value = next_value(c) end
          recipe_flag(c, value)
          break
        else
          recipe_flag(c, true)
        end
        j = j + 1
      end
    elseif command == nil then
      command, opts._command_index = w, i
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
  if opts.baud ~= nil then
    local b = math.tointeger(tonumber(opts.baud))
    if not b or b <= 0 then usage_error("--baud " .. tostring(opts.baud) .. ": expected a baud rate, e.g. 115200") end
    opts.baud = b
  end
  for _, k in ipairs(RECIPE_OPTIONS) do
    if opts[k] ~= nil and arg[k] == nil then arg[k] = opts[k] end
  end
  return { command = command, opts = opts, arg = arg, words = words }
end

-- A built-in command refuses options it does not know, naming the closest it does.
local function check_builtin_options(parsed, name, accepted)
  local known = {}
  for k in pairs(GLOBAL_OPTIONS) do known[#known + 1] = k end
  for k in pairs(accepted) do known[#known + 1] = k end
  local function refuse(opt)
    local near = M.closest(opt, known)
    usage_error(string.format("%s: unknown option --%s%s (mpctl help%s)", name, opt,
      #near > 0 and ("; did you mean --" .. table.concat(near, ", --") .. "?") or "",
      name:sub(1, 1) == "-" and "" or (" " .. name)))
  end
  for _, o in ipairs(parsed.opts._given) do
    if not GLOBAL_OPTIONS[o] and not accepted[o] then refuse(o) end
  end
  for _, o in ipairs(parsed.opts._recipe_flags or {}) do refuse(o) end
end
M.check_builtin_options = check_builtin_options

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

-- A recipe's header: description, typed options, @raw-args (see mpctl.options).
function M.recipe_meta(path)
  return require("mpctl.options").read_meta(path)
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

-- Holds this run to the recipe sandbox's file policy unless --allow-fs or --allow-exec was
-- given (mpctl.sandbox). `script`: the recipe file, whose folder is allowed (none for the tool
-- commands shipped with mpctl). Paths named on the command line are allowed: they are the
-- person's choice, not the recipe's.
function M.confine(parsed, info, script)
  if parsed.opts["allow-exec"] or parsed.opts["allow-fs"] then return end
  local named = {}
  for k, v in pairs(parsed.arg) do
    if type(v) == "string" and k ~= "port" then named[#named + 1] = v end
  end
  if parsed.opts.junit then named[#named + 1] = parsed.opts.junit end
  local sandbox = require("mpctl.sandbox")
  sandbox.confine(sandbox.policy({ script = script, named = named, datadir = info.datadir,
    realpath = require("mpctl.fs").realpath }))
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
    out[#out + 1] = "  options (name=VALUE, --name=VALUE, --name VALUE; a yes|no option alone: --name):"
    for _, line in ipairs(require("mpctl.options").help_lines(meta)) do out[#out + 1] = line end
  end
  return table.concat(out, "\n") .. "\n"
end

local function run_recipe(parsed, info, say)
  local path = M.find_recipe(parsed.command, info)
  local name = path:match("([^/]+)%.lua$") or path
  if parsed.opts.help then
    say(parsed.opts, recipe_help(path, name))
    return EXIT_OK
  end
  local meta = M.recipe_meta(path)
  if meta.raw_args then unparse_keys(parsed) end
  check_recipe_options(parsed, meta, name)
  require("mpctl.options").apply(meta, parsed.arg, name)
  local sandbox = require("mpctl.sandbox")
  local is_command = path == M.find_command(parsed.command)
  M.confine(parsed, info, is_command and nil or path)
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
  local output = require("mpctl.output")
  for _, name in ipairs(order) do
    local description = M.recipe_meta(found[name]).description or ""
    output.result({ event = "recipe", name = name, path = found[name], description = description },
      string.format("%-18s %s\n", name, description))
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
  if parsed.opts.json then
    for _, r in ipairs(rows) do ui.event(r) end
    return EXIT_OK
  end
  local output = require("mpctl.output")
  if #rows == 0 then
    output.out("no serial ports found (try --port sim://micropython for the built-in simulator)\n")
    return EXIT_OK
  end
  for _, r in ipairs(rows) do
    local what = table.concat({ r.manufacturer or "", r.product or r.description or "" }, " "):gsub("^%s+", "")
    local runs = ""
    if r.firmware then
      runs = "runs MicroPython " .. (r.firmware.version or "?") ..
        (r.firmware.board and (" (" .. r.firmware.board .. (r.firmware.variant and ("-" .. r.firmware.variant) or "") .. ")") or "")
    end
    output.out(string.format("%-20s %-10s %-14s %-30s %s %s\n", r.path, r.usb or "-", r.serial or "-",
      what, #r.families > 0 and ("looks like: " .. table.concat(r.families, "/")) or "", runs))
  end
  return EXIT_OK
end

local function cmd_test(parsed, info)
  local paths = {}
  for i = 1, #parsed.arg do paths[i] = parsed.arg[i] end
  if #paths == 0 then usage_error("mpctl test needs at least one file or folder") end
  local sandbox = require("mpctl.sandbox")
  if parsed.opts.port then M.default_port(parsed) end
  M.confine(parsed, info, nil)
  local test = require("mpctl.test")
  -- -q: only the failures, on stderr (they are the errors); --json: the runner's lines arrive as
  -- output events (mpctl.output) and a summary event ends the run.
  local out
  if parsed.opts.quiet and not parsed.opts.json then
    local in_failure = false
    out = function(s)
      if s:match("^FAIL ") or s:match("^not ok ") then in_failure = true
      elseif not (s:match("^      ") or s:match("^  # ")) then in_failure = false end
      if in_failure then io.stderr:write(s) end
    end
  end
  local passed, failed, skipped = test.run({
    out = out,
    paths = paths, tap = parsed.opts.tap, junit = parsed.opts.junit,
    port = parsed.opts.port, baud = parsed.opts.baud and tonumber(parsed.opts.baud),
    exe = info.exe,
    env_for = function(file)
      return sandbox.env(file, { allow_exec = parsed.opts["allow-exec"], arg = parsed.arg })
    end,
  })
  require("mpctl.ui").event({ event = "test_summary", passed = passed, failed = failed, skipped = skipped })
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
  if opts.quiet then level = "error"
  elseif opts.verbose >= 2 then level = "debug"
  elseif opts.verbose == 1 then level = "verbose" end
  ui.configure({ level = level, json = opts.json and true or false })
  require("mpctl.output").install({ json = opts.json, quiet = opts.quiet })
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
    local kind = type(e) == "table" and (e.kind or (e.usage and "usage") or (e.failure and "failed")) or "internal"
    ui.event({ event = "error", kind = kind, message = msg, usage = type(e) == "table" and e.usage or nil })
  end
  io.stderr:write("mpctl: " .. msg .. "\n")
  if tb and opts.verbose and opts.verbose > 0 then io.stderr:write(tb .. "\n") end
end

-- Options each built-in command accepts besides the global ones (--json, -q, -v, -h, --allow-*),
-- and whether it takes words.
local BUILTIN_OPTIONS = {
  ports = { port = true, baud = true, probe = true, ["no-probe"] = true },
  recipes = {},
  test = { port = true, baud = true, board = true, device = true, tap = true, junit = true, words = true },
  sim = { listen = true, words = true },
}

-- Text a person asked for (help): stdout, or an output event under --json (mpctl.output).
local function say(_, text)
  require("mpctl.output").out(text)
end

-- `mpctl ls|cat|cp|rm|rmdir|mkdir|touch|tree|df|sha256 ...` = `mpctl fs ...`, as mpremote
-- users type them (fs itself says which of them it does).
local FS_ALIASES = { ls = true, cat = true, cp = true, rm = true, rmdir = true, mkdir = true, touch = true,
  tree = true, df = true, sha256 = true }

-- The one attached device that looks like a board (its USB id is in a boards/ file: a
-- MicroPython USB port or a bootloader's serial bridge), from `rows` (describe_ports). Several
-- or none: a usage error listing what is there, so the person picks with --port.
function M.auto_port(rows)
  local hits = {}
  for _, r in ipairs(rows) do
    if r.boards and #r.boards > 0 then hits[#hits + 1] = r end
  end
  local function line(r)
    return string.format("%s (%s%s)", r.path, r.usb or "?",
      #r.families > 0 and (", looks like " .. table.concat(r.families, "/")) or "")
  end
  if #hits == 1 then return hits[1].path end
  if #hits == 0 then
    local present = {}
    for _, r in ipairs(rows) do present[#present + 1] = r.path end
    usage_error("--port auto: no MicroPython or bootloader device found by USB id (ports present: " ..
      (#present > 0 and table.concat(present, ", ") or "none") .. "); give --port PORT")
  end
  local lines = {}
  for _, r in ipairs(hits) do lines[#lines + 1] = "  " .. line(r) end
  usage_error("--port auto: several devices could be the board; pick one with --port:\n" .. table.concat(lines, "\n"))
end

-- The port a command uses when none is given: $MPCTL_PORT; `auto` (there or in --port) picks
-- the only attached board.
function M.default_port(parsed)
  local port = parsed.arg.port
  if port == nil then
    local env = os.getenv("MPCTL_PORT")
    if env and env ~= "" then port = env end
  end
  if port == "auto" then
    port = M.auto_port(M.describe_ports(require("mpctl.serial").list()))
  end
  if port ~= nil then parsed.arg.port, parsed.opts.port = port, port end
end

local function dispatch(argv, parsed, info)
  local opts = parsed.opts
  local cmd = parsed.command
  if opts.version and not cmd then
    check_builtin_options(parsed, "--version", { version = true })
    require("mpctl.output").result({ event = "version", version = info.version }, "mpctl " .. info.version .. "\n")
    return EXIT_OK
  end
  if opts.version then usage_error("--version takes no command (mpctl --version)") end
  if cmd == "help" then
    if parsed.arg[1] then
      parsed.command, parsed.opts.help = parsed.arg[1], true
      table.remove(parsed.arg, 1)
      cmd = parsed.command
    else
      say(opts, USAGE)
      return EXIT_OK
    end
  end
  if not cmd then
    if opts.help then say(opts, USAGE) return EXIT_OK end
    io.stderr:write(USAGE)
    return EXIT_USAGE
  end
  if BUILTIN[cmd] then
    if opts.help then say(opts, USAGE) return EXIT_OK end
    local accepted = BUILTIN_OPTIONS[cmd] or {}
    check_builtin_options(parsed, cmd, accepted)
    if not accepted.words and (#parsed.arg > 0 or parsed.opts._keys) then
      usage_error(string.format("%s takes no words or settings (got '%s'; mpctl help)", cmd, parsed.words[1]))
    end
    return BUILTIN[cmd](parsed, info)
  end
  -- mpremote's file commands: `mpctl ls :` is `mpctl fs ls :`
  if FS_ALIASES[cmd] and not M.find_command(cmd) then
    argv = table.move(argv, 1, #argv, 1, {})
    table.insert(argv, opts._command_index, "fs")
    return dispatch(argv, M.parse(argv), info)
  end
  M.default_port(parsed)
  -- now that the recipe is known, parse again so its declared options take values
  local path = M.find_recipe(cmd, info)
  if not parsed.opts.help then
    local meta = M.recipe_meta(path)
    if next(meta.option_names) then
      parsed = M.parse(argv, meta.by_name)
      parsed.opts.json, parsed.opts.quiet = opts.json, opts.quiet
      M.default_port(parsed)
    end
  end
  return run_recipe(parsed, info, say)
end

function M.main(argv, info)
  local ok, parsed = pcall(M.parse, argv)
  if not ok then
    local json = false
    for _, w in ipairs(argv) do if w == "--json" then json = true end end
    configure_ui({ json = json, verbose = 0 })
    report_error(parsed, { json = json, verbose = 0 })
    return EXIT_USAGE
  end
  local opts = parsed.opts
  configure_ui(opts)
  local rok, rv = pcall(dispatch, argv, parsed, info)
  if rok then return rv end
  -- The exit code follows the error's kind (usage 2, interrupted 130, else 1). The report runs
  -- shielded: a pending Ctrl-C must not cut it short; then the interrupt is acknowledged.
  local errors = require("mpctl.errors")
  return errors.shield(function()
    require("mpctl.ui").finish_progress()
    report_error(rv, opts)
    require("mpctl.interrupt").acknowledge()
    if type(rv) == "table" and (rv.usage or require("mpctl").is_usage_error(rv)) then return EXIT_USAGE end
    return errors.exit_code(rv)
  end)
end

return M
