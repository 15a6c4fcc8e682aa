-- Generic ESP32-C6: USB-Serial/JTAG or a UART bridge. anchors.md §3.1, §3.5, §4.
return {
  id = "ESP32_GENERIC_C6", family = "esp", chip = "esp32c6", mpy_port = "esp32",
  -- MICROPY_HW_BOARD_NAME (ports/*/boards/ESP32_GENERIC_C6/mpconfigboard.h): sys.implementation._machine is
  -- "<machine> with <MCU>" on firmware older than 1.25, which has no _build to say the board id.
  machine = "ESP32C6 module",
  offset = 0x0, flash_sizes = { "4MB", "8MB" },
  usb = {
    { vid = 0x303A, pid = 0x1001, name = "Espressif USB-Serial/JTAG", reset = "usb-jtag" },
    { vid = 0x10C4, pid = 0xEA60, name = "CP210x" },
    { vid = 0x1A86, pid = 0x55D3, name = "CH343" },
  },
  baud = 460800, max_baud = 921600, reset = "classic", led = 8,
  firmware = { ext = "bin" },
  description = "ESP32-C6 (DevKitC-1)",
}
