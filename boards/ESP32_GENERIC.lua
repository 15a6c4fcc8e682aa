-- Generic ESP32 (WROOM/WROVER modules, DevKitC and clones). Offsets and ids: anchors.md §3.1, §3.5, §4.
return {
  id = "ESP32_GENERIC", family = "esp", chip = "esp32", mpy_port = "esp32",
  -- MICROPY_HW_BOARD_NAME (ports/*/boards/ESP32_GENERIC/mpconfigboard.h): sys.implementation._machine is
  -- "<machine> with <MCU>" on firmware older than 1.25, which has no _build to say the board id.
  machine = "Generic ESP32 module",
  -- Lua pattern in the machine string -> variant: "Generic ESP32 module with SPIRAM with ESP32"
  machine_variants = { ["SPIRAM"] = "SPIRAM" },
  offset = 0x1000, flash_sizes = { "4MB", "8MB", "16MB", "2MB" },
  usb = {
    { vid = 0x10C4, pid = 0xEA60, name = "CP210x" },
    { vid = 0x1A86, pid = 0x7523, name = "CH340" },
    { vid = 0x1A86, pid = 0x55D4, name = "CH9102" },
    { vid = 0x1A86, pid = 0x55D3, name = "CH343" },
    { vid = 0x0403, pid = 0x6001, name = "FTDI FT232R" },
  },
  baud = 460800, max_baud = 921600, reset = "classic", led = 2,
  firmware = { ext = "bin" },
  description = "ESP32 with a USB-UART bridge (DevKitC, WROOM-32, WROVER)",
}
