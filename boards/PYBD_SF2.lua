-- Pyboard D-series SF2 (STM32F722, 512 KiB internal flash + external SPI flash). DFU through
-- MicroPython's mboot (hold USR, press RST, release USR when the LED is white); mboot speaks DfuSe
-- with the same 0483:DF11 ids (micropython ports/stm32/mboot, ports/stm32/README.md).
return {
  id = "PYBD_SF2", family = "dfu", chip = "STM32F722IE", mpy_port = "stm32", machine = "PYBD-SF2W",
  offset = 0x08000000, flash_size = 512 * 1024,
  usb = {
    { vid = 0x0483, pid = 0xDF11, name = "mboot DFU", mode = "dfu" },
    { vid = 0xF055, pid = 0x9800, name = "MicroPython pyboard CDC", mode = "app" },
  },
  led = "LED_RED",
  firmware = { ext = "dfu" },
  dfu_entry = "hold USR, press and release RST, keep USR until the LED turns white, then release it (mboot)",
  description = "Pyboard D SF2 (STM32F722, mboot)",
}
