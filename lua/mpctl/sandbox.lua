-- mpctl.sandbox: the environment recipes and test files run in.
--
-- Recipes are shared in git and run by people who did not write them, so by default they get
-- the mpctl API and the safe part of the Lua standard library: no process spawning, no native
-- code. `--allow-exec` lifts that for recipes that need to run other programs.

local M = {}

local function disabled(name)
  return function()
    error(name .. " is disabled in recipes; run mpctl with --allow-exec to allow it", 2)
  end
end

local function copy(t, keys)
  local out = {}
  for _, k in ipairs(keys) do out[k] = t[k] end
  return out
end

local SAFE_GLOBALS = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "print", "select",
  "tonumber", "tostring", "type", "rawequal", "rawget", "rawlen", "rawset",
  "setmetatable", "getmetatable", "collectgarbage", "_VERSION",
}

-- Modules a sandboxed `require` may load: the mpctl library except process spawning.
local function allowed_module(name, allow_exec)
  if name == "mpctl.proc" then return allow_exec end
  return name == "mpctl" or name:sub(1, 6) == "mpctl."
end

-- Builds the environment for a script at `path`.
--   opts.allow_exec: give os.execute, io.popen, package and the real require
--   opts.arg: the script's arg table
function M.env(path, opts)
  opts = opts or {}
  local env = copy(_G, SAFE_GLOBALS)
  env.string, env.table, env.math, env.utf8, env.coroutine = string, table, math, utf8, coroutine
  env.os = copy(os, { "clock", "date", "difftime", "getenv", "time", "remove", "rename", "tmpname", "exit" })
  env.io = copy(io, { "open", "lines", "read", "write", "type", "close", "stdin", "stdout", "stderr" })
  env.arg = opts.arg or {}
  env.mpctl = require("mpctl")
  env._G = env

  local dir = path and (path:match("^(.*)/[^/]*$") or ".") or "."

  -- load/loadfile/dofile: text chunks only (binary chunks can crash the VM), in this env.
  env.load = function(chunk, name, mode, e)
    return load(chunk, name, "t", e == nil and env or e)
  end
  env.loadfile = function(file, mode, e)
    return loadfile(file, "t", e == nil and env or e)
  end
  env.dofile = function(file)
    local f = assert(loadfile(file, "t", env))
    return f()
  end

  -- require: mpctl modules, Lua files next to the script (recipes/lib/x.lua as "lib.x"), and
  -- team modules from MPCTL_PATH folders (DIR/lua/name.lua). Non-mpctl modules load in this
  -- same environment, so a shared helper cannot widen what a recipe may do.
  local search = dir .. "/?.lua;" .. dir .. "/?/init.lua"
  for d in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do
    search = search .. ";" .. d .. "/lua/?.lua;" .. d .. "/lua/?/init.lua"
  end
  -- then the workflow recipes shipped with mpctl, by name: a team's recipe can build on
  -- require("esp32_flash"); the required recipe sees the same `arg` and its return value is
  -- what require returns.
  for _, d in ipairs(opts.recipe_dirs or {}) do
    search = search .. ";" .. d .. "/?.lua"
  end
  local loaded = {}
  env.require = function(name)
    if type(name) ~= "string" then error("require: module name expected", 2) end
    if allowed_module(name, opts.allow_exec) then return require(name) end
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
    if name == "mpctl.proc" then
      error("require 'mpctl.proc' is disabled in recipes; run mpctl with --allow-exec to allow it", 2)
    end
    error(string.format("module '%s' not found (recipes may require mpctl.*, Lua files beside %s, " ..
      "DIR/lua modules of MPCTL_PATH folders and the recipes shipped with mpctl)", name, path or "the recipe"), 2)
  end

  if opts.allow_exec then
    env.os.execute = os.execute
    env.io.popen = io.popen
    env.package = package
    env.debug = debug
    return env
  end
  env.os.execute = disabled("os.execute")
  env.io.popen = disabled("io.popen")
  env.package = { loadlib = disabled("package.loadlib"), path = "", cpath = "" }
  return env
end

return M
