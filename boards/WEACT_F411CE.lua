-- WeAct "Black Pill" STM32F411CEU6 (512 KiB flash). ROM DFU: hold BOOT0, press and release NRST,
-- release BOOT0 -> 0483:DF11 (ST AN2606: STM32F411xx system memory boot over USB DFU).
return {
  id = "WEACT_F411CE", family = "dfu", chip = "STM32F411CE", mpy_port = "stm32",
  offset = 0x08000000, flash_size = 512 * 1024,
  flash_layout = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,03*128Kg",
  usb = {
    { vid = 0x0483, pid = 0xDF11, name = "STM32 ROM DFU bootloader", mode = "dfu" },
    { vid = 0xF055, pid = 0x9800, name = "MicroPython CDC", mode = "app" },
  },
  led = "C13 (blue, active low)",
  firmware = { ext = "dfu" },
  dfu_entry = "hold BOOT0, press and release NRST, then release BOOT0",
  description = "WeAct Black Pill STM32F411CE",
}
