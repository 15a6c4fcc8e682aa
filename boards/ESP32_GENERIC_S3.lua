-- Generic ESP32-S3: USB-Serial/JTAG on the native port, or a UART bridge. anchors.md §3.1, §3.5, §4.
return {
  id = "ESP32_GENERIC_S3", family = "esp", chip = "esp32s3", mpy_port = "esp32",
  -- MICROPY_HW_BOARD_NAME (ports/*/boards/ESP32_GENERIC_S3/mpconfigboard.h): sys.implementation._machine is
  -- "<machine> with <MCU>" on firmware older than 1.25, which has no _build to say the board id.
  machine = "Generic ESP32S3 module",
  offset = 0x0, flash_sizes = { "8MB", "4MB", "16MB" },
  usb = {
    { vid = 0x303A, pid = 0x1001, name = "Espressif USB-Serial/JTAG", reset = "usb-jtag" },
    { vid = 0x303A, pid = 0x4001, name = "MicroPython TinyUSB" },
    { vid = 0x10C4, pid = 0xEA60, name = "CP210x" },
    { vid = 0x1A86, pid = 0x55D3, name = "CH343" },
    { vid = 0x1A86, pid = 0x7523, name = "CH340" },
  },
  baud = 460800, max_baud = 921600, reset = "classic", led = 48,
  firmware = { ext = "bin" },
  description = "ESP32-S3 (DevKitC-1; use reset=usb-jtag on the native USB port)",
}
