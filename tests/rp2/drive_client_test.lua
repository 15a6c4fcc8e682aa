-- mpctl.rp2.drive on folders made here: INFO_UF2.TXT as the RP2040 and RP2350 ROMs write it (CRLF
-- lines) is recognised, a UF2 drive of another bootloader is not, a copy is the UF2's exact bytes,
-- and the wait for the drive to go away is bounded. (The simulated drive end to end:
-- tests/rp2/flash_test.lua.)
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local drive = require("mpctl.rp2.drive")
local uf2 = require("mpctl.rp2.uf2")

local R = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")
local write, read, with_dir = R.write, R.read, R.with_dir

test("INFO_UF2.TXT of the RP2040 and RP2350 ROMs is recognised; another bootloader's drive is not", function()
  with_dir(function(dir)
    local a, b, c = fs.join(dir, "RPI-RP2"), fs.join(dir, "RP2350"), fs.join(dir, "FEATHERBOOT")
    for _, d in ipairs({ a, b, c }) do fs.mkdir(d) end
    write(fs.join(a, "INFO_UF2.TXT"), "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n")
    write(fs.join(b, "INFO_UF2.TXT"), "UF2 Bootloader v1.0\r\nModel: Raspberry Pi RP2350\r\nBoard-ID: RP2350\r\n")
    write(fs.join(c, "INFO_UF2.TXT"), "UF2 Bootloader v3.15.0\r\nModel: Adafruit Feather M0\r\nBoard-ID: SAMD21G18A-Feather-v0\r\n")
    local i = drive.info(a)
    test.eq(i.board_id, "RPI-RP2"); test.eq(i.model, "Raspberry Pi RP2"); test.eq(i.version, "v3.0")
    test.eq(#drive.find { drive = a }, 1, "the RP2040 drive")
    test.eq(#drive.find { drive = b, board_id = "RP2350" }, 1, "the RP2350 drive")
    test.eq(#drive.find { drive = a, board_id = "RP2350" }, 0, "an RP2040 drive is not a Pico 2's")
    test.eq(#drive.find { drive = c }, 0, "a SAMD21 UF2 drive is not an RP2 drive")
    test.eq(drive.info(fs.join(dir, "nothing")), nil, "a folder without INFO_UF2.TXT")
  end)
end)

test("copy writes the UF2's exact bytes under a new name; wait_gone is bounded and sees the drive go", function()
  with_dir(function(dir)
    write(fs.join(dir, "INFO_UF2.TXT"), "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n")
    local data = uf2.build({ { offset = 0x10000000, data = test.random_bytes(3000, 80) } }, { family = uf2.FAMILY.RP2040 })
    local p1 = drive.copy(dir, data)
    test.eq(read(p1), data, "exact bytes (the UF2 ends in 0x0A, so nothing is added)")
    local p2 = drive.copy(dir, data)
    test.ne(p1, p2, "a second copy does not append to the first")
    test.raises(function() drive.copy(dir, "not a uf2") end, "not a UF2")
    test.eq(drive.wait_gone(dir, 0.3), false, "still there: the wait ends with false")
    os.remove(fs.join(dir, "INFO_UF2.TXT"))
    test.eq(drive.wait_gone(dir, 0.3), true, "gone when INFO_UF2.TXT is")
  end)
end)
