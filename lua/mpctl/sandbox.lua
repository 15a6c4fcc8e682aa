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

  if opts.allow_exec then
    env.os.execute = os.execute
    env.io.popen = io.popen
    env.package = package
    env.require = require
    env.debug = debug
    return env
  end
  env.os.execute = disabled("os.execute")
  env.io.popen = disabled("io.popen")
  env.package = { loadlib = disabled("package.loadlib"), path = "", cpath = "" }

  -- require: mpctl modules, or Lua files next to the script (recipes/lib/x.lua as "lib.x").
  local loaded = {}
  env.require = function(name)
    if type(name) ~= "string" then error("require: module name expected", 2) end
    if allowed_module(name, false) then return require(name) end
    if loaded[name] ~= nil then return loaded[name] end
    local rel = name:gsub("%.", "/")
    for _, candidate in ipairs({ dir .. "/" .. rel .. ".lua", dir .. "/" .. rel .. "/init.lua" }) do
      local f = io.open(candidate, "r")
      if f then
        f:close()
        local chunk = assert(loadfile(candidate, "t", env))
        local v = chunk(name)
        if v == nil then v = true end
        loaded[name] = v
        return v
      end
    end
    if name == "mpctl.proc" then
      error("require 'mpctl.proc' is disabled in recipes; run mpctl with --allow-exec to allow it", 2)
    end
    error(string.format("module '%s' not found (recipes may require mpctl.* and Lua files beside %s)",
      name, path or "the recipe"), 2)
  end
  return env
end

return M
