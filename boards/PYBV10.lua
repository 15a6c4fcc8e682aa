-- Pyboard v1.0 (STM32F405RG, 1 MiB flash). Same DFU entry and ids as v1.1 (anchors.md §3.3, §3.5).
return {
  id = "PYBV10", family = "dfu", chip = "STM32F405RG", mpy_port = "stm32", machine = "PYBv1.0",
  offset = 0x08000000, flash_size = 1024 * 1024,
  flash_layout = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg",
  usb = {
    { vid = 0x0483, pid = 0xDF11, name = "STM32 ROM DFU bootloader", mode = "dfu" },
    { vid = 0xF055, pid = 0x9800, name = "MicroPython pyboard CDC", mode = "app" },
  },
  led = "LED_RED (A13)",
  firmware = { ext = "dfu" },
  dfu_entry = "connect the DFU pin to 3V3 (a jumper on PYBv1.x) and press RST",
  description = "Pyboard v1.0 (STM32F405)",
}
