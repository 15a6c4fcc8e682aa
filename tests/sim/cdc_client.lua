-- Run by tests/sim/pyboard_cdc_test.lua under `mpctl sim pyboard start=app trace=F -- mpctl
-- --allow-exec tests/sim/cdc_client.lua steps=...`: talks to the simulated Pyboard's /dev/ttyACM0 as
-- a plain serial client and prints what it saw as `RESULT <step> <key> <value>` lines. The timing is
-- judged by the test from the simulator's trace, never here. Not a test file itself.
local serial, time = mpctl.serial, mpctl.time

local function result(step, key, value) print(string.format("RESULT %s %s %s", step, key, tostring(value))) end

local p
local deadline = time.now() + 20
repeat
  local ok, r = pcall(serial.open, "/dev/ttyACM0")
  if ok then p = r else time.sleep(0.1) end
until p or time.now() > deadline
assert(p, "/dev/ttyACM0 did not appear within 20 s")
p:expect(">>> ", 30, true)

local steps = {}

-- 64 KB typed into the raw REPL as one command (a comment: the REPL reads it all, runs nothing);
-- then a 200 000-byte output. The test reads from the trace how long both took.
function steps.pace()
  p:write("\1")
  p:expect("raw REPL; CTRL-B to exit\r\n>", 10, true)
  local n = 65536
  p:write("#" .. string.rep("x", n - 3) .. "\n\4")
  p:expect("OK\4\4>", 30, true)
  result("pace", "in_bytes", n)
  p:write("print('z' * 200000)\4")
  p:expect("OK", 10, true)
  local out = p:expect("\4\4>", 30, true)
  local z = select(2, tostring(out):gsub("z", ""))
  result("pace", "out_z", z)
  p:write("\2")
  p:expect(">>> ", 10, true)
end

-- A line that keeps MicroPython busy, with 3000 bytes behind it: what the ring holds is typed at
-- the next prompt (echoed by the REPL), the rest is lost (or, with cdc_flow=rts, held back).
function steps.overflow()
  p:write("x = sum(range(1000000))\r" .. string.rep("y", 3000))
  p:expect(">>> ", 60, true)
  local echoed = ""
  local until_t = time.now() + 10
  while time.now() < until_t do
    local s = p:read(65536, 1.0)
    if s == "" then break end
    echoed = echoed .. s
    until_t = math.min(until_t, time.now() + 10)
  end
  result("overflow", "echoed_y", select(2, echoed:gsub("y", "")))
  p:write("\3")
  p:expect(">>> ", 10, true)
end

-- Ctrl-C stops a running loop, in the friendly REPL and in the raw REPL, also while the ring is
-- full of bytes sent behind the loop.
function steps.interrupt()
  p:write("while True: pass\r\r")
  time.sleep(0.3)
  p:write("\3")
  p:expect("KeyboardInterrupt", 10, true)
  p:expect(">>> ", 10, true)
  p:write("print(6 * 7)\r")
  p:expect("42", 10, true)
  result("interrupt", "friendly", "ok")
  p:write("\1")
  p:expect("raw REPL; CTRL-B to exit\r\n>", 10, true)
  p:write("while True:\n    pass\n\4")
  p:expect("OK", 10, true)
  time.sleep(0.2)
  p:write(string.rep("#", 2000) .. "\3")
  local out = p:expect("\4>", 10, true)
  result("interrupt", "raw_traceback", tostring(out):find("KeyboardInterrupt", 1, true) and "yes" or "no")
  -- the ring still holds the 1023 '#' sent behind the loop: end that command and run another
  p:write("\4")
  p:expect("OK", 10, true)
  p:expect("\4>", 10, true)
  p:write("print(6 * 7)\4")
  p:expect("OK42", 10, true)
  p:expect("\4>", 10, true)
  result("interrupt", "raw", "ok")
  p:write("\2")
  p:expect(">>> ", 10, true)
end

for name in (arg.steps or "pace"):gmatch("[^,]+") do
  assert(steps[name], "unknown step " .. name)()
end
result("all", "done", "yes")
p:close()
