-- Pyboard D-series SF6 (STM32F767, 2 MiB internal flash). DFU through mboot, as PYBD_SF2.
return {
  id = "PYBD_SF6", family = "dfu", chip = "STM32F767IIK", mpy_port = "stm32", machine = "PYBD-SF6W",
  offset = 0x08000000, flash_size = 2048 * 1024,
  usb = {
    { vid = 0x0483, pid = 0xDF11, name = "mboot DFU", mode = "dfu" },
    { vid = 0xF055, pid = 0x9800, name = "MicroPython pyboard CDC", mode = "app" },
  },
  led = "LED_RED",
  firmware = { ext = "dfu" },
  dfu_entry = "hold USR, press and release RST, keep USR until the LED turns white, then release it (mboot)",
  description = "Pyboard D SF6 (STM32F767, mboot)",
}
