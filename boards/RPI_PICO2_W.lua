-- Raspberry Pi Pico 2 W (RP2350, 4 MiB flash, CYW43439 wireless chip: the LED is Pin("LED")).
-- BOOTSEL, families and ids as the Pico 2: see RPI_PICO2.lua.
return {
  id = "RPI_PICO2_W", family = "rp2", chip = "RP2350", mpy_port = "rp2", machine = "Raspberry Pi Pico2 W",
  offset = 0x10000000, flash_size = 4 * 1024 * 1024,
  -- the families the RP2350 ROM takes without a partition table (its default partition's permissions,
  -- pico-bootrom-rp2350 varm_flash_boot.c, as the simulator's lua/mpctl/sim/rp2/chips.lua cites it);
  -- ARM non-secure blocks are ignored there
  uf2_families = { 0xe48bff59, 0xe48bff5a, 0xe48bff57, 0xe48bff58 }, -- RP2350 ARM secure, RP2350 RISC-V, absolute, data
  drive_board_id = "RP2350",
  usb = {
    { vid = 0x2E8A, pid = 0x000F, name = "RP2350 boot ROM (BOOTSEL)", mode = "bootsel" },
    { vid = 0x2E8A, pid = 0x0005, name = "MicroPython rp2 CDC", mode = "app" },
  },
  led = 'Pin("LED")',
  firmware = { ext = "uf2" },
  bootsel_entry = "hold the BOOTSEL button while plugging the Pico 2 W into USB, then let go",
  description = "Raspberry Pi Pico 2 W (RP2350 + CYW43439)",
}
