-- Shared by the tests in this folder: run a shell command or mpctl itself, from outside, the way
-- a person or a CI script would.
local test = require("mpctl.test")

local M = {}

-- Runs a shell command; returns its exit code and its combined stdout and stderr.
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), (out:gsub("rc=%d+%s*$", ""))
end

-- Runs mpctl with a shell-quoted argument string. `prefix` goes before it (e.g. "env -u VAR").
function M.mpctl(args, prefix)
  return M.sh(string.format("%s%q %s", prefix and (prefix .. " ") or "", test.exe(), args))
end

return M
