-- mpctl.sandbox: the environment recipes, tool commands and test files run in.
--
-- Recipes are shared in git and run by people who did not write them. Without flags a recipe:
--   * cannot run programs or load native code: no os.execute, io.popen, package.loadlib, no
--     mpctl.proc, no debug library, no binary chunks, no string.dump;
--   * can `require` only the public API (ALLOWED below), Lua files beside it, DIR/lua modules of
--     MPCTL_PATH folders and the recipes shipped with mpctl; never mpctl.sandbox, mpctl.cli,
--     mpctl.proc or a simulator's internals (simulators only through sim:// URLs);
--   * has its own string, table, math, utf8, coroutine, os and io tables, and cannot reach a
--     metatable it did not set (getmetatable answers nil for strings and library objects), so
--     it cannot change what the library or the C side sees;
--   * reads and writes files only where `policy` allows (see M.policy): every path is resolved
--     with realpath first, so a symlink in an allowed folder pointing outside is refused. The
--     check is process-wide (M.confine): the library a recipe calls (mpctl.fs, io.open,
--     http.get{to=}, archive.extract, hash.file, the files a sim:// simulator is told to use) is
--     held to the same folders, so a recipe cannot launder a path through it.
-- `--allow-fs` lifts the file confinement; `--allow-exec` lifts everything (and implies it).

local M = {}

-- The modules a recipe may require (and their submodules, e.g. mpctl.esp.imagegen). New public
-- modules are added here.
local ALLOWED = {}
for _, name in ipairs({ "serial", "slip", "hash", "zlib", "http", "archive", "fs", "time", "ui", "repl",
  "esp", "dfu", "rp2", "usb", "firmware", "board", "history", "backup", "test", "errors", "target",
  "text", "mip" }) do
  ALLOWED[name] = true
end

local function module_allowed(name)
  if name == "mpctl" then return true end
  local top = name:match("^mpctl%.([%w_]+)")
  return top ~= nil and ALLOWED[top] == true
end
M.module_allowed = module_allowed

local function disabled(name)
  return function()
    error(name .. " is disabled in recipes; run mpctl with --allow-exec to allow it", 2)
  end
end

local function copy(t, keys)
  local out = {}
  if keys then
    for _, k in ipairs(keys) do out[k] = t[k] end
  else
    for k, v in pairs(t) do out[k] = v end
  end
  return out
end

-- ---------------------------------------------------------------------------------------
-- the file policy

local function access_error(path, what)
  local hint = "run mpctl with --allow-fs to allow it"
  local detail = "outside the folders a recipe may use"
  local msg = string.format("%s %s: %s; %s", what, path, detail, hint)
  local ok, errors = pcall(require, "mpctl.errors")
  if ok and errors.new then
    return errors.new({ kind = "access", where = path, detail = detail, hint = hint, msg = msg, op = what })
  end
  return setmetatable({ kind = "access", where = path, msg = msg }, { __tostring = function(x) return x.msg end })
end

-- Builds the policy for one run.
--   opts.script: the recipe or test file (its folder is allowed)
--   opts.named: paths the person named on the command line (allowed: it is their choice)
--   opts.datadir: mpctl's own data folder (read only)
--   opts.realpath: the unconfined fs.realpath
function M.policy(opts)
  local realpath = opts.realpath
  local cwd = realpath(".")
  local function abs(p)
    if p:sub(1, 1) == "/" then return p end
    return cwd .. "/" .. p
  end
  -- The real path of p: the whole path resolved when it exists; else its deepest existing
  -- folder resolved and the rest appended (which must not climb with ".."). `link_level`:
  -- resolve only the folder, for remove/rename, which act on a symlink itself.
  local function resolve(p, link_level)
    p = abs(p)
    local last = p:gsub("/+$", ""):match("[^/]+$")
    if last == "." or last == ".." then link_level = false end
    if not link_level then
      local ok, r = pcall(realpath, p)
      if ok then return r end
    end
    local rest = {}
    local dir = p:gsub("/+$", "")
    while true do
      local base = dir:match("[^/]+$")
      if not base then return nil end
      local parent = dir:sub(1, #dir - #base):gsub("/+$", "")
      if parent == "" then parent = "/" end
      table.insert(rest, 1, base)
      local ok, r = pcall(realpath, parent)
      if ok then
        -- below a folder that does not exist, "." and ".." cannot be resolved: refuse
        for _, part in ipairs(rest) do if part == "." or part == ".." then return nil end end
        return (r == "/" and "" or r) .. "/" .. table.concat(rest, "/")
      end
      if parent == "/" then return nil end
      dir = parent
    end
  end

  local rw, ro, files, prefixes = {}, {}, {}, {}
  local function add_dir(list, p)
    if not p or p == "" then return end
    local r = resolve(p)
    if r then list[#list + 1] = r end
  end
  local function add_file(p)
    if not p or p == "" then return end
    local r = resolve(p)
    if r then files[#files + 1] = r end
  end
  -- the current folder and the recipe's own folder: their subtrees, except $HOME's dotfiles
  local soft = {}
  add_dir(soft, ".")
  if opts.script then add_dir(soft, (opts.script:match("^(.*)/[^/]*$") or ".")) end
  for d in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do add_dir(rw, d) end
  local fs = require("mpctl.fs")
  for _, kind in ipairs({ "config", "cache", "state" }) do
    local ok, d = pcall(fs.xdg, kind)
    if ok then add_dir(rw, d) end
  end
  local tmp = os.getenv("TMPDIR")
  add_dir(rw, (tmp and tmp ~= "") and tmp or "/tmp")
  -- folders and files the person pointed mpctl at through its environment
  for _, v in ipairs({ "MPCTL_CACHE_DIR", "MPCTL_BACKUP_DIR" }) do add_dir(rw, os.getenv(v)) end
  for _, v in ipairs({ "MPCTL_HISTORY", "MPCTL_FIRMWARE_LOCK" }) do add_file(os.getenv(v)) end
  for _, v in ipairs({ "MPCTL_NODE_MODULES", "MPCTL_STUB_DIR", "MPCTL_MIRROR" }) do add_dir(ro, os.getenv(v)) end
  -- mpctl's own files and the system's shared read-only data (e.g. esptool's flasher stubs)
  add_dir(ro, opts.datadir)
  -- its npm packages (flasher stubs, MicroPython's WebAssembly build) may be a symlink, as in a
  -- git worktree: the folder it points at is mpctl's own too
  if opts.datadir then add_dir(ro, opts.datadir .. "/node_modules") end
  for _, d in ipairs({ "/usr/share", "/usr/lib", "/usr/local/lib", "/usr/local/share" }) do add_dir(ro, d) end
  -- what the kernel tells about devices and this process, read-only: USB and tty enumeration read
  -- /sys (mpctl.dfu waits for a board's CDC port there), and a `sim://pyboard` run re-executes its
  -- own command line from /proc/self/cmdline under the simulated bus
  for _, d in ipairs({ "/sys", "/proc/self" }) do add_dir(ro, d) end
  -- where desktops and people mount removable drives, read-only: mpctl.rp2.drive looks there for
  -- an RP2 board's BOOTSEL drive (its INFO_UF2.TXT); writing the UF2 needs drive=PATH named
  for _, d in ipairs({ "/media", "/run/media", "/mnt" }) do add_dir(ro, d) end
  -- device paths: serial ports, USB device nodes, the usual character devices
  for _, p in ipairs({ "/dev/tty", "/dev/pts/", "/dev/ptmx", "/dev/serial/", "/dev/bus/usb/",
    "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/cu." }) do
    prefixes[#prefixes + 1] = p
  end
  -- paths named on the command line: that file (and what sits beside it with its name as a
  -- prefix: .part, .tmp, .lock), or that folder's subtree
  local home = os.getenv("HOME")
  for _, p in ipairs(opts.named or {}) do
    if type(p) == "string" and p ~= "" and not p:find("://", 1, true) then
      local r = resolve(p)
      if r and r ~= "/" and r ~= (home and resolve(home)) then
        local ok, st = pcall(fs.stat, r)
        if ok and st and st.type == "dir" then rw[#rw + 1] = r else files[#files + 1] = r end
      end
    end
  end

  local function under(r, root)
    return r == root or r:sub(1, #root + 1) == (root == "/" and "/" or root .. "/")
  end
  local P = { rw = rw, ro = ro, files = files }
  -- $HOME's dotfiles and dot-folders (.bashrc, .ssh, .profile) stay out even when mpctl runs
  -- in $HOME itself: only the folders listed explicitly (mpctl's XDG folders, ...) reach them.
  local home_real = home and home ~= "" and resolve(home) or nil
  local function home_dotfile(r)
    return home_real ~= nil and home_real ~= "/" and r:sub(1, #home_real + 2) == home_real .. "/."
  end
  -- Is `path` allowed for `mode` ("r" or "w")? Returns the resolved path or nil.
  function P.allows(path, mode, link_level)
    -- A device node named plainly (no "." or ".." segment) is checked by name, not resolved:
    -- only root creates entries in /dev, and umockdev's preloaded realpath() corrupts memory on a
    -- simulated tty node whose target (the pty) is shorter than the testbed's folder name.
    if path:sub(1, 5) == "/dev/" and not path:find("/%.%.?/") and not path:find("/%.%.?$") then
      for _, pre in ipairs(prefixes) do
        if path:sub(1, #pre) == pre then return path end
      end
    end
    local r = resolve(path, link_level)
    if not r then return nil end
    for _, root in ipairs(rw) do if under(r, root) then return r end end
    if not home_dotfile(r) then
      for _, root in ipairs(soft) do if under(r, root) then return r end end
    end
    for _, f in ipairs(files) do
      if r == f or r:sub(1, #f + 1) == f .. "." then return r end
    end
    for _, pre in ipairs(prefixes) do
      if r:sub(1, #pre) == pre then return r end
    end
    if mode == "r" then
      for _, root in ipairs(ro) do if under(r, root) then return r end end
    end
    return nil
  end
  -- Raises an access error naming the flag and the path unless allowed.
  function P.check(path, mode, what, link_level)
    if type(path) ~= "string" then return end
    if not P.allows(path, mode, link_level) then error(access_error(path, what), 3) end
  end
  return P
end

-- ---------------------------------------------------------------------------------------
-- process-wide confinement

local confined = false

-- Holds the whole process to `policy` from now on: io.open, io.lines, io.input/io.output with
-- a name, os.remove, os.rename, loadfile, dofile, mpctl.fs, http.get's file:// URLs and `to=`,
-- archive, hash.file, and the files and programs a sim:// URL would hand its simulator. Once
-- per process (mpctl runs one recipe or one test run).
function M.confine(policy)
  if confined then return end
  confined = true
  local check = policy.check

  local io_open, io_lines, io_input, io_output = io.open, io.lines, io.input, io.output
  io.open = function(path, mode)
    if type(path) == "string" then
      local m = (mode or "r"):find("[wa+]") and "w" or "r"
      if not policy.allows(path, m) then
        local e = access_error(path, "io.open")
        return nil, tostring(e.msg or e), 13
      end
    end
    return io_open(path, mode)
  end
  io.lines = function(path, ...)
    if path ~= nil then check(path, "r", "io.lines") end
    return io_lines(path, ...)
  end
  io.input = function(f)
    if type(f) == "string" then check(f, "r", "io.input") end
    return io_input(f)
  end
  io.output = function(f)
    if type(f) == "string" then check(f, "w", "io.output") end
    return io_output(f)
  end
  local os_remove, os_rename = os.remove, os.rename
  os.remove = function(path)
    check(path, "w", "os.remove", true)
    return os_remove(path)
  end
  os.rename = function(a, b)
    check(a, "w", "os.rename", true)
    check(b, "w", "os.rename", true)
    return os_rename(a, b)
  end
  local lf, df = loadfile, dofile
  loadfile = function(path, ...) -- luacheck: ignore (host global, confined on purpose)
    if path ~= nil then check(path, "r", "loadfile") end
    return lf(path, ...)
  end
  dofile = function(path) -- luacheck: ignore
    if path ~= nil then check(path, "r", "dofile") end
    return df(path)
  end

  local fs = require("mpctl.fs")
  local function wrap(t, name, mode, what, link_level, second)
    local f = t[name]
    if not f then return end
    t[name] = function(a, b, ...)
      check(a, mode, what, link_level)
      if second then check(b, mode, what, link_level) end
      return f(a, b, ...)
    end
  end
  for _, n in ipairs({ "read", "stat", "list", "realpath" }) do wrap(fs, n, "r", "fs." .. n) end
  for _, n in ipairs({ "write", "append", "mkdir" }) do wrap(fs, n, "w", "fs." .. n) end
  wrap(fs, "remove", "w", "fs.remove", true)
  wrap(fs, "rename", "w", "fs.rename", true, true)
  local fs_exists = fs.exists
  -- probing for a file outside is answered "not there" (library code probes candidate paths)
  fs.exists = function(p) return policy.allows(p, "r") ~= nil and fs_exists(p) end

  local http = require("mpctl.http")
  local http_get = http.get
  http.get = function(url, o, ...)
    local scheme = type(url) == "string" and url:match("^%s*(%a[%w+.%-]*):")
    if scheme and scheme:lower() == "file" then
      -- the path as libcurl will open it: after the scheme and an optional host, percent-decoded
      -- (file:///tmp/%2e%2e/x is /tmp/../x)
      local p = url:gsub("^%s*%a[%w+.%-]*:", ""):gsub("^//[^/]*", ""):gsub("[?#].*$", "")
      p = p:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      check(p, "r", "http.get")
    end
    if type(o) == "table" and o.to then check(o.to, "w", "http.get to=") end
    return http_get(url, o, ...)
  end
  local archive = require("mpctl.archive")
  for _, n in ipairs({ "open", "each", "list", "read", "verify" }) do wrap(archive, n, "r", "archive." .. n) end
  local ar_extract = archive.extract
  archive.extract = function(path, dir, ...)
    check(path, "r", "archive.extract")
    check(dir, "w", "archive.extract")
    return ar_extract(path, dir, ...)
  end
  local hash = require("mpctl.hash")
  wrap(hash, "file", "r", "hash.file")

  local serial = require("mpctl.serial")
  local serial_open = serial.open
  serial.open = function(url, ...)
    if type(url) == "string" then
      local sim = url:match("^sim://(.*)$")
      if sim then
        -- the simulator runs as a child process: the files its options name are checked
        -- here, and options naming programs need --allow-exec
        for k, v in (sim:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
          if k == "node" or k:match("exe$") or k:match("program$") then
            error(string.format("sim option %s= names a program to run; run mpctl with --allow-exec to allow it", k), 2)
          end
          if k == "file" or k == "trace" or k:match("_file$") or k:match("_dir$") or k:match("path$") then
            check(v, "w", "sim option " .. k .. "=")
          end
        end
      elseif not url:find("://", 1, true) then
        check(url, "w", "serial.open")
      end
    end
    return serial_open(url, ...)
  end
end

-- ---------------------------------------------------------------------------------------
-- the environment

-- getmetatable for recipes: only metatables the recipe set itself (tracked by its
-- setmetatable); strings, library objects and protected tables answer nil.
local function metatable_functions()
  local own = setmetatable({}, { __mode = "k" })
  local function sb_setmetatable(t, mt)
    local r = setmetatable(t, mt)
    if mt ~= nil then own[mt] = true end
    return r
  end
  local function sb_getmetatable(v)
    local mt = getmetatable(v)
    if type(v) == "table" and type(mt) == "table" and own[mt] then return mt end
    return nil
  end
  return sb_setmetatable, sb_getmetatable
end

local SAFE_GLOBALS = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "select",
  "tonumber", "tostring", "type", "rawequal", "rawget", "rawlen", "rawset", "_VERSION",
}

-- Builds the environment for a script at `path`.
--   opts.allow_exec: the real require, package, debug, os.execute, io.popen
--   opts.arg: the script's arg table
--   opts.recipe_dirs: folders of the recipes shipped with mpctl (require by name)
function M.env(path, opts)
  opts = opts or {}
  local env = copy(_G, SAFE_GLOBALS)
  env.print = print -- the routing print of mpctl.output when --json or -q
  env.string, env.table, env.math = copy(string), copy(table), copy(math)
  env.utf8, env.coroutine = copy(utf8), copy(coroutine)
  if not opts.allow_exec then env.string.dump = nil end -- no bytecode of host functions
  env.os = copy(os, { "clock", "date", "difftime", "getenv", "time", "remove", "rename", "tmpname", "exit" })
  env.io = copy(io, { "open", "lines", "read", "write", "type", "close", "stdin", "stdout", "stderr" })
  env.arg = opts.arg or {}
  env._G = env

  if opts.allow_exec then
    env.getmetatable, env.setmetatable = getmetatable, setmetatable
    env.collectgarbage = collectgarbage
  else
    env.setmetatable, env.getmetatable = metatable_functions()
    env.collectgarbage = function(what, ...)
      what = what or "collect"
      if what == "collect" or what == "count" or what == "step" or what == "isrunning" then
        return collectgarbage(what, ...)
      end
      error("collectgarbage('" .. tostring(what) .. "') is not available in recipes", 2)
    end
  end

  local dir = path and (path:match("^(.*)/[^/]*$") or ".") or "."

  -- load/loadfile/dofile: text chunks only (binary chunks can crash the VM) unless
  -- --allow-exec, in this env unless the script gives its own table.
  local function mode_of(m) return opts.allow_exec and m or "t" end
  env.load = function(chunk, name, m, e)
    return load(chunk, name, mode_of(m), e == nil and env or e)
  end
  env.loadfile = function(file, m, e)
    return loadfile(file, mode_of(m), e == nil and env or e)
  end
  env.dofile = function(file)
    local f = assert(loadfile(file, "t", env))
    return f()
  end

  -- require: the public modules, Lua files next to the script (recipes/lib/x.lua as "lib.x"),
  -- team modules from MPCTL_PATH folders (DIR/lua/name.lua), then the recipes shipped with
  -- mpctl by name. Non-mpctl modules load in this same environment, so a shared helper cannot
  -- widen what a recipe may do.
  local search = dir .. "/?.lua;" .. dir .. "/?/init.lua"
  for d in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do
    search = search .. ";" .. d .. "/lua/?.lua;" .. d .. "/lua/?/init.lua"
  end
  -- A team's recipe can build on require("esp32_flash"): the required recipe sees the same
  -- `arg` (its own typed options converted, its defaults filled in) and require returns what
  -- it returns.
  for _, d in ipairs(opts.recipe_dirs or {}) do
    search = search .. ";" .. d .. "/?.lua"
  end
  local loaded, proxies = {}, {}
  local sb_require
  -- mpctl.test.run takes the environment for the files it runs: inside the sandbox it is
  -- always this sandbox's, whatever the caller passes.
  local function test_proxy(t)
    local run = function(o)
      local o2 = copy(o or {})
      o2.env_for = function(file) return M.env(file, opts) end
      return t.run(o2)
    end
    return setmetatable({}, {
      __index = function(_, k) if k == "run" then return run end return t[k] end,
      __call = function(_, ...) return t(...) end,
      __metatable = false,
    })
  end
  -- The global `mpctl`: the API table seen through a proxy, so submodules come through this
  -- require and a recipe's assignments stay its own.
  local function mpctl_proxy(m)
    return setmetatable({}, {
      __index = function(_, k)
        local v = rawget(m, k)
        if v ~= nil and type(v) ~= "table" then return v end -- mpctl.board(id) is a function
        if type(k) == "string" and ALLOWED[k] and m[k] ~= nil then
          local ok, v = pcall(sb_require, "mpctl." .. k)
          if ok then return v end
        end
        return m[k]
      end,
      __pairs = function() return next, m, nil end,
      __metatable = false,
    })
  end
  sb_require = function(name)
    if type(name) ~= "string" then error("require: module name expected", 2) end
    if proxies[name] ~= nil then return proxies[name] end
    if module_allowed(name) or (opts.allow_exec and name:match("^mpctl")) then
      local m = require(name)
      if opts.allow_exec then return m end
      if name == "mpctl" then m = mpctl_proxy(m)
      elseif name == "mpctl.test" then m = test_proxy(m) end
      proxies[name] = m
      return m
    end
    if loaded[name] ~= nil then return loaded[name] end
    local file = package.searchpath(name, search)
    if file then
      -- a required recipe's own typed options: defaults for what its caller left unset, and
      -- the same checks as on the command line
      local options = require("mpctl.options")
      local meta = options.read_meta(file)
      if #meta.options > 0 then options.apply(meta, env.arg, name) end
      local chunk = assert(loadfile(file, "t", env))
      local v = chunk(name, file)
      if v == nil then v = true end
      loaded[name] = v
      return v
    end
    if opts.allow_exec then return require(name) end
    if name:match("^mpctl%.") then
      error(string.format("require '%s' is disabled in recipes%s", name,
        name == "mpctl.proc" and "; run mpctl with --allow-exec to allow it" or
        " (recipes may require the public modules: mpctl." ..
        table.concat((function() local t = {} for k in pairs(ALLOWED) do t[#t + 1] = k end table.sort(t) return t end)(), ", mpctl.") ..
        "; simulators are reached through sim:// ports)"), 2)
    end
    error(string.format("module '%s' not found (recipes may require mpctl.*, Lua files beside %s, " ..
      "DIR/lua modules of MPCTL_PATH folders and the recipes shipped with mpctl)", name, path or "the recipe"), 2)
  end
  env.require = sb_require
  env.mpctl = sb_require("mpctl")

  if opts.allow_exec then
    env.os.execute = os.execute
    env.io.popen = io.popen
    env.package = package
    env.debug = debug
    env.mpctl = require("mpctl")
    return env
  end
  env.os.execute = disabled("os.execute")
  env.io.popen = disabled("io.popen")
  env.package = { loadlib = disabled("package.loadlib"), path = "", cpath = "" }
  return env
end

return M
