-- Raspberry Pi Pico 2 (RP2350, 4 MiB flash, LED on GPIO25). BOOTSEL: 2E8A:000F with the RP2350
-- drive and the PICOBOOT interface. MicroPython builds it for the Arm cores (family RP2350_ARM_S)
-- and, as the RISCV variant (RPI_PICO2-RISCV-*.uf2), for the Hazard3 RISC-V cores (RP2350_RISCV);
-- the boot ROM takes either, and the absolute and data families. Ids: pico-sdk boot/uf2.h, picotool
-- picoboot_connection.h, anchors.md §3.4; MicroPython ports/rp2/boards/RPI_PICO2.
return {
  id = "RPI_PICO2", family = "rp2", chip = "RP2350", mpy_port = "rp2", machine = { "Raspberry Pi Pico2", "Raspberry Pi Pico 2" },
  offset = 0x10000000, flash_size = 4 * 1024 * 1024,
  -- the families the RP2350 ROM takes without a partition table (its default partition's permissions,
  -- pico-bootrom-rp2350 varm_flash_boot.c, as the simulator's lua/mpctl/sim/rp2/chips.lua cites it);
  -- ARM non-secure blocks are ignored there
  uf2_families = { 0xe48bff59, 0xe48bff5a, 0xe48bff57, 0xe48bff58 }, -- RP2350 ARM secure, RP2350 RISC-V, absolute, data
  firmware_variants = { "RISCV" }, -- firmware fetch board=RPI_PICO2 variant=RISCV
  drive_board_id = "RP2350",
  usb = {
    { vid = 0x2E8A, pid = 0x000F, name = "RP2350 boot ROM (BOOTSEL)", mode = "bootsel" },
    { vid = 0x2E8A, pid = 0x0005, name = "MicroPython rp2 CDC", mode = "app" },
  },
  led = "Pin(25)",
  firmware = { ext = "uf2" },
  bootsel_entry = "hold the BOOTSEL button while plugging the Pico 2 into USB, then let go",
  description = "Raspberry Pi Pico 2 (RP2350)",
}
