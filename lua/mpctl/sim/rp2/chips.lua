--[[ mpctl.sim.rp2.chips: what differs between the RP2040 (Pico) and RP2350 (Pico 2) boot ROMs,
as the simulator models them. Own tables, not shared with the client (lua/mpctl/rp2).

Sources:
  - USB ids: picotool picoboot_connection.h (2E8A:0003 RP2040 BOOTSEL, 2E8A:000F RP2350 BOOTSEL,
    2E8A:0005 MicroPython), anchors.md §3.5; MicroPython CDC 2E8A:0005: micropython
    ports/rp2/mpconfigport.h.
  - Descriptors and strings: raspberrypi/pico-bootrom-rp2040 bootrom/usb_boot_device.c
    (bcdUSB 0x0110, bcdDevice 0x0100, "Raspberry Pi" / "RP2 Boot", 500 mA, interface 0 MSC
    08/06/50 with EP 0x81 IN + 0x02 OUT, interface 1 vendor FF/00/00 with EP 0x03 OUT + 0x84 IN,
    64-byte bulk packets); raspberrypi/pico-bootrom-rp2350 src/nsboot/nsboot_usb_client.c
    ("RP2350 Boot", bcdUSB 0x0210, 50 mA, same interfaces and endpoints; its BOS descriptor with the
    Microsoft OS 2.0 capability is not modelled: a GET_DESCRIPTOR(BOS) stalls).
  - INFO_UF2.TXT: RP2040 bootrom/info_uf2.txt ("UF2 Bootloader v3.0", "Model: Raspberry Pi RP2",
    "Board-ID: RPI-RP2"); RP2350 src/nsboot/info_uf2_txt.h ("UF2 Bootloader v1.0" with Model and
    Board-ID filled in: "Raspberry Pi RP2350", "RP2350", as read off real boards).
  - UF2 families (pico-sdk src/common/boot_uf2_headers/include/boot/uf2.h): RP2040 0xE48BFF56,
    ABSOLUTE 0xE48BFF57, DATA 0xE48BFF58, RP2350_ARM_S 0xE48BFF59, RP2350_RISCV 0xE48BFF5A,
    RP2350_ARM_NS 0xE48BFF5B. The RP2040 ROM takes only RP2040 blocks (virtual_disk.c
    vd_write_block); the RP2350 ROM, without a partition table, takes the families its default
    partition permits: ABSOLUTE, DATA, RP2350_ARM_S, RP2350_RISCV (varm_flash_boot.c default
    permissions_and_flags, varm_nsboot.c s_varm_ram_trash_get_uf2_target_partition_workarea,
    usb_virtual_disk.c _update_current_uf2_info); RP2040 and ARM_NS blocks are ignored.
  - Boot decision ("valid image"):
      RP2040: the ROM loads the first 256 bytes of flash (boot2) and runs them only when the
      CRC-32 of the first 252 bytes equals the last 4 (little endian); else it falls back to USB
      boot (pico-bootrom-rp2040 bootrom_main.c, RP2040 datasheet §2.8.1.3.1). CRC parameters:
      polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no reflection, no final XOR (datasheet
      §2.8.1.3.1; the CRC-32/MPEG-2 of the CRC catalogues).
      RP2350: the ROM boots a flash image that carries an IMAGE_DEF block in its first 4 KiB
      (RP2350 datasheet §5.9 "Metadata block details"). Modelled as: a 32-bit word 0xFFFFDED3
      (PICOBIN_BLOCK_MARKER_START, pico-sdk boot/picobin.h) at a 4-byte aligned offset in the
      first 4 KiB, followed by an IMAGE_TYPE item (first byte 0x42, PICOBIN_BLOCK_ITEM_1BS_IMAGE_TYPE)
      and a later 0xAB123579 (PICOBIN_BLOCK_MARKER_END) within the same 4 KiB. Signatures, hashes
      and partition tables are not checked.
  - ROM size for PICOBOOT READ of the ROM: RP2040 8 KiB (usb_boot_device.h is_address_rom);
    SRAM: RP2040 264 KiB at 0x20000000 + 16 KiB XIP SRAM at 0x15000000 (RP2040 datasheet §2.2);
    RP2350 520 KiB at 0x20000000 (RP2350 datasheet §2.2).
]]
local M = {}

local RP2040_FAMILY, ABSOLUTE, DATA, ARM_S, RISCV, ARM_NS =
  0xE48BFF56, 0xE48BFF57, 0xE48BFF58, 0xE48BFF59, 0xE48BFF5A, 0xE48BFF5B
M.family = { rp2040 = RP2040_FAMILY, absolute = ABSOLUTE, data = DATA, rp2350_arm_s = ARM_S,
  rp2350_riscv = RISCV, rp2350_arm_ns = ARM_NS }

-- CRC-32 with polynomial 0x04C11DB7, MSB first, init 0xFFFFFFFF, no final XOR (the boot2 check).
local CRC_TABLE = {}
for i = 0, 255 do
  local c = i << 24
  for _ = 1, 8 do
    if c & 0x80000000 ~= 0 then c = ((c << 1) ~ 0x04C11DB7) & 0xFFFFFFFF else c = (c << 1) & 0xFFFFFFFF end
  end
  CRC_TABLE[i] = c
end

function M.boot2_crc(data)
  local crc = 0xFFFFFFFF
  for i = 1, #data do
    crc = ((crc << 8) & 0xFFFFFFFF) ~ CRC_TABLE[((crc >> 24) ~ data:byte(i)) & 0xFF]
  end
  return crc
end

local function rp2040_valid(flash)
  local boot2 = flash:peek(0, 256)
  local want = string.unpack("<I4", boot2, 253)
  if M.boot2_crc(boot2:sub(1, 252)) == want then return true end
  return false, "no valid boot2: the CRC-32 of flash bytes 0..251 does not equal the word at 252 (RP2040 datasheet §2.8.1.3.1)"
end

local function rp2350_valid(flash)
  local head = flash:peek(0, 4096)
  for off = 1, 4096 - 8, 4 do
    if string.unpack("<I4", head, off) == 0xFFFFDED3 and head:byte(off + 4) == 0x42 then
      for e = off + 8, 4096 - 3, 4 do
        if string.unpack("<I4", head, e) == 0xAB123579 then return true end
      end
    end
  end
  return false, "no IMAGE_DEF block (0xFFFFDED3, item 0x42 ... 0xAB123579) in the first 4 KiB of flash (RP2350 datasheet §5.9)"
end

M.rp2040 = {
  name = "rp2040", sim = "pico", pid = 0x0003, product = "RP2 Boot", bcd_usb = 0x0110, max_power = 0xFA, -- 500 mA
  flash_size = 2 * 1024 * 1024,
  info_uf2 = "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n",
  index_url = "https://raspberrypi.com/device/RP2?version=E0C9125B0D9B",
  families = { [RP2040_FAMILY] = true },
  rom_size = 8192, rom_version = 3, -- B2 silicon's ROM (version byte at 0x13)
  ram = { { 0x20000000, 264 * 1024 }, { 0x15000000, 16 * 1024 } },
  -- the RP2040 ROM queues FLASH_ERASE / EXIT_XIP / ENTER_CMD_XIP / EXCLUSIVE_ACCESS and acks them
  -- without looking at the task's result (usb_boot_device.c _atc_ack), so a failing erase is acked
  -- with status OK; the RP2350 ROM checks it (nsboot_usb_client.c atc_ack -> _check_task_failure)
  acks_failed_commands = true,
  -- the RP2040 ROM halts only the data endpoint when a data-phase chunk fails; the RP2350 both
  halts_both_on_data_error = false,
  has_reboot = true, has_reboot2 = false,
  valid = rp2040_valid,
  serial = "E0C9125B0D9B",
}

M.rp2350 = {
  name = "rp2350", sim = "pico2", pid = 0x000F, product = "RP2350 Boot", bcd_usb = 0x0210, max_power = 0x19, -- 50 mA
  flash_size = 4 * 1024 * 1024,
  info_uf2 = "UF2 Bootloader v1.0\r\nModel: Raspberry Pi RP2350\r\nBoard-ID: RP2350\r\n",
  index_url = "https://raspberrypi.com/device/RP2?version=5A09D5312E22",
  families = { [ABSOLUTE] = true, [DATA] = true, [ARM_S] = true, [RISCV] = true },
  rom_size = 32 * 1024, rom_version = 2,
  ram = { { 0x20000000, 520 * 1024 } },
  acks_failed_commands = false,
  halts_both_on_data_error = true,
  -- RP2350: PC_REBOOT is refused (nsboot_usb_client.c maps it to AT_EXEC -> UNKNOWN_CMD); REBOOT2 instead
  has_reboot = false, has_reboot2 = true,
  valid = rp2350_valid,
  serial = "5A09D5312E22F1A3",
}

return M
