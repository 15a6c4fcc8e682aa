-- `mpctl ports`: which board a USB serial port looks like, from the USB ids in boards/.
local test = require("mpctl.test")
local cli = require("mpctl.cli")

test("USB ids map to board families; unknown ids map to none", function()
  local rows = cli.describe_ports({
    { path = "/dev/ttyUSB0", vid = 0x10C4, pid = 0xEA60, serial = "0001", product = "CP2102 USB to UART" },
    { path = "/dev/ttyACM0", vid = 0x303A, pid = 0x1001, product = "USB JTAG/serial debug unit" },
    { path = "/dev/ttyACM1", vid = 0x1234, pid = 0x5678 },
    { path = "/dev/ttyS0" },
  })
  test.eq(#rows, 4)
  local by = {}
  for _, r in ipairs(rows) do by[r.path] = r end
  test.eq(by["/dev/ttyUSB0"].usb, "10C4:EA60")
  test.eq(by["/dev/ttyUSB0"].families, { "esp" })
  test.ok(#by["/dev/ttyUSB0"].boards >= 2, "a CP210x could be several ESP boards")
  local usj = by["/dev/ttyACM0"].boards
  local has_c3 = false
  for _, id in ipairs(usj) do if id == "ESP32_GENERIC_C3" then has_c3 = true end end
  test.ok(has_c3, "303A:1001 (USB-Serial/JTAG) suggests the ESP32-C3 among others")
  test.eq(by["/dev/ttyACM1"].families, {})
  test.eq(by["/dev/ttyS0"].usb, nil)
end)

test("ports --port asks the REPL what the board runs", function()
  local p = assert(io.popen(string.format("%q ports --port sim://micropython --json 2>&1", test.exe())))
  local out = p:read("a")
  p:close()
  local row = require("mpctl.ui").json_decode(out:match("[^\n]+"))
  test.eq(row.path, "sim://micropython")
  test.eq(row.firmware.version, "1.27.0")
  test.eq(row.firmware.machine, "JS with Emscripten")
end)
