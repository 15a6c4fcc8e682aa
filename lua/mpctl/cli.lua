-- mpctl.cli: the command line. A few commands are written here (recipes, test, sim; ports in
-- mpctl.cli.ports); the tool commands (fs, exec, run, repl, firmware, history, ...) are scripts in
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
  station RECIPE [k=v ...]  a flashing station: runs RECIPE on every board plugged in, a
                            PASS/FAIL line each, a CSV/JSONL log, totals at Ctrl-C (watch=,
                            again=yes, data=FILE, log=FILE, devices=no; --jobs, --board-timeout)
  help [RECIPE]             this text, or a recipe's description and options
  ls|cat|cp|rm|mkdir|sha256|rmdir|touch|tree|df ...   the same as mpctl fs ... (mpremote's habits)
  CMD ... + CMD ...         several commands on one connection:
                            mpctl -p P cp a.py :a.py + exec 'import a' + ls

Tool commands (mpctl help NAME): %COMMANDS%

Workflow recipes (mpctl recipes lists them all): esp32_flash, verify_repl, rollback, ...
  RECIPE is a path to a .lua file or a name looked up in ./recipes, $MPCTL_PATH,
  ~/.config/mpctl/recipes, then the installed recipes. Its options (mpctl help RECIPE lists
  them, with types and defaults): name=VALUE, --name=VALUE, --name VALUE, or --name alone for
  a yes|no option.

Options:
  -p, --port PORT   serial port: /dev/ttyUSB0, socket://HOST:PORT, rfc2217://HOST:PORT, sim://NAME,
                    auto (every attached board of the recipe's family); default $MPCTL_PORT.
                    Several --port (or auto finding several): the recipe runs on every board at
                    once, a line per board, then a table (exit 0 only if all passed)
  --ports FILE      the boards' ports, one per line (local and rfc2217:// mixed)
  --jobs N          boards at once (default all); --board-timeout T: per board (default 10m)
  --junit FILE      (several boards) one JUnit test case per board
  -b, --baud N      baud rate
  --board ID        board id (boards/ID.lua), e.g. ESP32_GENERIC
  -v, --verbose     more output (twice: debug)
  -q, --quiet       errors only (what a command was asked for, e.g. ls, still prints)
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


local args = require("mpctl.cli.args")
local lookup = require("mpctl.cli.lookup")
local usage_error, check_builtin_options = args.usage_error, args.check_builtin_options
-- The pieces, under the names tests and other modules use.
M.parse, M.closest, M.check_builtin_options = args.parse, args.closest, args.check_builtin_options
for _, k in ipairs({ "recipe_dirs", "installed_recipe_dirs", "recipe_meta", "all_recipes", "find_command",
  "command_names", "find_recipe" }) do
  M[k] = lookup[k]
end

-- ---------------------------------------------------------------------------------------
-- recipes


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
    -- under --json the same as one structured event, for tools that build forms from it
    local meta = M.recipe_meta(path)
    local opts = {}
    for _, o in ipairs(meta.options) do
      opts[#opts + 1] = { name = o.name, type = o.spec, default = o.default, help = o.help,
        values = o.words and #o.words > 0 and o.words or nil }
    end
    require("mpctl.output").result({ event = "help", name = name, path = path,
      description = meta.description, options = require("mpctl.ui").array(opts) }, recipe_help(path, name))
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
    port = parsed.opts.port, baud = parsed.opts.baud and tonumber(parsed.opts.baud), board = parsed.opts.board,
    timeout = parsed.opts.timeout, verbose = (parsed.opts.verbose or 0) > 0,
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

local ports = require("mpctl.cli.ports")
-- Under the names tests and other modules use.
M.describe_ports, M.auto_port = ports.describe, ports.auto

-- `mpctl station RECIPE ...`: mpctl.many.station
local function cmd_station(parsed, info, argv)
  return require("mpctl.many.station").run(parsed, info, argv)
end

local BUILTIN = { ports = ports.run, recipes = cmd_recipes, test = cmd_test, sim = cmd_sim, station = cmd_station }

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
  station = { jobs = true, ["board-timeout"] = true, board = true, baud = true, words = true },
}

-- Typed options of the built-in commands (mpctl.options specs), e.g. `mpctl test --timeout 30`:
-- parsed as declared options (so `--timeout 30` takes its value), converted into opts.
local BUILTIN_TYPED = {
  test = { timeout = { name = "timeout", kind = "seconds", spec = "seconds" } },
}

local function builtin_typed_options(argv, parsed, cmd)
  local decl = BUILTIN_TYPED[cmd]
  if not decl then return parsed end
  local again = M.parse(argv, decl)
  again.opts.json, again.opts.quiet = parsed.opts.json, parsed.opts.quiet
  local flags = {}
  for _, f in ipairs(again.opts._recipe_flags or {}) do
    if decl[f] then
      local v, why = require("mpctl.options").convert(decl[f], again.arg[f])
      if v == nil then usage_error(string.format("%s: bad value for --%s: '%s' (%s)", cmd, f, tostring(again.arg[f]), why)) end
      again.opts[f], again.arg[f] = v, nil
    else
      flags[#flags + 1] = f
    end
  end
  again.opts._recipe_flags = flags
  return again
end

-- Text a person asked for (help): stdout, or an output event under --json (mpctl.output).
local function say(_, text)
  require("mpctl.output").out(text)
end

-- `mpctl ls|cat|cp|rm|rmdir|mkdir|touch|tree|df|sha256 ...` = `mpctl fs ...`, as mpremote
-- users type them (fs itself says which of them it does).
local FS_ALIASES = { ls = true, cat = true, cp = true, rm = true, rmdir = true, mkdir = true, touch = true,
  tree = true, df = true, sha256 = true }

-- The port a command uses when none is given: $MPCTL_PORT; `auto` (there or in --port) picks
-- the only attached board.
function M.default_port(parsed)
  if M.shared_port then -- a chain (a + b): every command uses the connection the CLI opened
    parsed.arg.port, parsed.opts.port = M.shared_port, M.shared_port
    return
  end
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

-- The usage text, with the tool commands this installation has.
function M.usage()
  local ok, names = pcall(M.command_names)
  return (USAGE:gsub("%%COMMANDS%%", ok and table.concat(names, ", ") or "fs, exec, run, repl, firmware, history"))
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
      say(opts, M.usage())
      return EXIT_OK
    end
  end
  if not cmd then
    if opts.help then say(opts, M.usage()) return EXIT_OK end
    io.stderr:write(M.usage())
    return EXIT_USAGE
  end
  if BUILTIN[cmd] then
    if opts.help then say(opts, M.usage()) return EXIT_OK end
    parsed = builtin_typed_options(argv, parsed, cmd)
    local accepted = BUILTIN_OPTIONS[cmd] or {}
    check_builtin_options(parsed, cmd, accepted)
    if not accepted.words and (#parsed.arg > 0 or parsed.opts._keys) then
      usage_error(string.format("%s takes no words or settings (got '%s'; mpctl help)", cmd, parsed.words[1]))
    end
    return BUILTIN[cmd](parsed, info, argv)
  end
  -- mpremote's file commands: `mpctl ls :` is `mpctl fs ls :`
  if FS_ALIASES[cmd] and not M.find_command(cmd) then
    argv = table.move(argv, 1, #argv, 1, {})
    table.insert(argv, opts._command_index, "fs")
    return dispatch(argv, M.parse(argv), info)
  end
  -- several boards (--port given more than once, --ports FILE, --port auto finding several):
  -- one child per board under a supervisor (mpctl.many)
  local boards = require("mpctl.many").boards(parsed, info)
  if boards then return require("mpctl.many").run(argv, parsed, info, boards) end
  M.default_port(parsed)
  -- the port as resolved (`--port auto`: the one board of the recipe's family found)
  local resolved = parsed.arg.port
  -- now that the recipe is known, parse again so its declared options take values
  local path = M.find_recipe(cmd, info)
  if not parsed.opts.help then
    local meta = M.recipe_meta(path)
    if next(meta.option_names) then
      parsed = M.parse(argv, meta.by_name)
      parsed.opts.json, parsed.opts.quiet = opts.json, opts.quiet
      if resolved ~= nil then parsed.arg.port, parsed.opts.port = resolved, resolved end
      M.default_port(parsed)
    end
  end
  return run_recipe(parsed, info, say)
end

-- Several commands on one connection: `mpctl -p P cp a.py :a.py + exec 'import a' + ls`
-- (mpctl.cli.chain). Stops at the first command that does not succeed, with its exit code.
local function run_chain(segs, first, info)
  local chain = require("mpctl.cli.chain")
  local idx = first.opts._command_index
  if not idx then usage_error("a chain needs a command before each '+' (mpctl -p P ls + exec 'print(1)')") end
  local prefix = table.move(segs[1], 1, idx - 1, 1, {})
  M.default_port(first)
  local url = first.arg.port
  if url == nil then
    usage_error("a chain (CMD + CMD) runs on one connection: give --port PORT or set MPCTL_PORT")
  end
  chain.install()
  local port <close> = require("mpctl.serial").open(url, { baud = first.opts.baud or 115200 })
  M.shared_port = chain.borrow(port)
  for i, seg in ipairs(segs) do
    local argv = i == 1 and seg or table.move(seg, 1, #seg, #prefix + 1, table.move(prefix, 1, #prefix, 1, {}))
    local rc = dispatch(argv, M.parse(argv), info)
    if rc ~= EXIT_OK then return rc end
  end
  return EXIT_OK
end

function M.main(argv, info)
  local segs, chain_err = require("mpctl.cli.chain").split(argv)
  local ok, parsed = pcall(M.parse, segs and segs[1] or argv)
  if ok and chain_err then ok, parsed = false, { usage = true, msg = chain_err } end
  if not ok then
    local json = false
    for _, w in ipairs(argv) do if w == "--json" then json = true end end
    configure_ui({ json = json, verbose = 0 })
    report_error(parsed, { json = json, verbose = 0 })
    return EXIT_USAGE
  end
  local opts = parsed.opts
  configure_ui(opts)
  local rok, rv
  if segs then
    rok, rv = pcall(run_chain, segs, parsed, info)
  else
    rok, rv = pcall(dispatch, argv, parsed, info)
  end
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
