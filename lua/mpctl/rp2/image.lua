--[[ mpctl.rp2.image: what goes onto an RP2 board's flash, apart from any device: which board a
UF2 is for (guess_board), a firmware file's parts (parts), and a bootable demo image for
firmware=demo and the bench (demo_image, with the RP2040 boot2 CRC and the RP2350 IMAGE_DEF the
chips' ROMs check before they boot). mpctl.rp2.target re-exports them for recipes.
]]
local usb = require("mpctl.usb")
local uf2 = require("mpctl.rp2.uf2")
local picoboot = require("mpctl.rp2.picoboot")

local M = {}

--- Which board to assume without --board: the chip of the BOOTSEL device present (one chip
--- kind), else the chip the UF2 is for, else RPI_PICO. The device comes first so that a UF2 for the
--- other chip is refused by the family check, naming both. Returns id, why. The W boards cannot be
--- told apart from their BOOTSEL ROM (same chip, same ids): they need --board.
function M.guess_board(firmware_path)
  -- open = false: only counted, so a device another mpctl is flashing (many boards) is not opened
  local rp2040 = #usb.list { vid = picoboot.VID, pid = 0x0003, open = false }
  local rp2350 = #usb.list { vid = picoboot.VID, pid = 0x000F, open = false }
  if rp2350 > 0 and rp2040 == 0 then return "RPI_PICO2", "an RP2350 is in BOOTSEL" end
  if rp2040 > 0 and rp2350 == 0 then return "RPI_PICO", "an RP2040 is in BOOTSEL" end
  if firmware_path and firmware_path ~= "demo" then
    local ok, data = pcall(require("mpctl.firmware").load_file, firmware_path, { max = 64 * 1024 * 1024 })
    local okp, file = false, nil
    if ok and uf2.is_uf2(data) then okp, file = pcall(uf2.parse, data, firmware_path) end
    if okp and file.families[uf2.FAMILY.RP2040] then return "RPI_PICO", "the UF2 is for the RP2040" end
    if okp and (file.families[uf2.FAMILY.RP2350_ARM_S] or file.families[uf2.FAMILY.RP2350_RISCV]) then
      return "RPI_PICO2", "the UF2 is for the RP2350"
    end
  end
  return "RPI_PICO", "the default"
end

--- What a firmware file puts where: a .uf2 (its blocks of the board's family; another family is
--- refused here, before any device is touched, naming both), an .elf (its PT_LOAD segments), or
--- a .bin at the board's flash start (0x10000000) or opts.address.
function M.parts(path, board, opts)
  opts = opts or {}
  local data = require("mpctl.firmware").load_file(path, { max = 64 * 1024 * 1024 })
  local parts
  if uf2.is_uf2(data) then
    local file
    parts, file = uf2.load(data, { where = path, families = board.uf2_families, board = board.id })
    for _, p in ipairs(parts) do p.family = file.family end
  elseif uf2.is_elf(data) then
    parts = uf2.from_elf(data, path)
  else
    parts = { { offset = opts.address or board.offset, data = data, name = path } }
  end
  return parts
end

-- The RP2040 boot ROM's boot2 checksum: a CRC-32 with polynomial 0x04C11DB7, not reflected, init
-- 0xFFFFFFFF, no final xor, of the first 252 bytes, stored little-endian in the last 4 (pico-sdk
-- src/rp2040/boot_stage2/pad_checksum run with `-s 0xffffffff` by its CMakeLists.txt; checked here
-- on the published padded bs2_default, whose word is 0x7a4eb274).
function M.boot2_crc(data)
  local crc = 0xFFFFFFFF
  for i = 1, #data do
    crc = crc ~ (data:byte(i) << 24)
    for _ = 1, 8 do
      if crc & 0x80000000 ~= 0 then crc = ((crc << 1) ~ 0x04C11DB7) & 0xFFFFFFFF else crc = (crc << 1) & 0xFFFFFFFF end
    end
  end
  return crc
end

-- The smallest IMAGE_DEF block an RP2350 executable carries in its first 4 KiB (pico-sdk
-- src/rp2_common/pico_crt0/embedded_start_block.inc.S and boot/picobin.h): PICOBIN_BLOCK_MARKER_START
-- 0xffffded3; item IMAGE_TYPE (0x42, 1 word) = EXE (1) | SECURITY_S (2 << 4) | CPU_ARM (0 << 8) |
-- CHIP_RP2350 (1 << 12); item LAST (0xff) with the items' size in words (1); link 0 (no end block);
-- PICOBIN_BLOCK_MARKER_END 0xab123579.
M.RP2350_IMAGE_DEF = string.pack("<I4BBI2BI2BI4I4", 0xffffded3, 0x42, 1, 0x1 | (0x2 << 4) | (0x1 << 12), 0xff, 1, 0, 0, 0xab123579)

--- A MicroPython-like image for firmware=demo and the bench, bootable by the chip's ROM rule:
--- RP2040: a 256-byte boot2 with its checksum, then a Cortex-M vector table (SP in SRAM at
--- 0x20042000, reset handler in flash with the Thumb bit); RP2350: the vector table at the start
--- and an IMAGE_DEF block after it. Then seeded code-like bytes (same seed, same image).
function M.demo_image(board, size, seed)
  size = size or 600 * 1024
  local x = seed or 1
  local function bytes(n)
    local b = {}
    for i = 1, n do x = (x * 1103515245 + 12345) & 0x7fffffff; b[i] = string.char((x >> 16) & 255) end
    return table.concat(b)
  end
  local base = (board and board.offset) or 0x10000000
  local t
  if board and board.chip == "RP2350" then
    t = { string.pack("<I4I4", 0x20082000, base + 0x200 + 1), bytes(0x110 - 8), M.RP2350_IMAGE_DEF }
  else
    local boot2 = bytes(252)
    t = { boot2, string.pack("<I4", M.boot2_crc(boot2)), string.pack("<I4I4", 0x20042000, base + 0x100 + 0xC1) }
  end
  local banner = "MicroPython demo image for " .. (board and board.id or "RP2") .. "\0"
  local n = #table.concat(t)
  while n < size do
    local piece = (n % 4096 < 256 and n >= 4096) and banner or bytes(256 - n % 256)
    t[#t + 1] = piece
    n = n + #piece
  end
  return table.concat(t):sub(1, size)
end

return M
