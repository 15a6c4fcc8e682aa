-- Shared by tests/many: running mpctl from outside with its own history file, reading its JSON
-- events, and a board behind ser2net.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local time = require("mpctl.time")
local proc = require("mpctl.proc")
local serial = require("mpctl.serial")
local ui = require("mpctl.ui")

local M = {}

-- A fresh folder and a history file in it; cleanup removes the folder.
function M.workdir()
  local dir = fs.tmpdir()
  return dir, fs.join(dir, "history.jsonl"), function() fs.remove(dir, { recursive = true }) end
end

-- Starts mpctl with argv (a list) and env; returns the process and a reader of its combined output.
function M.start(argv, env)
  local a = { test.exe() }
  table.move(argv, 1, #argv, 2, a)
  local p = proc.spawn({ argv = a, pty = false, stderr = "stdout", env = env })
  local port = serial.wrap_fd(p:stdout_fd(), "mpctl output")
  local r = { p = p, text = "" }
  -- reads what is there (up to `seconds`)
  function r.pump(seconds)
    if port and not port:is_eof() then r.text = r.text .. port:read(65536, seconds or 0.1) end
    return r.text
  end
  -- waits (bounded) for the process to end, reading its output; returns code, text
  function r.finish(timeout)
    local deadline = time.now() + (timeout or 120)
    while not port:is_eof() and time.now() < deadline do r.pump(0.5) end
    local code = p:wait(math.max(0.1, deadline - time.now()))
    port:close()
    if code == nil then p:close() error("mpctl did not end within " .. tostring(timeout) .. " s:\n" .. r.text, 0) end
    p:close()
    return code, r.text
  end
  return r
end

-- Runs mpctl to the end (bounded): exit code and combined output.
function M.run(argv, env, timeout)
  return M.start(argv, env).finish(timeout or 180)
end

-- The JSON events in text (other lines ignored).
function M.events(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local ok, ev = pcall(ui.json_decode, line)
    if ok and type(ev) == "table" and ev.event then out[#out + 1] = ev end
  end
  return out
end

function M.history(path)
  local recs = {}
  if not fs.exists(path) then return recs end
  for line in fs.read(path):gmatch("[^\n]+") do recs[#recs + 1] = ui.json_decode(line) end
  return recs
end

-- Whether a process id still exists (kill -0).
function M.alive(pid)
  local ok = os.execute("kill -0 " .. math.tointeger(pid) .. " 2>/dev/null")
  return ok == true
end

-- `mpctl sim esp32 --listen rfc2217://127.0.0.1:0 k=v ...`: url and a stop function.
function M.serve_esp32(extra)
  local argv = { test.exe(), "sim", "esp32", "--listen", "rfc2217://127.0.0.1:0" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local p = proc.spawn({ argv = argv, pty = false, stderr = "null" })
  local out = serial.wrap_fd(p:stdout_fd(), "sim stdout")
  local line = out:read_until("\n", 10)
  local url = line:match("(rfc2217://[%d%.]+:%d+)")
  assert(url, "simulator printed no address: " .. line)
  return url, function() out:close() p:kill() p:wait(5) p:close() end
end

-- ser2net (Debian) exporting `url` (an RFC 2217 board) as an RFC 2217 port of its own, the way
-- a lab's board farm exports its boards: ser2net speaks RFC 2217 to both sides and carries
-- baud, DTR and RTS through. Returns ser2net's url and a stop function; skips when ser2net is
-- not installed.
function M.ser2net(url)
  local SER2NET = "/usr/sbin/ser2net"
  if not fs.exists(SER2NET) then test.skip("ser2net is not installed (scripts/setup installs it)") end
  local host, port = url:match("^rfc2217://([%d%.]+):(%d+)")
  local probe = serial.listen("socket://127.0.0.1:0")
  local mine = probe.port
  probe:close()
  local pidfile = os.tmpname()
  local yaml = "connection: &board#  accepter: telnet(rfc2217,mode=server),tcp,127.0.0.1," .. mine ..
    "#  connector: telnet(rfc2217),tcp," .. host .. "," .. port .. "#  options:#    max-connections: 1"
  local s = proc.spawn({ argv = { SER2NET, "-n", "-u", "-P", pidfile, "-Y", yaml }, stderr = "null" })
  -- ready when it accepts (bounded)
  local deadline = time.now() + 10
  while true do
    local ok, c = pcall(serial.open, "socket://127.0.0.1:" .. mine, { timeout = 1 })
    if ok then c:close() break end
    if time.now() > deadline then s:close() error("ser2net did not start listening: " .. tostring(c), 0) end
    time.sleep(0.05)
  end
  return "rfc2217://127.0.0.1:" .. mine, function() s:kill() s:wait(5) s:close() os.remove(pidfile) end
end

return M
