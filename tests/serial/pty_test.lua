-- mpctl.serial on a pty: the same local-port code path a USB adapter takes (minus modem lines),
-- with our own pty listener as the far end.
local test = require("mpctl.test")
local serial = require("mpctl.serial")

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

-- Opens a pty pair: `a` is the slave opened as a local port, `m` the master side.
local function pair()
  local l = serial.listen("pty")
  test.ok(l.path:match("^/dev/pts/%d+$"), "listener path " .. tostring(l.path))
  local a = serial.open(l.path)
  local m = l:accept(1)
  test.ok(m, "accept returns the master")
  return l, a, m
end

test("bytes both ways, all 256 values, through raw mode", function()
  local l, a, m = pair()
  local data = all_bytes() .. all_bytes()
  test.eq(a:write(data), #data)
  test.eq(m:read_exact(#data, 2), data)
  m:write(data)
  test.eq(a:read_exact(#data, 2), data)
  a:close(); m:close(); l:close()
end)

test("read returns \"\" on timeout and what is buffered otherwise", function()
  local l, a, m = pair()
  test.eq(a:read(10, 0.05), "")
  m:write("hello")
  test.eq(a:read_exact(2, 1), "he")
  test.eq(a:pending(), 3)
  test.eq(a:read(100, 1), "llo")
  a:unread("xy")
  test.eq(a:read(1, 0), "x")
  test.eq(a:read(10, 0), "y")
  a:close(); m:close(); l:close()
end)

test("expect: pattern and plain matches return before and match", function()
  local l, a, m = pair()
  m:write("boot log\r\nMicroPython v1.24.0 on 2024\r\n>>> ")
  local before, match, ver = a:expect("MicroPython v([%d%.]+)", 2)
  test.eq(before, "boot log\r\n")
  test.eq(match, "MicroPython v1.24.0")
  test.eq(ver, "1.24.0")
  before, match = a:expect(">>> ", 2, true)
  test.eq(before, " on 2024\r\n")
  test.eq(match, ">>> ")
  test.eq(a:pending(), 0)
  a:close(); m:close(); l:close()
end)

test("expect timeout names the port and pattern and shows the escaped bytes seen", function()
  local l, a, m = pair()
  m:write("ets Jun  8\r\n\0\255rst:0x1")
  local msg = test.raises(function() a:expect("waiting for download", 0.2) end, "timeout after 0.2 s")
  test.contains(msg, "expect on " .. l.path)
  test.contains(msg, 'waiting for "waiting for download"')
  test.contains(msg, 'last bytes seen: "ets Jun  8\\r\\n\\x00\\xffrst:0x1"')
  -- nothing was consumed by the failed expect
  test.eq(a:read_until("\r\n", 1), "ets Jun  8\r\n")
  a:close(); m:close(); l:close()
end)

test("expect shows only the last 64 bytes seen", function()
  local l, a, m = pair()
  m:write(string.rep("a", 100) .. "TAIL")
  local msg = test.raises(function() a:expect("nope", 0.2) end, "last bytes seen")
  test.contains(msg, '"...' .. string.rep("a", 60) .. 'TAIL"')
  a:close(); m:close(); l:close()
end)

test("read_exact and read_until raise on timeout with what they got", function()
  local l, a, m = pair()
  m:write("abc")
  test.raises(function() a:read_exact(5, 0.1) end, "wanting 5 bytes, got 3")
  test.raises(function() a:read_until("\n", 0.1) end, 'waiting for "\\n"')
  test.eq(a:read(10, 0), "abc")
  a:close(); m:close(); l:close()
end)

test("DTR/RTS on a pty are a recorded no-op, not an error", function()
  local l, a, m = pair()
  a:set_dtr(true)
  a:set_rts(false)
  a:set_signals({ dtr = false, rts = true })
  test.eq(a:caps().signals, false)
  test.eq(a:caps().kind, "pty")
  a:set_baud(460800)
  test.eq(a:baud(), 460800)
  a:send_break(0.01)
  test.eq(a:drain(1), true)
  a:close(); m:close(); l:close()
end)

test("a missing port lists the ports that exist", function()
  local msg = test.raises(function() serial.open("/dev/ttyXYZ_missing") end, "serial: no such port /dev/ttyXYZ_missing; ports present: ")
  local listed = serial.list()
  if #listed == 0 then
    test.contains(msg, "none found")
  else
    test.contains(msg, listed[1].path)
  end
end)

test("serial.list entries carry a path and a transport", function()
  for _, p in ipairs(serial.list()) do
    test.eq(type(p.path), "string")
    test.ok(({ usb = 1, native = 1, bluetooth = 1, unknown = 1 })[p.transport], "transport " .. tostring(p.transport))
  end
end)

test("a second exclusive open of a busy port fails saying so", function()
  local l, a, m = pair()
  local msg = test.raises(function() serial.open(l.path) end, "port is busy")
  test.contains(msg, l.path)
  a:close()
  local again = serial.open(l.path) -- released on close
  again:close()
  local shared = serial.open(l.path, { exclusive = false })
  shared:close()
  m:close(); l:close()
end)

test("poll reports the ports with input, including already buffered bytes", function()
  local l, a, m = pair()
  test.eq(#serial.poll({ a, m }, 0.05), 0)
  m:write("x")
  local ready = serial.poll({ a, m }, 2)
  test.eq(#ready, 1)
  test.ok(ready[1] == a, "the slave side is readable")
  a:unread("y")
  test.eq(#serial.poll({ a }, 0), 1)
  a:close(); m:close(); l:close()
end)

test("poll reports every ready port at once: buffered input does not hide a readable fd", function()
  local l1, a1, m1 = pair()
  local l2, a2, m2 = pair()
  a1:unread("buffered")
  m2:write("on the wire")
  local deadline = require("mpctl.time").now() + 2
  local ready
  repeat
    ready = serial.poll({ a1, a2 }, 0.1)
  until #ready == 2 or require("mpctl.time").now() > deadline
  test.eq(#ready, 2)
  test.ok(ready[1] == a1 and ready[2] == a2, "both, in the order given")
  for _, x in ipairs({ a1, m1, l1, a2, m2, l2 }) do x:close() end
end)

test("closing the master ends the stream on the other side", function()
  local l, a, m = pair()
  m:write("last")
  test.eq(a:read(10, 1), "last")
  -- (a Linux pty hangup discards unread input, so read before closing)
  m:close()
  l:close()
  test.eq(a:read(10, 1), "")
  test.eq(a:is_eof(), true)
  test.raises(function() a:read_exact(1, 1) end, "closed the port")
  a:close()
  test.raises(function() a:read(1, 0) end, "port is closed")
end)

test("a to-be-closed port releases the tty (and its exclusive lock) at scope end", function()
  local l = serial.listen("pty")
  local m = l:accept(1)
  local name
  do
    local a <close> = serial.open(l.path)
    test.ok(a:fileno() >= 0, "fileno while open")
    name = a.name
  end
  test.eq(name, l.path)
  local again = serial.open(l.path) -- would be "busy" if the first were still open
  test.contains(tostring(again), l.path)
  again:close()
  test.contains(tostring(again), "closed")
  test.eq(again.name, l.path)
  test.ok(tostring(m):match("pty:"), "master named after its pty")
  m:close(); l:close()
end)

test("wrap_fd: a pty master from mpctl.proc becomes a port", function()
  local ok, proc = pcall(require, "mpctl.proc")
  if not ok then test.skip("mpctl.proc needs --allow-exec") end
  local cat = proc.spawn({ argv = { "/bin/cat" }, pty = true })
  local p = serial.wrap_fd(cat:fd(), "cat")
  test.eq(p.name, "cat")
  test.eq(p:caps().kind, "fd")
  p:write("hello\n")
  test.eq(p:read_until("hello\n", 5), "hello\n")
  p:close()
  cat:kill()
  cat:wait(5)
end)
