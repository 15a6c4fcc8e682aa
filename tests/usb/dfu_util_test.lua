-- Peer check of the USB simulators: Debian's unchanged dfu-util 0.11 (through Debian's libusb and
-- its normal Linux backend) drives the simulated Pyboard ROM bootloader and the plain DFU 1.1
-- device on the umockdev bus. What it writes must be in the simulator's flash (flash=FILE, saved
-- when the simulator exits) byte for byte, and what it uploads back must equal the image.
-- The .dfu files come from dfu-util's own dfuse-pack, not from mpctl's writer.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

local BASE = 0x08000000

local function tmp()
  local dir = fs.tmpdir()
  return dir, function(name) return fs.join(dir, name) end
end

test("dfu-util lists the simulated Pyboard with the STM32F405 ROM's four alt settings", function()
  S.need("dfu-util")
  local out, code = S.run_sim("pyboard", {}, "dfu-util -l", 60)
  test.eq(code, 0, "dfu-util -l exit code")
  local found = {}
  for alt, name in out:gmatch('Found DFU: %[0483:df11%] ver=2200, devnum=%d+, cfg=1, intf=0, path="1%-1", alt=(%d), name="([^"]*)", serial="3276345E3233"') do
    found[tonumber(alt)] = name
  end
  test.eq(found[0], "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg", "alt 0")
  test.eq(found[1], "@Option Bytes  /0x1FFFC000/01*016 g", "alt 1")
  test.eq(found[2], "@OTP Memory /0x1FFF7800/01*512 g,01*016 g", "alt 2")
  test.eq(found[3], "@Device Feature/0xFFFF0000/01*004 g", "alt 3")
end)

test("dfu-util downloads a .dfu (from dfuse-pack) and uploads the flash back byte-identical", function()
  S.need("dfu-util")
  local dir, p = tmp()
  local img = S.image(300 * 1024 + 123, 11)
  S.write(p("fw.bin"), img)
  local out, code = S.run_sim("pyboard", { "flash=" .. p("flash.bin") }, table.concat({
    "set -e",
    "/usr/bin/dfuse-pack -b 0x08000000:" .. S.sh_quote(p("fw.bin")) .. " -D 0x0483:0xdf11 " .. S.sh_quote(p("fw.dfu")),
    "dfu-util -a 0 -D " .. S.sh_quote(p("fw.dfu")),
    string.format("dfu-util -a 0 -s 0x%08X:%d -U %s", BASE, #img, S.sh_quote(p("up.bin"))),
  }, "\n"), 120)
  test.eq(code, 0, "dfu-util exit code; output: " .. out:sub(-600))
  test.ok(S.read(p("up.bin")) == img, "uploaded flash equals the image")
  local flash = S.read(p("flash.bin"))
  test.eq(#flash, 1024 * 1024, "flash size")
  test.ok(flash:sub(1, #img) == img, "the simulator's flash holds the image")
  test.eq(flash:sub(#img + 1, #img + 1000), string.rep("\255", 1000), "flash after the image stays erased")
  fs.remove(dir, { recursive = true })
end)

test("dfu-util -s 0x08000000:leave -D a .bin: flash holds it and the board comes back as MicroPython's CDC port", function()
  S.need("dfu-util")
  local dir, p = tmp()
  local img = S.image(200 * 1024, 12)
  S.write(p("fw.bin"), img)
  local out, code = S.run_sim("pyboard", { "flash=" .. p("flash.bin") }, table.concat({
    "dfu-util -a 0 -s 0x08000000:leave -D " .. S.sh_quote(p("fw.bin")) .. " || exit 3",
    -- the re-enumeration is asynchronous: wait (bounded) for the CDC port
    "i=0; while [ ! -e /dev/ttyACM0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done",
    "ls /dev/ttyACM0 && dfu-util -l",
  }, "\n"), 120)
  test.eq(code, 0, "exit code; output: " .. out:sub(-600))
  test.contains(out, "/dev/ttyACM0", "the CDC port appeared")
  test.ok(not out:find("Found DFU: [0483:df11]", 1, true), "the DFU device is gone after leave")
  local flash = S.read(p("flash.bin"))
  test.ok(flash:sub(1, #img) == img, "the simulator's flash holds the .bin at 0x08000000")
  fs.remove(dir, { recursive = true })
end)

test("a device fault (dfuERROR errWRITE mid-download) makes dfu-util fail, not report success", function()
  S.need("dfu-util")
  local dir, p = tmp()
  S.write(p("fw.bin"), S.image(64 * 1024, 13))
  local out, code = S.run_sim("pyboard", { "fault=error", "fault_at=5" },
    "dfu-util -a 0 -s 0x08000000 -D " .. S.sh_quote(p("fw.bin")), 60)
  test.ne(code, 0, "dfu-util exit code")
  test.ok(out:find("dfuERROR", 1, true) or out:find("rror", 1, true), "dfu-util reports an error: " .. out:sub(-300))
  fs.remove(dir, { recursive = true })
end)

test("plain DFU 1.1 device: dfu-util download and upload round trip", function()
  S.need("dfu-util")
  local dir, p = tmp()
  local img = test.random_bytes(100 * 1024 + 17, 14)
  S.write(p("fw.bin"), img)
  local out, code = S.run_sim("dfu11", { "flash=" .. p("mem.bin") }, table.concat({
    "set -e", "dfu-util -l", "dfu-util -D " .. S.sh_quote(p("fw.bin")), "dfu-util -U " .. S.sh_quote(p("up.bin")),
  }, "\n"), 60)
  test.eq(code, 0, "exit code; output: " .. out:sub(-600))
  test.contains(out, 'Found DFU: [1209:0001]', "listed")
  test.ok(S.read(p("up.bin")) == img, "upload equals the image")
  test.ok(S.read(p("mem.bin")) == img, "the device holds the image")
  fs.remove(dir, { recursive = true })
end)
