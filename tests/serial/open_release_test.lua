-- serial.open that fails after the OS resource was taken (a tty opened and locked, a socket
-- connected) must give it back at once, not when the garbage collector gets round to the
-- half-made port: until then a retry would find the port busy. The collector is stopped
-- here so that only an immediate release can pass.
local test = require("mpctl.test")
local serial = require("mpctl.serial")

test("a local port whose settings are refused is unlocked at once", function()
  collectgarbage("stop")
  local l = serial.listen("pty")
  local ok, err = pcall(serial.open, l.path, {baud = 0})
  test.ok(not ok and tostring(err):find("baud must be positive", 1, true), tostring(err))
  local ok2, port = pcall(serial.open, l.path)
  collectgarbage("restart")
  test.ok(ok2, "reopening after the failed open: " .. tostring(port))
  if ok2 then port:close() end
  l:close()
end)

test("an rfc2217:// connect that gets no answer closes its socket", function()
  collectgarbage("stop")
  local l = serial.listen("socket://127.0.0.1:0")
  local ok, err = pcall(serial.open, "rfc2217://127.0.0.1:" .. l.port, {timeout = 0.2})
  test.ok(not ok and tostring(err):find("no RFC 2217 answer", 1, true), tostring(err))
  local srv = l:accept(2)
  test.ok(srv, "the client's connection is waiting")
  -- the client's telnet requests come first, then the end of the stream
  local deadline = require("mpctl.time").now() + 5
  while not srv:is_eof() and require("mpctl.time").now() < deadline do
    srv:read(100, 0.5)
  end
  local eof = srv:is_eof()
  collectgarbage("restart")
  test.ok(eof, "the server side sees the client hang up")
  srv:close(); l:close()
end)
