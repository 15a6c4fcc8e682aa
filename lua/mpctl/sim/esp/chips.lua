-- mpctl.sim.esp.chips: what each simulated ESP chip answers with.
--
-- Facts (anchors.md §3.1; esptool `targets/*.py`, esptool-js `lib/targets/*.js`):
--  * CHIP_DETECT_MAGIC_REG_ADDR 0x40001000 reads 0x00F01D83 on ESP32, 0xFFF0C101 on ESP8266;
--    S3 and C3 ROMs answer GET_SECURITY_INFO (20 bytes, chip id 9 / 5) and are identified by it.
--  * MAC: ESP32 efuse block 0 at 0x3FF5A000 (word 1 = MAC bytes 2..5, word 2 low 16 bits =
--    bytes 0..1); S3 0x60007044, C3 0x60008844 (same two-word layout); ESP8266 OTP 0x3FF00050..
--    (word 1 bits 16..23 = 0 selects the 18:FE:34 OUI).
--  * Crystal: esptool computes baud * (UART_CLKDIV & 0xFFFFF) / 1e6 / XTAL_CLK_DIVIDER, so the
--    register must read xtal * divider * 1e6 / baud for the baud the ROM auto-detected.
--  * SPI user-command registers (esptool run_spiflash_command) differ per family; RDID (0x9F)
--    result is read back from W0.
--  * ESP32-S2 (esptool-js targets/esp32s2.js, esptool targets/esp32s2.py): magic 0x000007C6,
--    image chip id 2, MAC_EFUSE_REG 0x3F41A044, UART_CLKDIV 0x3F400014, SPI base 0x3F402000,
--    40 MHz crystal, boot offset 0x1000; GET_SECURITY_INFO answers 12 bytes (no chip id), so
--    hosts fall back to the magic register. ROM USB-OTG CDC: UARTDEV_BUF_NO (0x3FFFFD14) reads 2
--    and hosts then use USB_RAM_BLOCK = 0x800 for RAM and flash blocks (anchors §3.1, §3.5).
--  * ESP32-C6 (esptool-js targets/esp32c6.js, esptool targets/esp32c6.py): chip id 13 by
--    GET_SECURITY_INFO, magic 0x2CE0806F, MAC_EFUSE_REG 0x600B0844, SPI base 0x60003000,
--    40 MHz crystal, boot offset 0x0; USB-Serial/JTAG like C3/S3.
--  * ESP32-S3 USB-OTG: UARTDEV_BUF_NO 0x3FCEF14C reads 3 (esptool-js targets/esp32s3.js).
--  * Boot offset: ESP32 0x1000, ESP8266/S3/C3 0x0. ROM status: 4 bytes on ESP32-and-later ROMs,
--    2 on ESP8266 ROM and on every stub.
local M = {}

local ESP32_SPI = { base = 0x3FF42000, usr = 0x1C, usr1 = 0x20, usr2 = 0x24, w0 = 0x80,
                    mosi_dlen = 0x28, miso_dlen = 0x2C }
local S3C3_SPI = { base = 0x60002000, usr = 0x18, usr1 = 0x1C, usr2 = 0x20, w0 = 0x58,
                   mosi_dlen = 0x24, miso_dlen = 0x28 }
local S2_SPI = { base = 0x3F402000, usr = 0x18, usr1 = 0x1C, usr2 = 0x20, w0 = 0x58,
                 mosi_dlen = 0x24, miso_dlen = 0x28 }
local C6_SPI = { base = 0x60003000, usr = 0x18, usr1 = 0x1C, usr2 = 0x20, w0 = 0x58,
                 mosi_dlen = 0x24, miso_dlen = 0x28 }
local ESP8266_SPI = { base = 0x60000200, usr = 0x1C, usr1 = 0x20, usr2 = 0x24, w0 = 0x40 }

-- Two-word MAC layout shared by ESP32 (efuse words 1, 2) and S3/C3 (MAC_EFUSE_REG, +4).
local function mac_words(mac)
  local lo = (mac[3] << 24) | (mac[4] << 16) | (mac[5] << 8) | mac[6]
  local hi = (mac[1] << 8) | mac[2]
  return lo, hi
end

M.esp32 = {
  key = "esp32", name = "ESP32", magic = 0x00F01D83, image_chip_id = 0,
  security_info = false, rom_status_len = 4, boot_offset = 0x1000,
  xtal = 40, xtal_div = 1, uart_clkdiv = 0x3FF40014, spi = ESP32_SPI,
  boot_baud = 115200, rom_deflate = true, rom_md5 = true, rom_change_baud = true,
  rom_read_flash_slow = true, rom_spi_cmds = true, rom_erase_bug = false,
  rom_flash_begin_len = { 16, 20 }, oui = { 0x24, 0x0A, 0xC4 },
  registers = function(mac)
    local lo, hi = mac_words(mac)
    return {
      [0x3FF5A004] = lo, [0x3FF5A008] = hi,
      -- word 3 bit 15 + word 5 bit 20 + APB_CTRL_DATE bit 31 = chip revision 3 (esptool-js
      -- ESP32ROM.getChipRevision); package 0 = ESP32-D0WDQ6, dual core, BT enabled.
      [0x3FF5A00C] = 1 << 15, [0x3FF5A014] = 1 << 20, [0x3FF6607C] = 0x80000000,
    }
  end,
}

M.esp32s3 = {
  key = "esp32s3", name = "ESP32-S3", magic = 0x00000009, image_chip_id = 9,
  security_info = true, rom_status_len = 4, boot_offset = 0x0,
  xtal = 40, xtal_div = 1, uart_clkdiv = 0x60000014, spi = S3C3_SPI,
  boot_baud = 115200, rom_deflate = true, rom_md5 = true, rom_change_baud = true,
  rom_read_flash_slow = true, rom_spi_cmds = true, rom_erase_bug = false,
  rom_flash_begin_len = { 20 }, oui = { 0x34, 0x85, 0x18 },
  usb_jtag = true, usb_otg = { reg = 0x3FCEF14C, value = 3 },
  registers = function(mac)
    local lo, hi = mac_words(mac)
    return { [0x60007044] = lo, [0x60007048] = hi }
  end,
}

M.esp32s2 = {
  key = "esp32s2", name = "ESP32-S2", magic = 0x000007C6, image_chip_id = 2,
  security_info = "short", rom_status_len = 4, boot_offset = 0x1000,
  xtal = 40, xtal_div = 1, uart_clkdiv = 0x3F400014, spi = S2_SPI,
  boot_baud = 115200, rom_deflate = true, rom_md5 = true, rom_change_baud = true,
  rom_read_flash_slow = true, rom_spi_cmds = true, rom_erase_bug = false,
  rom_flash_begin_len = { 20 }, oui = { 0x7C, 0xDF, 0xA1 },
  usb_jtag = false, usb_otg = { reg = 0x3FFFFD14, value = 2 },
  registers = function(mac)
    local lo, hi = mac_words(mac)
    return { [0x3F41A044] = lo, [0x3F41A048] = hi }
  end,
}

M.esp32c6 = {
  key = "esp32c6", name = "ESP32-C6", magic = 0x2CE0806F, image_chip_id = 13,
  security_info = true, rom_status_len = 4, boot_offset = 0x0,
  xtal = 40, xtal_div = 1, uart_clkdiv = 0x60000014, spi = C6_SPI,
  boot_baud = 115200, rom_deflate = true, rom_md5 = true, rom_change_baud = true,
  rom_read_flash_slow = true, rom_spi_cmds = true, rom_erase_bug = false,
  rom_flash_begin_len = { 20 }, oui = { 0x40, 0x4C, 0xCA },
  usb_jtag = true,
  registers = function(mac)
    local lo, hi = mac_words(mac)
    return { [0x600B0844] = lo, [0x600B0848] = hi }
  end,
}

M.esp32c3 = {
  key = "esp32c3", name = "ESP32-C3", magic = 0x6921506F, image_chip_id = 5,
  security_info = true, rom_status_len = 4, boot_offset = 0x0,
  xtal = 40, xtal_div = 1, uart_clkdiv = 0x60000014, spi = S3C3_SPI,
  boot_baud = 115200, rom_deflate = true, rom_md5 = true, rom_change_baud = true,
  rom_read_flash_slow = true, rom_spi_cmds = true, rom_erase_bug = false,
  rom_flash_begin_len = { 20 }, oui = { 0x58, 0xCF, 0x79 },
  usb_jtag = true,
  registers = function(mac)
    local lo, hi = mac_words(mac)
    return { [0x60008844] = lo, [0x60008848] = hi }
  end,
}

M.esp8266 = {
  key = "esp8266", name = "ESP8266", magic = 0xFFF0C101, image_chip_id = nil,
  security_info = false, rom_status_len = 2, boot_offset = 0x0,
  xtal = 26, xtal_div = 2, uart_clkdiv = 0x60000014, spi = ESP8266_SPI,
  -- 26 MHz crystal: the ROM prints its boot log at 74880 baud (serial-protocol.rst).
  boot_baud = 74880, rom_deflate = false, rom_md5 = false, rom_change_baud = false,
  rom_read_flash_slow = false, rom_spi_cmds = false, rom_erase_bug = true,
  rom_flash_begin_len = { 16, 20 }, oui = { 0x18, 0xFE, 0x34 },
  registers = function(mac)
    -- esptool-js ESP8266ROM.readMac: mac[3..4] from OTP word 1 (bits 8..15, 0..7), mac[5]
    -- from word 0 bits 24..31; word 1 bits 16..23 == 0 selects the 18:FE:34 OUI.
    return {
      [0x3FF00050] = mac[6] << 24, [0x3FF00054] = (mac[4] << 8) | mac[5],
      [0x3FF00058] = 0, [0x3FF0005C] = 0,
    }
  end,
}

-- Aliases accepted by the chip= option.
M.aliases = { ["esp32-s3"] = "esp32s3", ["esp32-c3"] = "esp32c3", s3 = "esp32s3", c3 = "esp32c3",
  ["esp32-s2"] = "esp32s2", s2 = "esp32s2", ["esp32-c6"] = "esp32c6", c6 = "esp32c6" }
M.keys = { "esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6", "esp8266" }

function M.get(name)
  local key = (name or "esp32"):lower()
  key = M.aliases[key] or key
  local c = M[key]
  if type(c) ~= "table" or not c.magic then
    error(string.format("sim esp: unknown chip '%s' (known: %s)",
      tostring(name), table.concat(M.keys, ", ")), 0)
  end
  return c
end

local ROM_BANNER = {
  esp32s2 = "ESP-ROM:esp32s2-rc4-20191025\r\nBuild:Oct 25 2019\r\n",
  esp32s3 = "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n",
  esp32c3 = "ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\n",
  esp32c6 = "ESP-ROM:esp32c6-20220919\r\nBuild:Sep 19 2022\r\n",
}

-- ROM boot log lines (anchors §3.6: esptool and esptool-js regex-parse `boot:0x..` and
-- `waiting for download` to diagnose strapping).
function M.boot_log(chip, download, cause)
  if chip.key == "esp8266" then
    -- ESP8266 ROM: "boot mode:(1,x)" = UART download, "(3,x)" = flash boot.
    return string.format("\r\n ets Jan  8 2013,rst cause:%d, boot mode:(%d,7)\r\n\r\n",
      cause == "sw" and 4 or 2, download and 1 or 3)
  end
  if chip.key == "esp32" then
    local rst = cause == "sw" and "rst:0xc (SW_CPU_RESET)" or "rst:0x1 (POWERON_RESET)"
    if download then
      return "ets Jun  8 2016 00:22:57\r\n\r\n" .. rst ..
        ",boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n"
    end
    return "ets Jun  8 2016 00:22:57\r\n\r\n" .. rst .. ",boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
  end
  local rom = ROM_BANNER[chip.key]
  local rst = cause == "sw" and "rst:0x3 (RTC_SW_SYS_RST)" or "rst:0x1 (POWERON)"
  if download then
    return rom .. rst .. ",boot:0x0 (DOWNLOAD(USB/UART0))\r\nwaiting for download\r\n"
  end
  return rom .. rst .. ",boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n"
end

return M
