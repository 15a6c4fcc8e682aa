-- socket:// ports (raw TCP) against our own socket:// listener on 127.0.0.1.
local test = require("mpctl.test")
local serial = require("mpctl.serial")

local function pair()
  local l = serial.listen("socket://127.0.0.1:0")
  test.ok(l.port > 0, "port picked")
  local c = serial.open("socket://127.0.0.1:" .. l.port)
  local s = l:accept(2)
  test.ok(s, "accepted")
  return l, c, s
end

test("bytes both ways, all 256 values, nothing escaped", function()
  local l, c, s = pair()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  local data = table.concat(t)
  c:write(data)
  test.eq(s:read_exact(256, 2), data)
  s:write(data)
  test.eq(c:read_exact(256, 2), data)
  test.eq(c:caps().kind, "socket")
  test.eq(c:caps().signals, false)
  c:set_dtr(true) -- no modem lines on a socket: a no-op
  test.eq(c:drain(2), true)
  c:close(); s:close(); l:close()
end)

test("accept times out with nil; poll sees a pending connection", function()
  local l = serial.listen("socket://127.0.0.1:0")
  test.eq(l:accept(0.05), nil)
  test.eq(#serial.poll({ l }, 0.05), 0)
  local c = serial.open("socket://127.0.0.1:" .. l.port)
  local ready = serial.poll({ l }, 2)
  test.ok(ready[1] == l, "listener readable")
  local s = l:accept(1)
  test.ok(s, "accepted")
  c:close(); s:close(); l:close()
end)

test("peer hang-up: reads return \"\" and is_eof, expect says the other end closed", function()
  local l, c, s = pair()
  s:write("bye")
  s:close()
  test.eq(c:read_exact(3, 2), "bye")
  test.eq(c:read(10, 2), "")
  test.eq(c:is_eof(), true)
  local msg = test.raises(function() c:expect(">>>", 1) end, "the other end closed the port")
  test.contains(msg, "expect on socket://127.0.0.1:" .. l.port)
  c:close(); l:close()
end)

test("connection refused names the URL", function()
  local l = serial.listen("socket://127.0.0.1:0")
  local port = l.port
  l:close()
  test.raises(function() serial.open("socket://127.0.0.1:" .. port, { timeout = 2 }) end,
    "serial socket://127.0.0.1:" .. port .. ": connect: Connection refused")
  test.raises(function() serial.open("socket://nohostport") end, "expected HOST:PORT")
  test.raises(function() serial.open("bogus://x") end, "unknown scheme")
end)

-- Names are looked up in a child process with the open's deadline (serial_net.c), so a dead
-- resolver cannot hang an open; a name that resolves connects as a numeric address does.
test("socket://localhost:PORT resolves through the resolver child and connects", function()
  local l = serial.listen("socket://127.0.0.1:0")
  local c = serial.open("socket://localhost:" .. l.port, { timeout = 10 })
  local s = assert(l:accept(5))
  c:write("ping")
  test.eq(s:read_exact(4, 5), "ping")
  c:close(); s:close(); l:close()
end)

test("an unknown host fails with kind not_found or timeout, within the open's timeout", function()
  local errors = require("mpctl.errors")
  local ok, e = pcall(serial.open, "socket://mpctl-no-such-host.invalid:1", { timeout = 2 })
  test.ok(not ok, "open of an unknown host fails")
  test.ok(errors.is(e, "not_found") or errors.is(e, "timeout"), tostring(e))
  test.contains(tostring(e), "cannot resolve mpctl-no-such-host.invalid")
end)
