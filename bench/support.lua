-- Shared plumbing of the benches (bench/*.lua require it as "support"): running a command to
-- completion with its output in files, and serving a simulated ESP32 over RFC 2217.
local fs, time = mpctl.fs, mpctl.time
local proc = require("mpctl.proc")

local M = {}

function M.shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs argv to completion (output into files in `dir`); returns exit code, stdout, stderr and
-- wall seconds from spawn to exit. A command past `timeout` is killed.
function M.run(dir, argv, timeout)
  local out, err = fs.join(dir, "out"), fs.join(dir, "err")
  local sh = {}
  for i, a in ipairs(argv) do sh[i] = M.shq(a) end
  local t0 = time.now()
  local p = proc.spawn { argv = { "/bin/sh", "-c", "exec " .. table.concat(sh, " ") .. " >" .. M.shq(out) ..
    " 2>" .. M.shq(err) }, pty = false }
  local code = p:wait(timeout or 300)
  local wall = time.now() - t0
  if code == nil then p:kill("KILL") p:wait(5) end
  p:close()
  return code, fs.read(out), fs.read(err), wall
end

-- `mpctl sim esp32 --listen rfc2217://127.0.0.1:0` (plus `extra` arguments): url and a stop function.
function M.serve_esp32(exe, extra)
  local argv = { exe, "sim", "esp32", "--listen", "rfc2217://127.0.0.1:0" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local p = proc.spawn { argv = argv, pty = false }
  local port = mpctl.serial.wrap_fd(p:stdout_fd(), "sim stdout")
  local line = port:read_until("\n", 10)
  local url = line:match("(rfc2217://[%d%.]+:%d+)")
  assert(url, "simulator printed no address: " .. line)
  return url, function() port:close() p:kill() p:wait(5) p:close() end
end

return M
