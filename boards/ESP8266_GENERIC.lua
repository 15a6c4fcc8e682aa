-- Generic ESP8266 (NodeMCU, Wemos D1 mini). The ROM boots at 74880 but syncs at 115200;
-- ROM-only mode has no compression, MD5 or baud change. anchors.md §3.1, §3.5, §4.
return {
  id = "ESP8266_GENERIC", family = "esp", chip = "esp8266", mpy_port = "esp8266",
  -- MICROPY_HW_BOARD_NAME (ports/*/boards/ESP8266_GENERIC/mpconfigboard.h): sys.implementation._machine is
  -- "<machine> with <MCU>" on firmware older than 1.25, which has no _build to say the board id.
  machine = "ESP module",
  -- Lua pattern in the machine string -> variant: "ESP module (1M) with ESP8266" is FLASH_1M
  machine_variants = { ["%((%d+[MK])%)"] = "FLASH_%1" },
  offset = 0x0, flash_sizes = { "4MB", "1MB", "2MB", "512KB" },
  usb = {
    { vid = 0x1A86, pid = 0x7523, name = "CH340" },
    { vid = 0x10C4, pid = 0xEA60, name = "CP210x" },
    { vid = 0x0403, pid = 0x6001, name = "FTDI FT232R" },
  },
  baud = 460800, max_baud = 921600, reset = "classic", led = 2,
  firmware = { ext = "bin" },
  description = "ESP8266 (NodeMCU, Wemos D1 mini)",
}
