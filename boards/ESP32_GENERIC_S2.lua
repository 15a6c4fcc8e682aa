-- Generic ESP32-S2 (native USB OTG or a UART bridge). Offsets and ids: anchors.md §3.1, §3.5, §4.
return {
  id = "ESP32_GENERIC_S2", family = "esp", chip = "esp32s2", mpy_port = "esp32",
  -- MICROPY_HW_BOARD_NAME (ports/*/boards/ESP32_GENERIC_S2/mpconfigboard.h): sys.implementation._machine is
  -- "<machine> with <MCU>" on firmware older than 1.25, which has no _build to say the board id.
  machine = "Generic ESP32S2 module",
  offset = 0x1000, flash_sizes = { "4MB", "2MB" },
  usb = {
    { vid = 0x303A, pid = 0x0002, name = "ESP32-S2 ROM USB-OTG" },
    { vid = 0x303A, pid = 0x4001, name = "MicroPython TinyUSB" },
    { vid = 0x10C4, pid = 0xEA60, name = "CP210x" },
    { vid = 0x1A86, pid = 0x7523, name = "CH340" },
  },
  baud = 460800, max_baud = 921600, reset = "classic", led = 15,
  firmware = { ext = "bin" },
  description = "ESP32-S2 (Saola, S2 Mini)",
}
