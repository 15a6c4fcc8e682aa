-- The REPL client against a line that does not speak MicroPython: a local TCP pair, one end
-- written by the test, the other attached to. Errors must be clean and show what was seen.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local repl = require("mpctl.repl")

local function pair()
  local l = serial.listen("socket://127.0.0.1:0")
  local client = serial.open("socket://127.0.0.1:" .. l.port)
  local server = l:accept(5)
  assert(server, "no connection")
  return client, server, l
end

test("garbage on the line gives a timeout error with the bytes seen", function()
  local client, server, l = pair()
  server:write("\xff\xfegarbage from a wrong baud rate\r\n")
  local msg = test.raises(function() repl.attach(client, {timeout = 0.5}) end, "timeout after 0.5 s")
  test.contains(msg, "raw REPL prompt")
  test.contains(msg, "garbage from a wrong baud rate")
  test.contains(msg, "\\xff\\xfe")
  local ok, e = pcall(repl.attach, client, {timeout = 0.2})
  test.ok(not ok and repl.is_error(e, "timeout"), "error kind is timeout")
  client:close(); server:close(); l:close()
end)

test("a silent line times out with nothing seen", function()
  local client, server, l = pair()
  local msg = test.raises(function() repl.attach(client, {timeout = 0.3}) end, "timeout")
  test.contains(msg, 'last bytes seen: ""')
  client:close(); server:close(); l:close()
end)

test("a device hanging up is reported as such", function()
  local client, server, l = pair()
  server:close()
  test.raises(function() repl.attach(client, {timeout = 2}) end, "hung up")
  client:close(); l:close()
end)
