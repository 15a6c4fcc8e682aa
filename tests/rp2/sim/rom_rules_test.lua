-- The simulated boot ROM's rules where the two ROMs' sources say more than picoboot.h (the peers in
-- this folder only know the header): driven directly through the device-model interface
-- (bulk_out/bulk_in/control, docs/simulators.md "USB device models"), no bus. Expected values come
-- from pico-bootrom-rp2040 (usb_boot_device.c, async_task.c, virtual_disk.c) and
-- pico-bootrom-rp2350 (nsboot_usb_client.c, usb_virtual_disk.c), as cited in rp2_boot.lua.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local chips = require("mpctl.sim.rp2.chips")
local board_mod = require("mpctl.sim.rp2.board")
local rp2_boot = require("mpctl.sim.usb.rp2_boot")

local OUT, IN = 0x03, 0x84
local STATUS_SETUP = string.pack("<BBI2I2I2", 0xC1, 0x42, 0, 1, 16)
local RESET_SETUP = string.pack("<BBI2I2I2", 0x41, 0x41, 0, 1, 0)

local function new(chip, opts)
  opts = opts or {}
  opts.quiet = "yes"
  local b = board_mod.new(chips[chip], opts)
  local m = rp2_boot.new(b)
  m:on_plug()
  return m, b
end

local token = 0
local function cmd(id, args, tlen, size)
  token = token + 1
  args = args or ""
  return string.pack("<I4I4BBI2I4", 0x431FD10B, token, id, size or #args, 0, tlen or 0) .. args .. string.rep("\0", 16 - #args)
end

local function status(m)
  local st, r = m:control(STATUS_SETUP)
  assert(st == "ok")
  local tok, code, id, busy = string.unpack("<I4I4BB", r)
  return { token = tok, code = code, cmd = id, busy = busy }
end

local function erase(m, addr, size)
  test.eq(m:bulk_out(OUT, cmd(0x03, string.pack("<I4I4", addr, size))), "ok", "erase command accepted")
  return m:bulk_in(IN, 64)
end

test("RP2040 acks a misaligned FLASH_ERASE with status OK and erases nothing; RP2350 stalls with BAD_ALIGNMENT", function()
  local m, b = new("rp2040")
  b.flash:program(0x1000, "\0\0\0\0")
  local st, data = erase(m, 0x10000100, 4096)
  test.eq(st, "ok", "RP2040: ACK")
  test.eq(data, "", "zero-length ACK")
  test.eq(status(m).code, 0, "RP2040: status OK")
  test.eq(b.flash:read(0x1000, 4), "\0\0\0\0", "nothing erased")
  local m2 = new("rp2350")
  test.eq(erase(m2, 0x10000100, 4096), "stall", "RP2350: the ACK stalls")
  local s2 = status(m2)
  test.eq(s2.code, 5, "BAD_ALIGNMENT")
  test.eq(s2.cmd, 0x03, "command id")
  test.eq(m2:bulk_out(OUT, cmd(0x06)), "stall", "OUT stays halted")
  test.eq(m2:control(RESET_SETUP), "ok", "INTERFACE_RESET")
  test.eq(m2:bulk_out(OUT, cmd(0x06)), "ok", "commands work again")
  test.eq(m2:bulk_in(IN, 64), "ok", "EXIT_XIP acked")
end)

test("command checks: bad magic keeps the old status; bCmdSize -> INVALID_CMD_LENGTH; dTransferLength -> INVALID_TRANSFER_LENGTH", function()
  local m = new("rp2040")
  test.eq(m:bulk_out(OUT, cmd(0x06)), "ok", "EXIT_XIP")
  test.eq(m:bulk_in(IN, 64), "ok", "ack")
  local before = status(m)
  local bad = cmd(0x06):gsub("^....", "\0\0\0\0")
  test.eq(m:bulk_out(OUT, bad), "ok", "the packet is taken by the hardware")
  test.eq(m:bulk_in(IN, 64), "stall", "then both endpoints stall")
  local after = status(m)
  test.eq(after.token, before.token, "status untouched by a packet without the magic")
  m:control(RESET_SETUP)
  m:bulk_out(OUT, cmd(0x03, string.pack("<I4I4", 0x10000000, 4096), 0, 4))
  test.eq(m:bulk_in(IN, 64), "stall", "wrong bCmdSize stalls")
  test.eq(status(m).code, 2, "INVALID_CMD_LENGTH")
  m:control(RESET_SETUP)
  m:bulk_out(OUT, cmd(0x84, string.pack("<I4I4", 0x10000000, 256), 128))
  test.eq(m:bulk_in(IN, 128), "stall", "dTransferLength ~= dSize stalls")
  test.eq(status(m).code, 3, "INVALID_TRANSFER_LENGTH")
  m:control(RESET_SETUP)
  m:bulk_out(OUT, cmd(0x05, string.pack("<I4I4", 0x10000080, 256), 256))
  test.eq(m:bulk_out(OUT, string.rep("\0", 256)), "stall", "WRITE to a flash address not 256-aligned stalls")
  test.eq(status(m).code, 5, "BAD_ALIGNMENT")
  test.eq(m:bulk_in(IN, 64), "timeout", "RP2040 halts only the data endpoint: IN is not stalled (it would NAK)")
end)

test("SRAM and the ROM header are readable; SRAM keeps what is written", function()
  local m = new("rp2040")
  m:bulk_out(OUT, cmd(0x05, string.pack("<I4I4", 0x20001000, 8), 8))
  test.eq(m:bulk_out(OUT, "ABCDEFGH"), "ok", "RAM write")
  test.eq(m:bulk_in(IN, 64), "ok", "ack")
  m:bulk_out(OUT, cmd(0x84, string.pack("<I4I4", 0x20001000, 8), 8))
  local st, d = m:bulk_in(IN, 8)
  test.eq(st, "ok", "RAM read")
  test.eq(d, "ABCDEFGH", "RAM content")
  test.eq(m:bulk_out(OUT, ""), "ok", "ack")
  m:bulk_out(OUT, cmd(0x84, string.pack("<I4I4", 0x10, 4), 4))
  local _, rom = m:bulk_in(IN, 4)
  test.eq(rom, "Mu\1\3", "ROM magic 'Mu', 1, version 3 at 0x10")
end)

test("the boot rule: RP2040 boot2 CRC, RP2350 IMAGE_DEF block", function()
  local f = require("mpctl.sim.rp2.flash").new(2 * 1024 * 1024)
  test.ok(not chips.rp2040.valid(f), "erased flash does not boot")
  local boot2 = string.rep("\1", 252)
  f:program(0, boot2 .. string.pack("<I4", chips.boot2_crc(boot2)))
  test.ok(chips.rp2040.valid(f), "boot2 with its CRC boots")
  -- the check value of this CRC (CRC-32/MPEG-2) over "123456789" is 0x0376E6E7
  test.eq(chips.boot2_crc("123456789"), 0x0376E6E7, "CRC-32/MPEG-2 check value")
  local f2 = require("mpctl.sim.rp2.flash").new(4 * 1024 * 1024)
  test.ok(not chips.rp2350.valid(f2), "erased flash does not boot (RP2350)")
  f2:program(0x100, string.pack("<I4BBI2BI2BI4I4", 0xFFFFDED3, 0x42, 1, 0x1021, 0xFF, 1, 0, 0, 0xAB123579))
  test.ok(chips.rp2350.valid(f2), "an IMAGE_DEF block boots")
end)

test("drive: exclusive access refuses the drive's writes; EXCLUSIVE_AND_EJECT removes the folder until INTERFACE_RESET", function()
  local dir = fs.tmpdir()
  local d = fs.join(dir, "RPI-RP2")
  local m, b = new("rp2040", { drive = d })
  test.ok(fs.exists(fs.join(d, "INFO_UF2.TXT")), "drive mounted")
  m:bulk_out(OUT, cmd(0x01, "\2"))
  test.eq(m:bulk_in(IN, 64), "ok", "EXCLUSIVE_AND_EJECT acked")
  test.ok(not fs.exists(d), "the drive folder is gone (ejected)")
  m:control(RESET_SETUP)
  test.ok(fs.exists(fs.join(d, "INDEX.HTM")), "back after INTERFACE_RESET")
  m:bulk_out(OUT, cmd(0x01, "\1"))
  m:bulk_in(IN, 64)
  local blk = string.pack("<I4I4I4I4I4I4I4I4", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1, 0xE48BFF56)
    .. string.rep("\0", 476) .. string.pack("<I4", 0x0AB16F30)
  local secs, action = b.uf2:sector(blk, true)
  test.eq(action, nil, "no reboot while exclusive")
  test.eq(b.uf2.stats.written, 0, "nothing written while exclusive")
  local _, action2 = b.uf2:sector(blk, false)
  test.eq(action2, "reboot", "the same one-block UF2 completes without exclusive access")
  test.ok(secs == 0, "no flash work for a refused block")
  m:on_unplug()
  fs.remove(dir, { recursive = true })
end)

test("UF2: a block aimed at neither flash nor RAM makes the ROM forget the download (it never completes)", function()
  local b = board_mod.new(chips.rp2040, { quiet = "yes", drive = fs.join(fs.tmpdir(), "D") })
  local function blk(addr, no, count)
    return string.pack("<I4I4I4I4I4I4I4I4", 0x0A324655, 0x9E5D5157, 0x2000, addr, 256, no, count, 0xE48BFF56)
      .. string.rep("\0", 476) .. string.pack("<I4", 0x0AB16F30)
  end
  test.eq(select(2, b.uf2:sector(blk(0x10000000, 0, 3))), nil, "block 0")
  test.eq(select(2, b.uf2:sector(blk(0x30000000, 1, 3))), nil, "garbage block 1")
  test.eq(select(2, b.uf2:sector(blk(0x10000200, 2, 3))), nil, "block 2: the download restarted, only 1 of 3 seen")
  test.eq(b.uf2.count, 1, "one block counted after the restart")
  fs.remove(fs.dirname(b.opts.drive), { recursive = true })
end)
