-- The simulated Pico's BOOTSEL drive (drive=DIR): the ROM's INFO_UF2.TXT / INDEX.HTM, and UF2 files
-- copied in, written by an independent UF2 writer (tests/rp2/sim/uf2_peer.py, from the UF2 spec
-- only), processed as the boot ROM does: blocks of another family ignored, a block beyond the chip
-- counted but not written, reboot after the last block into MicroPython's CDC port, the drive
-- folder gone while MicroPython runs and back after machine.bootloader(). The flash file must equal
-- what the independent reader (uf2_peer.py read) makes of the same UF2.
local test = require("mpctl.test")
local ui = require("mpctl.ui")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

local RP2040, RP2350_ARM_S = "0xe48bff56", "0xe48bff59"

test("the drive folder shows the ROM's INFO_UF2.TXT and INDEX.HTM (pico and pico2)", function()
  S.need()
  local p, cleanup = S.tmp()
  local out, code = S.run_sim("pico", { "drive=" .. p("RPI-RP2") }, "cat " .. S.q(p("RPI-RP2/INFO_UF2.TXT")) .. "; ls " .. S.q(p("RPI-RP2")), 60)
  test.eq(code, 0, "exit code: " .. out)
  test.contains(out, "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n", "RP2040 INFO_UF2.TXT")
  test.contains(out, "INDEX.HTM", "INDEX.HTM")
  local out2, code2 = S.run_sim("pico2", { "drive=" .. p("RP2350") }, "cat " .. S.q(p("RP2350/INFO_UF2.TXT")), 60)
  test.eq(code2, 0, "exit code: " .. out2)
  test.contains(out2, "Model: Raspberry Pi RP2350\r\nBoard-ID: RP2350\r\n", "RP2350 INFO_UF2.TXT")
  test.ok(not S.read(p("RPI-RP2/INFO_UF2.TXT")), "the drive folder is gone after the simulator exits")
  cleanup()
end)

test("a UF2 copied to the drive: foreign-family and out-of-range blocks ignored, reboot into MicroPython, drive gone, machine.bootloader() brings it back", function()
  S.need("lsusb")
  local p, cleanup = S.tmp()
  local drive = p("RPI-RP2")
  local cmd = table.concat({
    "set -e",
    S.py(S.UF2_PEER, "make-image", p("fw.bin"), 50 * 1024 + 77, 9, "rp2040"),
    -- 20 RP2350 blocks aimed at 0x10100000 interleaved, a block at 0x10200000 (past the 2 MiB chip)
    -- in the numbering, and a block at 0x30000000 (not flash) ahead of everything
    S.py(S.UF2_PEER, "write", p("fw.uf2"), p("fw.bin"), "0x10000000", RP2040,
      "wrong-family=" .. RP2350_ARM_S .. "@0x10100000:20", "beyond=0x10200000", "garbage-first=0x30000000"),
    S.py(S.UF2_PEER, "read", p("fw.uf2"), RP2040, p("expect.bin"), "0x10000000", 2 * 1024 * 1024),
    "cp " .. S.q(p("fw.uf2")) .. " " .. S.q(drive .. "/"),
    "set +e",
    S.WAIT_CDC,
    "test -e " .. S.q(drive) .. " && echo DRIVE-STILL-THERE",
    -- MicroPython's machine.bootloader() over the friendly REPL
    "printf 'import machine\\r' > /dev/ttyACM0; sleep 0.3; printf 'machine.bootloader()\\r' > /dev/ttyACM0",
    "i=0; while [ ! -e " .. S.q(drive .. "/INFO_UF2.TXT") .. " ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done",
    "lsusb -d 2e8a:0003; ls " .. S.q(drive),
  }, "\n")
  local out, code = S.run_sim("pico", { "drive=" .. drive, "flash=" .. p("flash.bin"), "stats=" .. p("stats.json") }, cmd, 120)
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  test.contains(out, "ID 2e8a:0005 MicroPython Board in FS mode", "MicroPython's port after the copy")
  test.ok(not out:find("DRIVE-STILL-THERE", 1, true), "the drive folder went away while MicroPython runs")
  test.contains(out, "ID 2e8a:0003 Raspberry Pi RP2 Boot", "BOOTSEL after machine.bootloader()")
  test.contains(out, "INFO_UF2.TXT", "the drive is back")
  local flash, expect = S.read(p("flash.bin")), S.read(p("expect.bin"))
  test.eq(#flash, 2 * 1024 * 1024, "flash size")
  test.ok(flash == expect, "the flash equals the independent reader's image of the UF2's RP2040 blocks")
  test.eq(flash:sub(0x100001, 0x100000 + 20 * 256), string.rep("\255", 20 * 256), "the RP2350 blocks' target stays erased")
  local st = ui.json_decode(S.read(p("stats.json")))
  test.eq(st.uf2_blocks_written, (50 * 1024 + 77 + 255) // 256, "blocks written: the image's pages only")
  cleanup()
end)

test("a UF2 of the wrong family is ignored; a later correct one is taken (pico2: RP2040 blocks ignored)", function()
  S.need()
  local p, cleanup = S.tmp()
  local drive = p("RP2350")
  local cmd = table.concat({
    "set -e",
    S.py(S.UF2_PEER, "make-image", p("fw.bin"), 9000, 4, "rp2350"),
    S.py(S.UF2_PEER, "write", p("a_wrong.uf2"), p("fw.bin"), "0x10040000", RP2040),
    S.py(S.UF2_PEER, "write", p("b_good.uf2"), p("fw.bin"), "0x10000000", RP2350_ARM_S),
    "cp " .. S.q(p("a_wrong.uf2")) .. " " .. S.q(drive .. "/"),
    "cp " .. S.q(p("b_good.uf2")) .. " " .. S.q(drive .. "/"),
    "set +e", S.WAIT_CDC,
  }, "\n")
  local out, code = S.run_sim("pico2", { "drive=" .. drive, "flash=" .. p("flash.bin"), "stats=" .. p("stats.json") }, cmd, 120)
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  test.contains(out, "ID 2e8a:0005 MicroPython", "MicroPython after the good file")
  local flash, img = S.read(p("flash.bin")), S.read(p("fw.bin"))
  test.ok(flash:sub(1, #img) == img, "the RP2350 blocks are in flash")
  test.eq(flash:sub(0x40001, 0x40000 + #img), string.rep("\255", #img), "the RP2040 blocks were not written")
  local st = ui.json_decode(S.read(p("stats.json")))
  test.eq(st.uf2_blocks_written, (9000 + 255) // 256, "only the good file's blocks were written")
  cleanup()
end)

test("drive= naming a folder with other files is refused before anything starts", function()
  S.need()
  local p, cleanup = S.tmp()
  S.write(p("notes.txt"), "mine")
  local out, code = S.run_sim("pico", { "drive=" .. p("") }, "true", 60)
  test.ne(code, 0, "exit code")
  test.contains(out, "notes.txt", "names the file: " .. out)
  test.eq(S.read(p("notes.txt")), "mine", "the file is untouched")
  cleanup()
end)
