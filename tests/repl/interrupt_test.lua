-- Ctrl-C in the REPL commands (issue 7): `fs cp` of 1 MB and `mpctl test` running a device
-- script stuck in a loop end with the interrupted message and exit code 130, and leave no
-- process behind (the simulator behind sim:// and its MicroPython are gone).
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local time = require("mpctl.time")
local support = require("support")

local function none_alive(pids)
  for _, pid in ipairs(pids) do
    if support.alive(pid) then return false, pid end
  end
  return true
end

-- Ready once the simulator and its MicroPython run and `extra` seconds have passed.
local function after_sim_up(extra)
  local since
  return function(p)
    if #support.descendants(p:pid()) >= 2 then
      since = since or time.now()
      return time.now() - since >= extra
    end
    return false
  end
end

test("Ctrl-C during fs cp of 1 MB: interrupted, exit 130, no orphan process", function()
  local dir = fs.tmpdir()
  fs.write(dir .. "/big.bin", test.random_bytes(1024 * 1024, 77))
  -- a paced wire (115200 baud) makes the copy take about 90 s: it is surely running when hit
  local code, out, started = support.interrupt({"fs", "--port", "sim://rawrepl?throttle=true", "cp",
    dir .. "/big.bin", ":big.bin"}, after_sim_up(2), 30)
  test.eq(code, 130, out)
  test.contains(out, "interrupted")
  test.ok(#started >= 2, "the simulator and its MicroPython were running")
  local ok, pid = none_alive(started)
  test.ok(ok, "process " .. tostring(pid) .. " left running")
  fs.remove(dir, {recursive = true})
end, {timeout = 90})

test("Ctrl-C during mpctl test running a device script stuck in a loop: exit 130, no orphan", function()
  local dir = fs.tmpdir()
  fs.write(dir .. "/test_stuck.py", "print('looping')\nwhile True:\n    pass\n")
  local code, out, started = support.interrupt({"test", "--port", "sim://rawrepl", dir},
    after_sim_up(1.5), 30)
  test.eq(code, 130, out)
  test.contains(out, "interrupted")
  test.ok(not out:find("passed, ", 1, true), "no summary as if the run had ended: " .. out)
  local ok, pid = none_alive(started)
  test.ok(ok, "process " .. tostring(pid) .. " left running")
  fs.remove(dir, {recursive = true})
end, {timeout = 90})
