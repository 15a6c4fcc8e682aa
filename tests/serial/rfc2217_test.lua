-- RFC 2217 both ways against real peers: our client against pyserial's PortManager server
-- (tests/fixtures/rfc2217_server.py), pyserial's client against our server side, and ours
-- against ours (control events in order, IAC escaping, ign_set_control).
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local proc = require("mpctl.proc")

local PYTHON = "/usr/bin/python3" -- Debian's, which has python3-serial

local function have_pyserial()
  local f = io.open("/usr/lib/python3/dist-packages/serial/rfc2217.py", "r")
  if f then f:close() end
  return f ~= nil
end

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Starts the pyserial server; returns the process, its port and the path of its change log.
local function start_server()
  if not have_pyserial() then test.skip("python3-serial is not installed") end
  local log = os.tmpname()
  local p = proc.spawn({ argv = { PYTHON, "tests/fixtures/rfc2217_server.py", "--log", log, "--lifetime", "60" } })
  local out = serial.wrap_fd(p:stdout_fd(), "rfc2217_server.py stdout")
  local line = out:read_until("\n", 10)
  out:close()
  return p, tonumber(line), log
end

local function log_lines(path)
  local lines = {}
  for l in read_file(path):gmatch("[^\n]+") do lines[#lines + 1] = l end
  return lines
end

test("client against pyserial's RFC 2217 server: settings reach the port", function()
  local server, port, log = start_server()
  local p = serial.open("rfc2217://127.0.0.1:" .. port, { baud = 115200 })
  test.eq(p:caps().signals, true)
  p:set_baud(460800)
  p:set_dtr(true)
  p:set_rts(true)
  p:set_signals({ dtr = false, rts = false })
  p:set_signals({ dtr = true, rts = false })
  test.eq(p:baud(), 460800)
  -- every call above returned only after the server's answer, so the log is complete now
  local lines = log_lines(log)
  test.eq(table.concat(lines, ","),
    "baud 115200,baud 460800,dtr True,rts True,dtr False,rts False,dtr True,rts False")
  p:close()
  server:kill()
  server:wait(5)
  os.remove(log)
end)

test("client against pyserial's server: data with 0xFF survives IAC escaping both ways", function()
  local server, port, log = start_server()
  local p = serial.open("rfc2217://127.0.0.1:" .. port)
  local data = all_bytes() .. "\255\255\255" .. all_bytes()
  p:write(data)
  test.eq(p:read_exact(#data, 5), data)
  p:flush_input()
  p:send_break(0.01)
  test.contains(read_file(log), "purge\nbreak True\nbreak False\n")
  p:close()
  server:kill()
  server:wait(5)
  os.remove(log)
end)

test("pyserial's RFC 2217 client against our server side", function()
  if not have_pyserial() then test.skip("python3-serial is not installed") end
  local l = serial.listen("rfc2217://127.0.0.1:0")
  test.ok(l.port > 0, "listener picked a port")
  local client = proc.spawn({ argv = { PYTHON, "tests/fixtures/rfc2217_client.py", tostring(l.port) } })
  local out = serial.wrap_fd(client:stdout_fd(), "rfc2217_client.py stdout")
  local s = l:accept(10)
  test.ok(s, "pyserial connected")
  test.eq(s:caps().kind, "rfc2217-server")
  -- serve: echo data (our writes are IAC-escaped) until pyserial reports and hangs up
  local events, deadline = {}, require("mpctl.time").now() + 15
  while not s:is_eof() and require("mpctl.time").now() < deadline do
    local data = s:read(4096, 0.1)
    if data ~= "" then s:write(data) end
    for _, ev in ipairs(s:events()) do events[#events + 1] = ev end
  end
  local verdict = out:read_until("\n", 5)
  test.eq(verdict, "OK\n")
  test.eq(client:wait(5), 0)
  local seen = {}
  for _, ev in ipairs(events) do
    if ev.kind ~= "purge" then seen[#seen + 1] = ev.kind .. "=" .. tostring(ev.value) end
    test.eq(type(ev.t), "number")
  end
  -- open: baud 115200, DTR and RTS asserted (pyserial's defaults); then the script's changes
  test.eq(table.concat(seen, " "),
    "baud=115200 dtr=true rts=true baud=460800 dtr=true rts=false dtr=false rts=true")
  test.eq(s:baud(), 460800)
  s:close(); out:close(); l:close()
end)

test("a server that never negotiates: open times out saying so", function()
  local l = serial.listen("rfc2217://127.0.0.1:0")
  -- the listener is not served while open() waits (one thread), so nothing answers
  local msg = test.raises(function() serial.open("rfc2217://127.0.0.1:" .. l.port, { timeout = 0.3 }) end,
    "no RFC 2217 answer within 0.3 s")
  test.contains(msg, "rfc2217://127.0.0.1:" .. l.port)
  local s = l:accept(1)
  if s then s:close() end
  l:close()
end)

-- The echo simulator as a separate process serving our RFC 2217 server side on TCP.
local function start_echo_sim()
  local exe = test.exe()
  if not exe then test.skip("needs the mpctl executable") end
  local sim = proc.spawn({ argv = { exe, "sim", "echo", "--listen", "rfc2217://127.0.0.1:0", "announce=1" } })
  local out = serial.wrap_fd(sim:stdout_fd(), "echo sim stdout")
  local port = tonumber(out:read_until("\n", 10):match("(%d+)"))
  out:close()
  return sim, port
end

test("our client against our server (echo simulator): events in order, values, escaping", function()
  local sim, port = start_echo_sim()
  local p = serial.open("rfc2217://127.0.0.1:" .. port, { baud = 9600 })
  p:set_dtr(false)
  p:set_signals({ dtr = true, rts = true })
  p:set_baud(921600)
  p:send_break(0.01)
  p:write("x\255y\n")
  local lines = {}
  for _ = 1, 8 do lines[#lines + 1] = p:read_until("\n", 5) end
  test.eq(table.concat(lines),
    "EVENT baud 9600\nEVENT dtr false\nEVENT dtr true\nEVENT rts true\nEVENT baud 921600\n" ..
    "EVENT break true\nEVENT break false\nx\255y\n")
  p:close()
  sim:kill()
  sim:wait(5)
end)

test("ign_set_control does not wait for answers; without it a silent server is an error", function()
  local sim, port = start_echo_sim()
  local url = "rfc2217://127.0.0.1:" .. port
  local a = serial.open(url .. "?ign_set_control")
  sim:kill("STOP") -- the server stops answering
  a:set_dtr(true)
  a:set_signals({ dtr = false, rts = false })
  sim:kill("CONT")
  test.eq(a:read_until("rts false\n", 5), "EVENT baud 115200\nEVENT dtr true\nEVENT dtr false\nEVENT rts false\n")
  a:close()
  local b = serial.open(url .. "?timeout=0.3")
  sim:kill("STOP")
  local msg = test.raises(function() b:set_rts(true) end, "no answer to SET-CONTROL within 0.3 s")
  test.contains(msg, "?ign_set_control")
  sim:kill("CONT")
  b:close()
  test.raises(function() serial.open(url .. "?bogus") end, 'unknown option "bogus"')
  sim:kill()
  sim:wait(5)
end)

-- Issue 9: the URL holds the word "timeout", the failure is an end of stream. The kind comes
-- from how the read ended, so callers branching on e.kind see "eof".
test("an EOF on rfc2217://...?timeout=2 is kind eof, not timeout", function()
  local errors = require("mpctl.errors")
  local slip = require("mpctl.slip")
  local server, port = start_server()
  local p = serial.open("rfc2217://127.0.0.1:" .. port .. "?timeout=2", { baud = 115200 })
  server:kill("KILL")
  server:wait(5)
  local ok, e = pcall(slip.read_frame, p, 5)
  test.ok(not ok, "read_frame fails once the server is gone")
  test.eq(errors.kind(e), "eof")
  test.contains(tostring(e), "timeout=2")
  p:close()
  server:close()
end)
