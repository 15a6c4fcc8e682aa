-- Pyboard Lite v1.0 (STM32F411RE, 512 KiB flash: 4x16K, 1x64K, 3x128K sectors, RM0383).
return {
  id = "PYBLITEV10", family = "dfu", chip = "STM32F411RE", mpy_port = "stm32", machine = "PYBLITEv1.0",
  offset = 0x08000000, flash_size = 512 * 1024,
  flash_layout = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,03*128Kg",
  usb = {
    { vid = 0x0483, pid = 0xDF11, name = "STM32 ROM DFU bootloader", mode = "dfu" },
    { vid = 0xF055, pid = 0x9800, name = "MicroPython pyboard CDC", mode = "app" },
  },
  led = "LED_RED (A13)",
  firmware = { ext = "dfu" },
  dfu_entry = "connect the DFU pin to 3V3 and press RST",
  description = "Pyboard Lite v1.0 (STM32F411)",
}
