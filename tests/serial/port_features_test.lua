-- What the REPL layer needs from a port (issue 9): rx/tx counters, a trace hook, and
-- read_until streaming to a callback, on a raw socket and through the RFC 2217 codec.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local errors = require("mpctl.errors")

local function socket_pair()
  local l = serial.listen("socket://127.0.0.1:0")
  local c = serial.open("socket://127.0.0.1:" .. l.port)
  local s = assert(l:accept(5))
  l:close()
  return c, s
end

test("counters count data bytes both ways", function()
  local c, s = socket_pair()
  test.eq(c:counters(), { rx = 0, tx = 0 })
  c:write("hello")
  test.eq(s:read_exact(5, 5), "hello")
  s:write("\255\255ok")
  test.eq(c:read_exact(4, 5), "\255\255ok")
  test.eq(c:counters(), { rx = 4, tx = 5 })
  c:close(); s:close()
end)

test("counters on an RFC 2217 port count data, not telnet framing", function()
  local c = serial.open("sim://echo?quiet=1")
  local before = c:counters()
  c:write("\255\255\255")
  test.eq(c:read_exact(3, 5), "\255\255\255")
  local after = c:counters()
  test.eq(after.tx - before.tx, 3, "0xFF doubled on the wire, counted once")
  test.eq(after.rx - before.rx, 3)
  c:close()
end)

test("set_trace sees every chunk with its direction; nil turns it off", function()
  local c, s = socket_pair()
  local log = {}
  c:set_trace(function(dir, bytes) log[#log + 1] = dir .. ":" .. bytes end)
  c:write("abc")
  s:write("xyz")
  test.eq(c:read_exact(3, 5), "xyz")
  test.eq(log, { "tx:abc", "rx:xyz" })
  c:set_trace(nil)
  c:write("more")
  test.eq(#log, 2)
  c:close(); s:close()
end)

test("read_until streams what comes before the delimiter, never a part of it", function()
  local c, s = socket_pair()
  local got = {}
  local function sink(piece) got[#got + 1] = piece end
  -- the delimiter arrives split over two writes; its first byte must not reach the sink
  s:write("hello wor")
  s:write("ld\4")
  s:write(">tail")
  -- a two-byte delimiter "\4>" split across reads
  test.eq(c:read_until("\4>", 5, sink), "\4>")
  test.eq(table.concat(got), "hello world")
  for _, piece in ipairs(got) do test.ok(not piece:find("\4", 1, true), "no delimiter byte handed over") end
  test.eq(c:read(10, 1), "tail", "bytes after the delimiter stay buffered")
  c:close(); s:close()
end)

test("read_until with a sink: a timeout keeps what was not handed over, and says what it saw", function()
  local c, s = socket_pair()
  local got = {}
  s:write("partial\4")
  local ok, e = pcall(c.read_until, c, "\4>", 0.2, function(piece) got[#got + 1] = piece end)
  test.ok(not ok)
  test.eq(errors.kind(e), "timeout")
  test.eq(table.concat(got), "partial")
  test.eq(c:pending(), 1, "the byte that may start the delimiter is still buffered")
  s:write(">")
  test.eq(c:read_until("\4>", 5), "\4>")
  c:close(); s:close()
end)

test("read_until without a sink still returns the bytes up to and including the delimiter", function()
  local c, s = socket_pair()
  s:write("a\r\nb")
  test.eq(c:read_until("\r\n", 5), "a\r\n")
  c:close(); s:close()
end)
