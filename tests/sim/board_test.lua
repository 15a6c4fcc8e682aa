-- The simulated boards' hardware for MicroPython (lua/mpctl/sim/board/): the `machine` module a
-- post-flash test uses on a real board must work on sim://esp32 (and sim://micropython with
-- machine=yes), and what the code does to the virtual hardware must be observable from outside
-- (the simulator's trace). Also: one `mpctl sim micropython --listen` keeps its files for every
-- client, as a powered board does.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local repl = require("mpctl.repl")
local fs = require("mpctl.fs")
local proc = require("mpctl.proc")

local function have_mp()
  return pcall(function() return require("mpctl.sim.micropython").script_path() end)
end

local app_flash = require("simboard").app_flash

local function events(trace)
  local out = {}
  for _, caps in ipairs(require("simboard").trace_lines(trace, "^[%d%.]+ board: (.*)$")) do
    out[#out + 1] = tostring(caps[1])
  end
  return out
end

local STARTER = [[
import machine
led = machine.Pin(LED, machine.Pin.OUT)
for _ in range(3):
    led.on()
    led.off()
led.toggle()
print('led', led.value())
adc = machine.ADC(machine.Pin(1))
v = adc.read_u16()
print('adc', 0 < v < 65536)
i2c = machine.I2C(0, scl=machine.Pin(9), sda=machine.Pin(8), freq=100000)
print('scan', i2c.scan())
b = i2c.readfrom_mem(0x48, 0, 2)
print('temp', ((b[0] << 4) | (b[1] >> 4)) * 0.0625)
try:
    i2c.readfrom_mem(0x50, 0, 1)
except OSError as e:
    print('absent', e.args[0])
print('uid', len(machine.unique_id()))
]]

test("sim://esp32: the starter post-flash code blinks the LED (seen in the trace), reads the ADC and the I2C sensor", function()
  if not have_mp() then return test.skip("MicroPython WebAssembly package not installed") end
  local dir = fs.tmpdir()
  local trace = fs.join(dir, "trace")
  local r = repl.attach(serial.open("sim://esp32?timing=off&flash_size=1MB&temp=21.5&flash_file=" ..
    app_flash(dir) .. "&trace=" .. trace), { timeout = 20, owns_port = true })
  local out = r:exec((STARTER:gsub("LED", "2")))
  test.eq(out, "led 1\nadc True\nscan [72]\ntemp 21.5\nabsent 19\nuid 6\n")
  test.eq(r:exec("import esp32\nprint(esp32.raw_temperature())"), "128\n")
  r:close()
  local ev = events(trace)
  local leds = {}
  for _, e in ipairs(ev) do
    local s = e:match("^led (%a+)$")
    if s then leds[#leds + 1] = s end
  end
  test.eq(table.concat(leds, ","), "on,off,on,off,on,off,on", "the LED's toggles, in order")
  test.contains(table.concat(ev, "\n"), "i2c 72 read 0")
  fs.remove(dir, { recursive = true })
end)

test("sim://esp32c3: the LED is on GPIO8 as in the board file; esp32.mcu_temperature() reads", function()
  if not have_mp() then return test.skip("MicroPython WebAssembly package not installed") end
  local dir = fs.tmpdir()
  local trace = fs.join(dir, "trace")
  -- a one-segment ESP32-C3 image (chip id 5) at 0x0
  local path = fs.join(dir, "flash.bin")
  local hdr = string.pack("<BBBBI4", 0xE9, 1, 2, 0x20, 0x40380000) .. "\xEE\0\0\0\5\0" .. string.rep("\0", 10)
  fs.write(path, hdr .. string.rep("\255", 0x100000 - #hdr))
  local r = repl.attach(serial.open("sim://esp32c3?timing=off&flash_size=1MB&flash_file=" .. path ..
    "&trace=" .. trace), { timeout = 20, owns_port = true })
  test.eq(r:exec("import machine, esp32\nmachine.Pin(8, machine.Pin.OUT).on()\nprint(20 < esp32.mcu_temperature() < 80)"),
    "True\n")
  r:close()
  test.contains(table.concat(events(trace), "\n"), "pin 8 1\nled on")
  fs.remove(dir, { recursive = true })
end)

test("sim://esp32: machine.reset() power-cycles the board (a fresh boot from flash)", function()
  if not have_mp() then return test.skip("MicroPython WebAssembly package not installed") end
  local dir = fs.tmpdir()
  local p = serial.open("sim://esp32?timing=off&flash_size=1MB&flash_file=" .. app_flash(dir), { baud = 115200 })
  p:expect(">>> ", 20, true)
  p:write("import machine; machine.reset()\r")
  p:expect("rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)", 10, true)
  p:expect(">>> ", 20, true)
  p:close()
  fs.remove(dir, { recursive = true })
end)

test("sim://micropython?machine=yes has the same machine module; without it the port is as published", function()
  if not have_mp() then return test.skip("MicroPython WebAssembly package not installed") end
  local r = repl.attach(serial.open("sim://micropython?machine=yes"), { timeout = 20, owns_port = true })
  test.eq(r:exec((STARTER:gsub("LED", "2"))), "led 1\nadc True\nscan [72]\ntemp 24.0\nabsent 19\nuid 6\n")
  r:close()
  local q = repl.attach(serial.open("sim://micropython"), { timeout = 20, owns_port = true })
  local ok, err = pcall(q.exec, q, "import machine")
  test.eq(ok, false)
  test.contains(tostring(err), "machine")
  q:close()
end)

test("mpctl sim micropython --listen: clients one after another share the board's files", function()
  if not have_mp() then return test.skip("MicroPython WebAssembly package not installed") end
  local exe = assert(test.exe(), "mpctl executable")
  local p = proc.spawn { argv = { exe, "sim", "micropython", "--listen", "socket://127.0.0.1:0" }, pty = false,
    stderr = "null" }
  local ok, err = pcall(function()
    local out = serial.wrap_fd(p:stdout_fd(), "sim stdout")
    local url = out:read_until("\n", 15):match("%S+")
    out:close()
    local r = repl.attach(serial.open(url), { timeout = 20, owns_port = true })
    r:exec("f = open('kept.txt', 'w')\nf.write('still here')\nf.close()")
    r:close()
    local r2 = repl.attach(serial.open(url), { timeout = 20, owns_port = true })
    test.eq(r2:exec("print(open('kept.txt').read())"), "still here\n")
    r2:close()
  end)
  p:kill()
  p:wait(5)
  p:close()
  if not ok then error(err, 0) end
end)

test("sim://esp32: MicroPython's files survive a hard reset and machine.reset(), as on a board", function()
  if not have_mp() then return test.skip("MicroPython WebAssembly package not installed") end
  local dir = fs.tmpdir()
  local trace = fs.join(dir, "trace")
  local p = serial.open("sim://esp32?timing=off&flash_size=1MB&flash_file=" .. app_flash(dir) ..
    "&trace=" .. trace, { baud = 115200 })
  p:expect(">>> ", 20, true)
  p:write("import os; os.mkdir('lib'); f = open('lib/kept.py', 'w'); f.write('X = 42'); f.close()\r")
  p:expect(">>> ", 10, true)
  -- hard reset: an RTS pulse with IO0 released
  p:set_rts(true)
  require("mpctl.time").sleep(0.05)
  p:set_rts(false)
  p:expect("SPI_FAST_FLASH_BOOT", 10, true)
  p:expect(">>> ", 20, true)
  p:write("import sys; sys.path.append('/lib'); import kept; print('got', kept.X)\r")
  p:expect("got 42", 10, true)
  p:expect(">>> ", 10, true)
  p:write("import machine; machine.reset()\r")
  p:expect("SW_CPU_RESET", 10, true)
  p:expect(">>> ", 20, true)
  p:write("print(open('lib/kept.py').read())\r")
  p:expect("X = 42", 10, true)
  p:close()
  test.contains(fs.read(trace), "app files restored: 2, 6 bytes")
  fs.remove(dir, { recursive = true })
end)
