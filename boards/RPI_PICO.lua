-- Raspberry Pi Pico (RP2040, 2 MiB QSPI flash W25Q16JV, LED on GPIO25). BOOTSEL: hold the BOOTSEL
-- button while plugging in (or machine.bootloader() from MicroPython): the boot ROM appears as
-- 2E8A:0003 with the RPI-RP2 drive and the PICOBOOT interface. MicroPython's CDC port: 2E8A:0005.
-- Ids: pico-sdk boot/uf2.h (family), picotool picoboot_connection.h (USB ids), anchors.md §3.4;
-- MicroPython ports/rp2/boards/RPI_PICO (board name, flash size), Pico datasheet (LED GPIO25).
return {
  id = "RPI_PICO", family = "rp2", chip = "RP2040", mpy_port = "rp2", machine = "Raspberry Pi Pico",
  offset = 0x10000000, flash_size = 2 * 1024 * 1024,
  uf2_families = { 0xe48bff56 }, -- RP2040
  drive_board_id = "RPI-RP2",
  usb = {
    { vid = 0x2E8A, pid = 0x0003, name = "RP2040 boot ROM (BOOTSEL)", mode = "bootsel" },
    { vid = 0x2E8A, pid = 0x0005, name = "MicroPython rp2 CDC", mode = "app" },
  },
  led = "Pin(25)",
  firmware = { ext = "uf2" },
  bootsel_entry = "hold the BOOTSEL button while plugging the Pico into USB, then let go",
  description = "Raspberry Pi Pico (RP2040)",
}
