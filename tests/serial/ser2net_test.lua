-- Our RFC 2217 client against ser2net (Debian), the server board farms use (labgrid exports
-- ports through it, anchors.md §1.10/§1.12), with one of our ptys as its serial device.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local time = require("mpctl.time")

local SER2NET = "/usr/sbin/ser2net"

local function start_ser2net()
  local f = io.open(SER2NET, "r")
  if not f then test.skip("ser2net is not installed") end
  f:close()
  local proc = require("mpctl.proc")
  local pty = serial.listen("pty")
  local dev = pty:accept(1)
  -- a free port: bind to 0, note it, release it for ser2net
  local probe = serial.listen("socket://127.0.0.1:0")
  local port = probe.port
  probe:close()
  local yaml = "connection: &mpctl#  accepter: telnet(rfc2217,mode=server),tcp,127.0.0.1," .. port ..
    "#  connector: serialdev," .. pty.path .. ",115200n81,local#  options:#    max-connections: 1"
  local s = proc.spawn({ argv = { SER2NET, "-n", "-u", "-P", os.tmpname(), "-Y", yaml }, stderr = "null" })
  return s, port, pty, dev
end

-- ser2net opens its port when a client connects and may still be starting: retry, bounded.
local function connect(url)
  local deadline = time.now() + 10
  while true do
    local ok, p = pcall(serial.open, url, { timeout = 2 })
    if ok then return p end
    if time.now() > deadline or not tostring(p):find("Connection refused", 1, true) then error(p, 0) end
    time.sleep(0.05)
  end
end

test("ser2net: negotiation, baud answered, 0xFF escaped both ways", function()
  local s, port, pty, dev = start_ser2net()
  local p = connect("rfc2217://127.0.0.1:" .. port)
  p:set_baud(460800)
  test.eq(p:baud(), 460800)
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local data = table.concat(bytes)
  p:write(data)
  test.eq(dev:read_exact(#data, 5), data)
  dev:write(data)
  test.eq(p:read_exact(#data, 5), data)
  p:close(); dev:close(); pty:close()
  s:kill()
  s:wait(5)
end)

test("ser2net on a pty cannot set DTR, so it does not answer: the error says what to do", function()
  local s, port, pty, dev = start_ser2net()
  local p = connect("rfc2217://127.0.0.1:" .. port .. "?timeout=0.3")
  test.raises(function() p:set_dtr(true) end, "no answer to SET-CONTROL within 0.3 s")
  p:close()
  -- with ign_set_control the same changes go out without waiting
  local q = connect("rfc2217://127.0.0.1:" .. port .. "?ign_set_control")
  q:set_signals({ dtr = true, rts = false })
  q:write("still talking")
  test.eq(dev:read_exact(13, 5), "still talking")
  q:close(); dev:close(); pty:close()
  s:kill()
  s:wait(5)
end)
