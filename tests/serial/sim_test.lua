-- sim:// ports: mpctl starts itself as `mpctl sim NAME --listen fd://3` on a socketpair and
-- speaks RFC 2217 to it, so baud and modem-line changes reach the simulator (here: echo).
local test = require("mpctl.test")
local serial = require("mpctl.serial")

test("events reach the simulator with their values, in order", function()
  local p = serial.open("sim://echo", { baud = 115200 })
  test.eq(p:caps().kind, "sim")
  test.eq(p:caps().signals, true)
  -- the ESP "classic" reset shape (anchors.md §3.1): single lines, then both at once
  p:set_dtr(false)
  p:set_rts(true)
  p:set_signals({ dtr = true, rts = false })
  p:set_dtr(false)
  p:set_baud(460800)
  local want = {
    "EVENT baud 115200", "EVENT dtr false", "EVENT rts true", "EVENT dtr true", "EVENT rts false",
    "EVENT dtr false", "EVENT baud 460800",
  }
  for i, line in ipairs(want) do
    test.eq(p:read_until("\n", 5), line .. "\n", "line " .. i)
  end
  -- flush_input sends PURGE-DATA (answered, or this would raise) and drops buffered input;
  -- that the server records the purge is checked against pyserial's server (rfc2217_test)
  p:unread("stale")
  p:flush_input()
  test.eq(p:pending(), 0)
  test.eq(p:baud(), 460800)
  p:close()
end)

test("data passes both ways unchanged, 0xFF included", function()
  local p = serial.open("sim://echo?quiet=1")
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  local data = string.rep(table.concat(t), 64) -- 16 KiB, more than one socket read
  p:write(data)
  test.eq(p:read_exact(#data, 10), data)
  p:close()
end)

test("a simulator that exits early: EOF, then errors that give its exit status", function()
  local msg = test.raises(function()
    local p = serial.open("sim://echo?exit=3")
    p:read_exact(1, 5)
  end, "the simulator exited with status 3")
  test.contains(msg, "sim://echo?exit=3")
end)

test("an unknown simulator fails to open, giving the child's exit status", function()
  local msg = test.raises(function() serial.open("sim://no_such_sim") end, "sim://no_such_sim")
  test.contains(msg, "exited with status")
end)

test("bad simulator names are refused before anything is started", function()
  test.raises(function() serial.open("sim://../../x") end, "simulator names are letters")
end)

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r") -- a zombie keeps this until it is reaped
  if f then f:close() end
  return f ~= nil
end

local function sim_pid(p)
  return tonumber(p:read_until("\n", 5):match("^PID (%d+)"))
end

test("closing the port ends and reaps the simulator", function()
  local p = serial.open("sim://echo?pid=1&quiet=1")
  local pid = sim_pid(p)
  test.ok(alive(pid), "simulator running")
  p:close()
  test.eq(alive(pid), false)
  test.raises(function() p:write("x") end, "port is closed")
  p:close() -- a second close is harmless
end)

test("a simulator that ignores the hang-up is terminated on close", function()
  local p = serial.open("sim://echo?pid=1&quiet=1&linger=1")
  local pid = sim_pid(p)
  p:close() -- waits a moment, then SIGTERM (bounded), then SIGKILL
  test.eq(alive(pid), false)
end)

test("garbage collection closes and reaps too", function()
  local p = serial.open("sim://echo?pid=1&quiet=1")
  local pid = sim_pid(p)
  p = nil
  collectgarbage()
  collectgarbage()
  test.eq(alive(pid), false)
end)
