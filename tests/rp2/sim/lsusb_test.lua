-- Debian's lsusb -v (usbutils) reads the simulated Picos' descriptors through umockdev's sysfs and
-- usbfs: ids and strings of the boot ROM (pico-bootrom-rp2040 usb_boot_device.c, pico-bootrom-rp2350
-- nsboot_usb_client.c), interface 0 mass storage 08/06/50 and interface 1 PICOBOOT FF/00/00 with bulk
-- EP 0x03 OUT and 0x84 IN; start=app shows MicroPython's CDC port 2E8A:0005.
local test = require("mpctl.test")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

local function iface_block(out, n)
  return out:match("bInterfaceNumber%s+" .. n .. "\n(.-)\n    Interface Descriptor") or out:match("bInterfaceNumber%s+" .. n .. "\n(.*)$")
end

for _, c in ipairs({ { "pico", "0003", "RP2 Boot", "1.10", "500mA" }, { "pico2", "000f", "RP2350 Boot", "2.10", "50mA" } }) do
  test("lsusb -v shows sim " .. c[1] .. "'s BOOTSEL descriptors", function()
    S.need("lsusb")
    local out, code = S.run_sim(c[1], {}, "lsusb -v -d 2e8a:" .. c[2], 60)
    test.eq(code, 0, "exit code: " .. out:sub(-500))
    test.contains(out, "ID 2e8a:" .. c[2] .. " Raspberry Pi " .. c[3], "ids and strings")
    test.ok(out:find("bcdUSB%s+" .. c[4]:gsub("%.", "%%.")), "bcdUSB " .. c[4])
    test.ok(out:find("bNumInterfaces%s+2"), "two interfaces")
    test.ok(out:find("MaxPower%s+" .. c[5]), "MaxPower " .. c[5])
    local msc, pb = iface_block(out, 0), iface_block(out, 1)
    test.ok(msc and msc:find("bInterfaceClass%s+8") and msc:find("bInterfaceSubClass%s+6") and msc:find("bInterfaceProtocol%s+80"), "interface 0 is mass storage (SCSI, bulk-only)")
    test.ok(msc:find("0x81%s+EP 1 IN") and msc:find("0x02%s+EP 2 OUT"), "mass-storage endpoints")
    test.ok(pb and pb:find("bInterfaceClass%s+255") and pb:find("bInterfaceSubClass%s+0") and pb:find("bInterfaceProtocol%s+0"), "interface 1 is the vendor (PICOBOOT) interface")
    test.ok(pb:find("0x03%s+EP 3 OUT") and pb:find("0x84%s+EP 4 IN"), "PICOBOOT bulk endpoints")
    test.ok(pb:find("Transfer Type%s+Bulk") and pb:find("wMaxPacketSize%s+0x0040"), "bulk, 64-byte packets")
  end)
end

test("start=app: lsusb shows MicroPython's CDC port 2E8A:0005 and the tty exists", function()
  S.need("lsusb")
  local out, code = S.run_sim("pico", { "start=app" }, S.WAIT_CDC .. "; lsusb -v -d 2e8a:0005 | grep -E 'iProduct|iManufacturer|bInterfaceClass'", 60)
  test.eq(code, 0, "exit code: " .. out:sub(-500))
  test.contains(out, "/dev/ttyACM0", "tty")
  test.contains(out, "MicroPython", "manufacturer")
  test.contains(out, "Board in FS mode", "product")
end)

test("boards=3: three BOOTSEL devices on ports 1-3; RP2040s share the ROM's serial, RP2350s do not", function()
  S.need("lsusb")
  local out, code = S.run_sim("pico", { "boards=3" }, "for d in /sys/bus/usb/devices/1-*; do cat $d/idProduct $d/serial; done", 60)
  test.eq(code, 0, "exit code: " .. out)
  local n = select(2, out:gsub("0003\nE0C9125B0D9B", ""))
  test.eq(n, 3, "three RP2040 BOOTSEL devices with the ROM's serial: " .. out)
  local out2 = S.run_sim("pico2", { "boards=2" }, "cat /sys/bus/usb/devices/1-*/serial", 60)
  local a, b = out2:match("(%x+)\n(%x+)")
  test.ok(a and b and a ~= b, "two RP2350s, two serials: " .. out2)
end)
