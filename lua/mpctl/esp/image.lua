-- ESP firmware image header checks, done before anything is erased.
-- Format: esptool docs `firmware-image-format.rst` and `bin_image.py` (anchors.md §3.1):
--   byte 0 magic 0xE9, 1 segment count, 2 flash mode, 3 size (high nibble) | freq (low nibble),
--   4..7 entry; ESP32+ adds a 16-byte extended header (chip id u16 at file bytes 12..13,
--   hash-appended flag at byte 23); segments are <load addr, length> + data; the image ends with
--   padding to 16 bytes whose last byte is the XOR checksum (seed 0xEF) of all segment data,
--   then an optional SHA-256.
local chips = require("mpctl.esp.chips")
local command = require("mpctl.esp.command")

local M = {}

M.MAGIC = 0xE9
M.MODES = { [0] = "qio", [1] = "qout", [2] = "dio", [3] = "dout", [0xFF] = "fast-read" }
M.FREQS = { [0] = "40m", [1] = "26m", [2] = "20m", [0xF] = "80m" }
M.MAX_SEGMENTS = 16 -- bin_image.py refuses more (ESP_IMAGE_MAX_SEGMENTS)

local function fail(fmt, ...) error("image: " .. string.format(fmt, ...), 0) end

-- Parse one image starting at byte `at` (1-based) of `data`. `chip` decides whether the
-- extended header is present (all chips except ESP8266). Returns a table describing it.
function M.parse(data, chip, at)
  at = at or 1
  if #data < at + 7 then fail("only %d bytes, too short for an image header", #data - at + 1) end
  local magic, nseg, mode, sf, entry = string.unpack("<BBBBI4", data, at)
  if magic ~= M.MAGIC then
    fail("bad magic 0x%02X at byte %d (expected 0xE9): not an ESP firmware image", magic, at - 1)
  end
  if nseg == 0 or nseg > M.MAX_SEGMENTS then fail("implausible segment count %d", nseg) end
  local info = { segments = {}, flash_mode = M.MODES[mode] or mode, flash_mode_raw = mode,
    size_nibble = sf >> 4, freq = M.FREQS[sf & 0xF] or (sf & 0xF), entry = entry }
  local esp8266 = chip and chip.key == "esp8266"
  local pos = at + 8
  if not esp8266 then
    if #data < pos + 15 then fail("truncated extended header") end
    local wp, d1, d2, d3, chip_id, min_rev, min_full, max_full = string.unpack("<BBBBI2BI2I2", data, pos)
    local hash_appended = data:byte(pos + 15)
    info.chip_id, info.min_rev, info.min_rev_full, info.max_rev_full = chip_id, min_rev, min_full, max_full
    info.hash_appended = hash_appended == 1
    info.wp, info.drive = wp, { d1, d2, d3 }
    pos = pos + 16
  end
  local sum = command.CHECKSUM_SEED
  for i = 1, nseg do
    if #data < pos + 7 then fail("truncated in segment %d header at byte %d", i, pos - at) end
    local addr, len = string.unpack("<I4I4", data, pos)
    if len > 16 * 1024 * 1024 or pos + 8 + len - 1 > #data then
      fail("segment %d (load 0x%08X) claims %d bytes, past the end of the file", i, addr, len)
    end
    info.segments[i] = { addr = addr, len = len, offset = pos + 8 - at }
    sum = command.checksum(data:sub(pos + 8, pos + 7 + len), sum)
    pos = pos + 8 + len
  end
  -- checksum byte is the last byte of the 16-byte aligned padding after the segments
  local rel = pos - at
  local pad_end = (rel // 16 + 1) * 16
  if #data < at + pad_end - 1 then fail("truncated before the checksum byte") end
  info.checksum = data:byte(at + pad_end - 1)
  info.checksum_ok = info.checksum == sum
  info.length = pad_end + (info.hash_appended and 32 or 0)
  return info
end

-- Full pre-flash check. `chip` is a chips.lua entry, `offset` the flash address, `flash_size`
-- the detected size (bytes, optional). Raises with a reason the user can act on; returns info
-- plus a list of warnings.
function M.check(data, chip, offset, flash_size)
  local warnings = {}
  local info = M.parse(data, chip)
  if not info.checksum_ok then
    fail("checksum mismatch in the first image (stored 0x%02X): the file is corrupt or truncated", info.checksum)
  end
  if chip.image_id and info.chip_id ~= chip.image_id then
    local other = chips.by_image_id[info.chip_id]
    fail("built for %s (chip id %d) but the board is %s (chip id %d); refusing to write it",
      other and other.name or "an unknown chip", info.chip_id, chip.name, chip.image_id)
  end
  -- Header bytes 2-3 configure the SPI flash at boot; values no tool writes mean a damaged file.
  if not M.MODES[info.flash_mode_raw] then fail("unknown flash mode byte 0x%02X in the header", info.flash_mode_raw) end
  if type(info.freq) ~= "string" then fail("unknown flash frequency code 0x%X in the header", info.freq) end
  local hdr_size = chip.flash_sizes[info.size_nibble]
  if not hdr_size then fail("unknown flash size code 0x%X in the header", info.size_nibble) end
  info.header_flash_size = hdr_size
  if flash_size and offset + #data > flash_size then
    fail("%d bytes at 0x%X end at 0x%X, past the end of the %s flash", #data, offset, offset + #data,
      chips.size_name(flash_size))
  end
  if flash_size and hdr_size and hdr_size > flash_size then
    warnings[#warnings + 1] = string.format("image header says %s flash but the chip has %s",
      chips.size_name(hdr_size), chips.size_name(flash_size))
  end
  if offset ~= chip.bootloader_offset then
    warnings[#warnings + 1] = string.format("%s expects a full image at 0x%X, writing at 0x%X",
      chip.name, chip.bootloader_offset, offset)
  end
  -- A MicroPython full image carries the app at flash 0x10000 too; check its chip id as well.
  local app_at = 0x10000 - offset
  if not chip.image_id or app_at <= 0 or #data < app_at + 24 then return info, warnings end
  if data:byte(app_at + 1) == M.MAGIC then
    local ok, app = pcall(M.parse, data, chip, app_at + 1)
    if not ok then fail("app image at 0x10000: %s", (tostring(app):gsub("^image: ", ""))) end
    if app.chip_id ~= chip.image_id then
      fail("app at 0x10000 is for chip id %d, not %s", app.chip_id, chip.name)
    end
    if not app.checksum_ok then fail("app image at 0x10000 has a bad checksum: the file is corrupt") end
    info.app = app
  end
  return info, warnings
end

-- Identify the chip an image was built for without a connection (for messages and tests).
function M.chip_of(data)
  if #data < 24 or data:byte(1) ~= M.MAGIC then return nil end
  local id = string.unpack("<I2", data, 13)
  return chips.by_image_id[id]
end

return M
