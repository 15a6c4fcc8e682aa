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

test("--port auto picks the only attached board, and lists them when several could be", function()
  local one = cli.describe_ports({
    { path = "/dev/ttyUSB0", vid = 0x10C4, pid = 0xEA60 },
    { path = "/dev/ttyACM1", vid = 0x1234, pid = 0x5678 },
    { path = "/dev/ttyS0" },
  })
  test.eq(cli.auto_port(one), "/dev/ttyUSB0")
  local two = cli.describe_ports({
    { path = "/dev/ttyUSB0", vid = 0x10C4, pid = 0xEA60 },
    { path = "/dev/ttyACM0", vid = 0x303A, pid = 0x1001 },
  })
  local ok, err = pcall(cli.auto_port, two)
  test.ok(not ok, "several boards must not be guessed between")
  test.contains(err.msg, "several devices could be the board; pick one with --port")
  test.contains(err.msg, "/dev/ttyUSB0 (10C4:EA60, looks like esp)")
  test.contains(err.msg, "/dev/ttyACM0 (303A:1001")
  ok, err = pcall(cli.auto_port, cli.describe_ports({ { path = "/dev/ttyS0" } }))
  test.ok(not ok)
  test.contains(err.msg, "no MicroPython or bootloader device found by USB id (ports present: /dev/ttyS0)")
end)

test("--port auto on this machine: what it finds, or a usage error (exit 2) naming the ports", function()
  local rows = cli.describe_ports(require("mpctl.serial").list())
  local boards = 0
  for _, r in ipairs(rows) do if #r.boards > 0 then boards = boards + 1 end end
  local rc, out = require("support").mpctl("--port auto tests/fixtures/recipes/sandbox_probe.lua what=arg")
  if boards == 1 then
    test.eq(rc, 0, out)
  else
    test.eq(rc, 2, out)
    test.contains(out, "--port auto: ")
  end
end)
