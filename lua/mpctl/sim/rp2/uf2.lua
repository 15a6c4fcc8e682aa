--[[ mpctl.sim.rp2.uf2: what the RP2040/RP2350 boot ROM does with each 512-byte sector written to
its BOOTSEL drive. The simulator's own UF2 decoder, written from the UF2 specification
(microsoft/uf2 README "File format") and the pico-sdk header's constants
(src/common/boot_uf2_headers/include/boot/uf2.h); it shares nothing with the client's
lua/mpctl/rp2/uf2.lua.

Block (little endian): magicStart0 0x0A324655, magicStart1 0x9E5D5157, flags, targetAddr,
payloadSize, blockNo, numBlocks, fileSize-or-familyID, data[476], magicEnd 0x0AB16F30.
Flags: NOT_MAIN_FLASH 0x1, FAMILY_ID_PRESENT 0x2000.

What the ROM does with a sector (pico-bootrom-rp2040 bootrom/virtual_disk.c vd_write_block and
_update_current_uf2_info; pico-bootrom-rp2350 src/nsboot/usb_virtual_disk.c), modelled here:
  - not a UF2 block (magics), no family id, a family the chip does not take, NOT_MAIN_FLASH, or a
    payload other than 256 bytes: ignored, the download in progress is kept
  - numBlocks 0, a target neither in flash (0x10000000..0x20000000) nor in RAM, or a flash
    target not 256-aligned: "garbage": the download in progress is forgotten (the blocks seen so
    far no longer count)
  - while PICOBOOT holds exclusive access, the drive's writes fail and the download is forgotten
  - a numBlocks (or, RP2350, a family) other than the download's starts a new download
  - blockNo >= numBlocks: the download is forgotten
  - a new block: its 4 KiB sector is erased the first time the download touches it, then the
    256-byte page is programmed; blocks already seen are not written again
  - when every block 0..numBlocks-1 has been seen: reboot (RP2040: after 1000 ms,
    virtual_disk.c _write_uf2_page_complete)
Model decisions: blocks addressed inside the XIP window but beyond the chip's size are counted but
not written (what such a write does to a real chip is not in the sources used); blocks addressed to
RAM are counted, not stored (the simulator runs no code: a RAM download ends back in BOOTSEL).
]]
local M = {}
M.__index = M

M.BLOCK = 512
local MAGIC0, MAGIC1, MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
local NOT_MAIN_FLASH, FAMILY_ID_PRESENT = 0x1, 0x2000
local XIP_BASE, XIP_END = 0x10000000, 0x20000000

--- Decodes one 512-byte block; nil when the magics are wrong.
function M.decode(s)
  if #s ~= M.BLOCK then return nil end
  local m0, m1, flags, addr, size, no, count, fam = string.unpack("<I4I4I4I4I4I4I4I4", s)
  if m0 ~= MAGIC0 or m1 ~= MAGIC1 or string.unpack("<I4", s, 509) ~= MAGIC_END then return nil end
  return { flags = flags, addr = addr, size = size, no = no, count = count, family = fam,
    data = s:sub(33, 32 + math.min(size, 476)) }
end

--- chip: mpctl.sim.rp2.chips entry; flash: mpctl.sim.rp2.flash; log(msg)
function M.new(chip, flash, log)
  return setmetatable({ chip = chip, flash = flash, log = log or function() end, count = 0, status = 0,
    stats = { blocks = 0, written = 0, ignored = 0, resets = 0 } }, M)
end

local function in_ram(chip, a)
  for _, r in ipairs(chip.ram) do
    if a >= r[1] and a <= r[1] + r[2] then return true end
  end
  return false
end

function M:forget(why)
  if self.num_blocks then
    self.log("UF2 download forgotten: " .. why)
    self.stats.resets = self.stats.resets + 1
  end
  self.num_blocks, self.family, self.seen, self.cleared, self.count = nil, nil, nil, nil, 0
end

--- The board (re)entered BOOTSEL: the ROM starts with no download and a clear status.
function M:restart()
  self.num_blocks, self.family, self.seen, self.cleared, self.count, self.status = nil, nil, nil, nil, 0, 0
end

--- RP2350 GET_INFO UF2_STATUS: uf2_status (u16), ram, no_reboot, family_id, valid_block_count,
--- num_blocks (pico-bootrom-rp2350 usb_virtual_disk.c, the struct "exposed directly to PICOBOOT").
function M:status_words()
  return string.pack("<I2BBI4I4I4", self.status, self.ram and 1 or 0, 0, self.family or 0, self.count, self.num_blocks or 0)
end

--- One sector written to the drive. exclusive: PICOBOOT holds exclusive access.
--- Returns seconds of flash work, and "reboot" when the download is complete.
function M:sector(s, exclusive)
  local b = M.decode(s)
  self.stats.blocks = self.stats.blocks + 1
  if not b or b.flags & FAMILY_ID_PRESENT == 0 or not self.chip.families[b.family]
    or b.flags & NOT_MAIN_FLASH ~= 0 or b.size ~= 256 then
    self.stats.ignored = self.stats.ignored + 1
    -- RP2350 GET_INFO UF2_STATUS bit UF2_STATUS_IGNORED_FAMILY (pico-sdk picoboot_constants.h)
    if b and b.flags & FAMILY_ID_PRESENT ~= 0 and not self.chip.families[b.family] then self.status = self.status | 0x01 end
    return 0
  end
  local ram = in_ram(self.chip, b.addr) and in_ram(self.chip, b.addr + 255)
  local xip = b.addr >= XIP_BASE and b.addr + 255 <= XIP_END
  if b.count == 0 or not (ram or xip) or (xip and b.addr % 256 ~= 0) then
    self.stats.ignored = self.stats.ignored + 1
    self.status = self.status | 0x20 -- UF2_STATUS_ABORT_BAD_ADDRESS
    self:forget(string.format("block %d at 0x%08X is neither flash nor RAM (or not 256-aligned)", b.no, b.addr))
    return 0
  end
  if exclusive then
    self.stats.ignored = self.stats.ignored + 1
    self.status = self.status | 0x10 -- UF2_STATUS_ABORT_EXCLUSIVELY_LOCKED
    self:forget("PICOBOOT holds exclusive access")
    return 0
  end
  if self.num_blocks ~= b.count or self.family ~= b.family then
    self.log(string.format("new UF2 download: %d blocks, family 0x%08X", b.count, b.family))
    self.num_blocks, self.family, self.ram = b.count, b.family, ram
    self.seen, self.cleared, self.count, self.status = {}, {}, 0, 0
  end
  if ram ~= self.ram or b.no >= b.count then
    self.stats.ignored = self.stats.ignored + 1
    self:forget(string.format("block %d of %d does not belong to the download", b.no, b.count))
    return 0
  end
  local secs = 0
  if not self.seen[b.no] then
    self.seen[b.no] = true
    self.count = self.count + 1
    local off = b.addr - XIP_BASE
    if xip and self.flash:contains(off, 256) then
      local sector = off // 4096
      if not self.cleared[sector] then
        self.cleared[sector] = true
        secs = secs + self.flash:erase_sector(off)
      end
      secs = secs + self.flash:program(off, b.data)
      self.stats.written = self.stats.written + 1
    elseif xip then
      self.log(string.format("block %d at 0x%08X is beyond the %d KiB flash: not written", b.no, b.addr, self.flash.size // 1024))
    end
  end
  if self.count == self.num_blocks then
    local was_ram = self.ram
    self.log(string.format("UF2 download complete (%d blocks): rebooting", self.num_blocks))
    self.num_blocks, self.family, self.seen, self.cleared, self.count = nil, nil, nil, nil, 0
    return secs, "reboot", was_ram
  end
  return secs
end

return M
