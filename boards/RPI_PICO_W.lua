-- Raspberry Pi Pico W (RP2040, 2 MiB flash, CYW43439 wireless chip). The LED hangs off the
-- wireless chip's WL_GPIO0, so MicroPython names it Pin("LED") (not a GPIO number). BOOTSEL and ids
-- as the Pico: see RPI_PICO.lua.
return {
  id = "RPI_PICO_W", family = "rp2", chip = "RP2040", mpy_port = "rp2", machine = "Raspberry Pi Pico W",
  offset = 0x10000000, flash_size = 2 * 1024 * 1024,
  uf2_families = { 0xe48bff56 }, -- RP2040
  drive_board_id = "RPI-RP2",
  usb = {
    { vid = 0x2E8A, pid = 0x0003, name = "RP2040 boot ROM (BOOTSEL)", mode = "bootsel" },
    { vid = 0x2E8A, pid = 0x0005, name = "MicroPython rp2 CDC", mode = "app" },
  },
  led = 'Pin("LED")',
  firmware = { ext = "uf2" },
  bootsel_entry = "hold the BOOTSEL button while plugging the Pico W into USB, then let go",
  description = "Raspberry Pi Pico W (RP2040 + CYW43439)",
}
