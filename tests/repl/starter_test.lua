-- mpctl's starter post-flash test (issue 13): `mpctl test --port P board` and the flash recipes'
-- test=yes run it on the board: the LED of the board file blinks (seen from outside in the
-- simulator's trace), the temperature sensor reads, the filesystem takes a file, free memory is
-- reported; a board without what a check needs fails that check, and without --port every check
-- says it was skipped and why.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local support = require("support")
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local simboard = dofile(here .. "/../sim/simboard.lua")
local mpctl = support.mpctl

local function led_events(trace)
  local out = {}
  for _, caps in ipairs(simboard.trace_lines(trace, "board: led (%a+)")) do out[#out + 1] = caps[1] end
  return table.concat(out, ",")
end

test("mpctl test --port P board on a simulated ESP32: four checks pass, the LED's blinks reach the trace", function()
  local dir = fs.tmpdir()
  local trace = fs.join(dir, "trace")
  local port = "sim://esp32?timing=off&flash_size=1MB&flash_file=" .. simboard.app_flash(dir) .. "&trace=" .. trace
  local junit = fs.join(dir, "report.xml")
  local code, out = mpctl({"test", "--port", port, "--board", "esp32_generic", "--junit", junit, "board"}, 120)
  test.eq(code, 0, out)
  test.contains(out, "ok    board: the board's LED blinks")
  test.contains(out, "ok    board: the temperature sensor (or an ADC) reads a plausible value")
  test.contains(out, "ok    board: the filesystem is writable")
  test.contains(out, "ok    board: free memory")
  test.contains(out, "4 passed, 0 failed")
  test.eq(led_events(trace), "on,off,on,off,on,off", "three blinks of the LED on GPIO2")
  local xml = fs.read(junit)
  test.contains(xml, "pin 2 blinked 3 times")
  test.contains(xml, "C from esp32.raw_temperature() (F)")
  fs.remove(dir, {recursive = true})
end, {timeout = 180})

test("a board without what a check needs fails that check with the reason; the board is named by its firmware or --board", function()
  -- the plain WebAssembly MicroPython has no machine module: the LED check cannot pass
  local code, out = mpctl({"test", "--port", "sim://micropython", "--board", "ESP32_GENERIC", "board"}, 90)
  test.eq(code, 1, out)
  test.contains(out, "FAIL  board: the board's LED blinks")
  test.contains(out, "ImportError")
  test.contains(out, "ok    board: the filesystem is writable")
  -- no --board, and a hosted port names no board: the LED is skipped, saying why
  code, out = mpctl({"test", "--port", "sim://micropython?machine=yes", "board"}, 90)
  test.eq(code, 0, out)
  test.contains(out, "skip  board: the board's LED blinks: board unknown (give --board ID)")
  test.contains(out, "ok    board: the temperature sensor (or an ADC) reads a plausible value")
  code, out = mpctl({"test", "board"}, 30)
  test.eq(code, 0, out)
  test.contains(out, "skip  board: the filesystem is writable: starter post-flash test: no --port given")
  test.contains(out, "0 passed, 0 failed, 4 skipped")
end, {timeout = 240})

test("esp32_flash test=yes runs the starter test after the REPL check", function()
  local dir = fs.tmpdir()
  local trace = fs.join(dir, "trace")
  local code, out = mpctl({"esp32_flash", "--port", "sim://esp32?timing=off&trace=" .. trace, "firmware=demo",
    "test=yes"}, 200)
  test.eq(code, 0, out)
  test.contains(out, "ok: print('hello') prints hello")
  test.contains(out, "ok: the board's LED blinks: pin 2 blinked 3 times")
  test.contains(out, "ok: the filesystem is writable")
  test.contains(out, "ok: free memory")
  test.eq(led_events(trace), "on,off,on,off,on,off")
  fs.remove(dir, {recursive = true})
end, {timeout = 240})
