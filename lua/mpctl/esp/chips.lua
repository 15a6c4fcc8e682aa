-- Chip table for the ESP ROM loader.
-- Facts come from esptool (espressif/esptool `esptool/targets/<chip>.py`, v5.3.1) and esptool-js
-- 0.7.0 (`lib/targets/<chip>.js`); see anchors.md §3.1. Each entry is plain data; the code that
-- uses it lives in mpctl.esp.
local M = {}

-- Flash size nibble (high nibble of image header byte 3) -> bytes. esptool FLASH_SIZES.
local MB = 1024 * 1024
local SIZES_ESP32 = { [0] = 1 * MB, 2 * MB, 4 * MB, 8 * MB, 16 * MB, 32 * MB, 64 * MB, 128 * MB }
local SIZES_ESP8266 = { [0] = 512 * 1024, [1] = 256 * 1024, [2] = 1 * MB, [3] = 2 * MB, [4] = 4 * MB,
  [5] = 2 * MB, [6] = 4 * MB, [8] = 8 * MB, [9] = 16 * MB } -- 5/6 are the "-c1" 2MB/4MB layouts

local function chip(t)
  t.flash_sizes = t.flash_sizes or SIZES_ESP32
  t.status_len = t.status_len or 4 -- ESP32-and-later ROMs send 4 status bytes (2 meaningful)
  return t
end

M.list = {
  chip {
    key = "esp8266", name = "ESP8266", image_id = nil, magic = { 0xFFF0C101 },
    status_len = 2, -- ESP8266 ROM: 2 status bytes like the stub (esptool STATUS_BYTES_LENGTH)
    bootloader_offset = 0x0, flash_sizes = SIZES_ESP8266,
    rom = { defl = false, md5 = false, change_baud = false, read_flash_slow = false, spi_attach = false,
            erase_size_quirk = true, encrypted_flag = false },
    -- SPI0 user-command registers (targets/esp8266.py); no separate MOSI/MISO DLEN registers
    spi = { base = 0x60000200, usr = 0x1C, usr1 = 0x20, usr2 = 0x24, w0 = 0x40 },
    mac = "esp8266", efuse_base = 0x3FF00050,
    uart_clkdiv = 0x60000014, xtal_divider = 2,
  },
  chip {
    key = "esp32", name = "ESP32", image_id = 0, magic = { 0x00F01D83 },
    bootloader_offset = 0x1000,
    rom = { defl = true, md5 = true, change_baud = true, read_flash_slow = true, spi_attach = true,
            encrypted_flag = false, crystal_quirk = true },
    spi = { base = 0x3FF42000, usr = 0x1C, usr1 = 0x20, usr2 = 0x24, w0 = 0x80, mosi_dlen = 0x28, miso_dlen = 0x2C },
    mac = "esp32", efuse_base = 0x3FF5A000,
    uart_clkdiv = 0x3FF40014, xtal_divider = 1,
    -- targets/esp32.py get_rom_cal_crystal_freq: RTCCALICFG1, cali value field, efuse word 4 CK8M
    rtc_cali = { reg = 0x3FF5F06C, shift = 7, mask = 0x01FFFFFF },
  },
  chip {
    key = "esp32s2", name = "ESP32-S2", image_id = 2, magic = { 0x000007C6 },
    bootloader_offset = 0x1000,
    rom = { defl = true, md5 = true, change_baud = true, spi_attach = true, encrypted_flag = true },
    spi = { base = 0x3F402000, usr = 0x18, usr1 = 0x1C, usr2 = 0x20, w0 = 0x58, mosi_dlen = 0x24, miso_dlen = 0x28 },
    mac = "word_pair", mac_reg = 0x3F41A044,
    uart_clkdiv = 0x3F400014, xtal_divider = 1,
  },
  chip {
    key = "esp32s3", name = "ESP32-S3", image_id = 9, magic = { 0x9 },
    bootloader_offset = 0x0,
    rom = { defl = true, md5 = true, change_baud = true, spi_attach = true, encrypted_flag = true },
    spi = { base = 0x60002000, usr = 0x18, usr1 = 0x1C, usr2 = 0x20, w0 = 0x58, mosi_dlen = 0x24, miso_dlen = 0x28 },
    mac = "word_pair", mac_reg = 0x60007044,
    uart_clkdiv = 0x60000014, xtal_divider = 1,
  },
  chip {
    key = "esp32c3", name = "ESP32-C3", image_id = 5, magic = { 0x6921506F, 0x1B31506F, 0x4881606F, 0x4361606F },
    bootloader_offset = 0x0,
    rom = { defl = true, md5 = true, change_baud = true, spi_attach = true, encrypted_flag = true },
    spi = { base = 0x60002000, usr = 0x18, usr1 = 0x1C, usr2 = 0x20, w0 = 0x58, mosi_dlen = 0x24, miso_dlen = 0x28 },
    mac = "word_pair", mac_reg = 0x60008844,
    uart_clkdiv = 0x60000014, xtal_divider = 1, -- esptool UART_CLKDIV_REG (esptool-js 0.7.0 has the ESP32 address)
  },
  chip {
    key = "esp32c6", name = "ESP32-C6", image_id = 13, magic = { 0x2CE0806F },
    bootloader_offset = 0x0,
    rom = { defl = true, md5 = true, change_baud = true, spi_attach = true, encrypted_flag = true },
    spi = { base = 0x60003000, usr = 0x18, usr1 = 0x1C, usr2 = 0x20, w0 = 0x58, mosi_dlen = 0x24, miso_dlen = 0x28 },
    mac = "word_pair", mac_reg = 0x600B0844,
    uart_clkdiv = 0x60000014, xtal_divider = 1, -- esptool UART_CLKDIV_REG (esptool-js 0.7.0 has the ESP32 address)
  },
}

M.by_key, M.by_image_id, M.by_magic = {}, {}, {}
for _, c in ipairs(M.list) do
  M.by_key[c.key] = c
  if c.image_id then M.by_image_id[c.image_id] = c end
  for _, m in ipairs(c.magic) do M.by_magic[m] = c end
end

-- Accepts "esp32", "ESP32-S3", "esp32s3" ...
function M.get(name)
  if not name then return nil end
  return M.by_key[(name:lower():gsub("[-_]", ""))]
end

M.CHIP_DETECT_MAGIC_REG = 0x40001000 -- loader.py CHIP_DETECT_MAGIC_REG_ADDR

-- JEDEC RDID capacity byte -> bytes (esptool DETECT_FLASH_SIZES): 0x12..0x1C and 0x32..0x3A are
-- 2^N (and 2^(N-0x20)); 0x20..0x22 are 64/128/256 MB parts that use a different encoding.
function M.flash_size_from_id(flash_id)
  local cap = (flash_id >> 16) & 0xFF
  if cap >= 0x12 and cap <= 0x1C then return 1 << cap end
  if cap >= 0x32 and cap <= 0x3A then return 1 << (cap - 0x20) end
  if cap >= 0x20 and cap <= 0x22 then return 1 << (cap + 6) end
  return nil
end

function M.size_name(bytes)
  if not bytes then return "?" end
  if bytes >= MB then return string.format("%dMB", bytes // MB) end
  return string.format("%dKB", bytes // 1024)
end

return M
