-- mpctl.sim.esp.rom: the serial bootloader command set as the ESP ROMs answer it, plus the
-- parts the flasher stub answers the same way (the stub-only commands are in stub.lua).
--
-- Protocol facts: anchors.md §3.1 (esptool `loader.py`, `docs/en/advanced-topics/
-- serial-protocol.rst`): request `<BBHI` dir=0, op, len, checksum + data; response `<BBHI`
-- dir=1, op, len, value + data + status. Status is 4 bytes on ESP32-and-later ROMs (status,
-- error, 2 reserved), 2 bytes on the ESP8266 ROM and on every stub. _DATA commands carry
-- `<IIII` len, seq, 0, 0 + data, checksummed by XOR from 0xEF over the data.
-- Error codes: ROM 0x05 invalid message, 0x06 failed to act, 0x07 bad checksum, 0x08 flash
-- write, 0x09 flash read, 0x0a read length, 0x0b deflate; stub 0xC0 bad length, 0xC1 bad
-- checksum, 0xC2 bad block size, 0xC6 not in flash mode, 0xC7 inflate, 0xC9 too much data,
-- 0xFF not implemented.
local M = {}

M.OP = {
  FLASH_BEGIN = 0x02, FLASH_DATA = 0x03, FLASH_END = 0x04, MEM_BEGIN = 0x05, MEM_END = 0x06,
  MEM_DATA = 0x07, SYNC = 0x08, WRITE_REG = 0x09, READ_REG = 0x0A, SPI_SET_PARAMS = 0x0B,
  SPI_ATTACH = 0x0D, READ_FLASH_SLOW = 0x0E, CHANGE_BAUDRATE = 0x0F, FLASH_DEFL_BEGIN = 0x10,
  FLASH_DEFL_DATA = 0x11, FLASH_DEFL_END = 0x12, SPI_FLASH_MD5 = 0x13, GET_SECURITY_INFO = 0x14,
  ERASE_FLASH = 0xD0, ERASE_REGION = 0xD1, READ_FLASH = 0xD2, RUN_USER_CODE = 0xD3,
}
local OP = M.OP

local ROM_BLOCK = 0x400          -- ROM FLASH_WRITE_SIZE (esptool loader.py)
M.USB_RAM_BLOCK = 0x800          -- block limit over the ROM's USB-OTG CDC (esptool USB_RAM_BLOCK)
local ROM_ERASE_LIMIT = 2 << 20  -- ROM assumes 2 MB until SPI_SET_PARAMS (esptool cmds.erase_region)
local SYNC_PAYLOAD = "\7\7\18\32" .. string.rep("\85", 32)

-- Error codes by meaning, for ROM and stub.
local ERR = {
  invalid = { rom = 0x05, stub = 0xC0 },
  failed = { rom = 0x06, stub = 0xC4 },
  checksum = { rom = 0x07, stub = 0xC1 },
  write = { rom = 0x08, stub = 0xC4 },
  read_len = { rom = 0x0A, stub = 0xC0 },
  deflate = { rom = 0x0B, stub = 0xC7 },
  blocksize = { rom = 0x05, stub = 0xC2 },
  not_flash = { rom = 0x05, stub = 0xC6 },
  too_much = { rom = 0x05, stub = 0xC9 },
}
M.ERR = ERR

local function err(dev, what) return ERR[what][dev.stub and "stub" or "rom"] end

function M.checksum(data)
  local c = 0xEF
  for i = 1, #data, 4096 do
    local b = { data:byte(i, i + 4095) }
    for k = 1, #b do c = c ~ b[k] end
  end
  return c
end

-- Parse a _DATA payload: returns data or nil, error key.
local function data_payload(dev, cmd, max_block)
  if #cmd.data < 16 then return nil, "invalid" end
  local len, seq = string.unpack("<I4I4", cmd.data)
  local data = cmd.data:sub(17)
  if len ~= #data then return nil, "invalid" end
  if max_block and len > max_block then return nil, "blocksize" end
  if M.checksum(data) ~= (cmd.chk & 0xFF) then return nil, "checksum" end
  return data, nil, seq
end

local function u32s(data, n)
  if #data < 4 * n then return nil end
  return string.unpack("<" .. string.rep("I4", n), data)
end

-- ---- registers ------------------------------------------------------------------------------

-- SPI user-command emulation (esptool run_spiflash_command): writing SPI_CMD_USR (bit 18) to
-- the SPI CMD register runs the command in USR2's low byte; only RDID (0x9F) and RDSR (0x05)
-- produce data, the bit clears at once (the transfer is instant here).
local function spi_command(dev)
  local s = dev.chip.spi
  local usr2 = dev.regs[s.base + s.usr2] or 0
  local cmd = usr2 & 0xFF
  local w0 = s.base + s.w0
  if cmd == 0x9F then
    -- JEDEC id: Winbond (0xEF), W25Q..JV memory type 0x40, capacity byte = log2(size).
    local cap = 0
    while (1 << cap) < dev.flash.size do cap = cap + 1 end
    dev.regs[w0] = 0xEF | (0x40 << 8) | (cap << 16)
  elseif cmd == 0x05 or cmd == 0x35 then
    dev.regs[w0] = 0
  end
end

function M.read_reg(dev, addr)
  local c = dev.chip
  if addr == 0x40001000 then return c.magic end
  if addr == c.uart_clkdiv then
    -- Inverse of esptool's crystal estimate for the baud the ROM is running at.
    local baud = dev:chip_baud()
    return math.floor(c.xtal * c.xtal_div * 1e6 / baud + 0.5) & 0xFFFFF
  end
  return dev.regs[addr] or 0
end

function M.write_reg(dev, addr, value, mask)
  local old = dev.regs[addr] or 0
  dev.regs[addr] = (old & ~mask | value & mask) & 0xFFFFFFFF
  local s = dev.chip.spi
  if addr == s.base and (dev.regs[addr] & (1 << 18)) ~= 0 then
    spi_command(dev)
    dev.regs[addr] = dev.regs[addr] & ~(1 << 18)
  end
end

-- ---- handlers -------------------------------------------------------------------------------
local H = {}
M.handlers = H

H[OP.SYNC] = function(dev, cmd)
  if cmd.data ~= SYNC_PAYLOAD then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  if dev.stub then return dev:respond(cmd.op, 0, "") end
  dev:autobaud()
  -- The ROM answers one SYNC with several identical replies (esptool reads 7 extra); value =
  -- the first four payload bytes (serial-protocol.rst tracing example 010804000707122000000000).
  for _ = 1, 8 do dev:respond(cmd.op, 0x20120707, "") end
end

H[OP.READ_REG] = function(dev, cmd)
  local addr = u32s(cmd.data, 1)
  if not addr then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  dev:respond(cmd.op, M.read_reg(dev, addr), "")
end

H[OP.WRITE_REG] = function(dev, cmd)
  if #cmd.data < 16 or #cmd.data % 16 ~= 0 then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  local delay = 0
  for i = 1, #cmd.data, 16 do
    local addr, value, mask, delay_us = string.unpack("<I4I4I4I4", cmd.data, i)
    M.write_reg(dev, addr, value, mask)
    delay = delay + delay_us / 1e6
  end
  dev:busy(delay)
  dev:respond(cmd.op, 0, "")
end

H[OP.GET_SECURITY_INFO] = function(dev, cmd)
  if not dev.chip.security_info then return dev:unsupported(cmd) end
  -- `<IBBBBBBBBII`: flags, flash_crypt_cnt, 7 key purposes, chip id, API version; the ESP32-S2
  -- ROM stops after the key purposes (12 bytes: esptool get_security_info, esptool-js
  -- getSecurityInfo "then 12 bytes (ESP32-S2)").
  local info = string.pack("<I4I1", 0, 0) .. string.rep("\0", 7)
  if dev.chip.security_info ~= "short" then info = info .. string.pack("<I4I4", dev.chip.image_chip_id, 0) end
  dev:respond(cmd.op, 0, info)
end

H[OP.SPI_ATTACH] = function(dev, cmd)
  if not dev.stub and not dev.chip.rom_spi_cmds then return dev:unsupported(cmd) end
  local need = dev.stub and 4 or 8
  if #cmd.data ~= need and not (dev.stub and #cmd.data == 8) then
    return dev:respond(cmd.op, 0, "", err(dev, "invalid"))
  end
  dev.ld.attached = true
  dev:respond(cmd.op, 0, "")
end

H[OP.SPI_SET_PARAMS] = function(dev, cmd)
  if not dev.stub and not dev.chip.rom_spi_cmds then return dev:unsupported(cmd) end
  local _, total = u32s(cmd.data, 6)
  if not total then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  dev.ld.flash_limit = math.min(total, dev.flash.size)
  dev:respond(cmd.op, 0, "")
end

H[OP.CHANGE_BAUDRATE] = function(dev, cmd)
  if not dev.stub and not dev.chip.rom_change_baud then return dev:unsupported(cmd) end
  local new = u32s(cmd.data, 2)
  if not new or new < 300 then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  -- Reply at the old rate, then switch (esptool waits for the reply before changing the host).
  dev:respond(cmd.op, 0, "")
  dev:change_chip_baud(new)
end

-- Flash access on ESP32-and-later ROMs needs SPI_ATTACH first (serial-protocol.rst); the
-- ESP8266 ROM attaches by itself and the stub attaches at start-up.
local function need_attach(dev, cmd)
  if dev.stub or not dev.chip.rom_spi_cmds or dev.ld.attached then return true end
  dev:respond(cmd.op, 0, "", err(dev, "failed"))
  return false
end

-- ESP8266 ROM FLASH_BEGIN erase-size bug, as esptool's ESP8266ROM.get_erase_size works around
-- it: with h sectors to the next 64 KiB boundary, asking for p sectors erases 2p when p <= h
-- and p + h otherwise (the inverse of esptool's formula).
local function esp8266_rom_erase_len(offset, size)
  local p = (size + 4095) // 4096
  local h = 16 - (offset // 4096) % 16
  local n = (p <= h) and 2 * p or p + h
  return n * 4096
end
M.esp8266_rom_erase_len = esp8266_rom_erase_len

local function begin_write(dev, cmd, compressed)
  local n = #cmd.data
  if n ~= 16 and n ~= 20 then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  if not need_attach(dev, cmd) then return end
  local size, blocks, block_size, offset = string.unpack("<I4I4I4I4", cmd.data)
  local max_block = dev.stub and 0x4000 or ROM_BLOCK
  -- Over the ROM's USB-OTG CDC the hosts use USB_RAM_BLOCK (0x800) blocks, stub included
  -- (esptool targets/esp32s2.py, anchors §3.1): the USB buffer takes no more.
  if dev.usb == "otg" then max_block = math.min(max_block, M.USB_RAM_BLOCK) end
  if block_size > max_block or (block_size == 0 and blocks > 0) then
    return dev:respond(cmd.op, 0, "", err(dev, "blocksize"))
  end
  local limit = dev.stub and dev.flash.size or (dev.ld.flash_limit or ROM_ERASE_LIMIT)
  if offset + size > math.min(limit, dev.flash.size) then
    return dev:respond(cmd.op, 0, "", err(dev, "failed"))
  end
  local w = {
    compressed = compressed, offset = offset, cursor = offset, size = size,
    blocks = blocks, block_size = block_size, seq = 0, inflater = nil,
    erased_to = offset, stub = dev.stub,
  }
  if compressed then w.inflater = dev.zlib.inflater() end
  if not dev.stub then
    -- ROM erases the whole region before answering (esptool: "Took X s to erase flash block").
    local elen = size
    if dev.chip.rom_erase_bug and not compressed then elen = esp8266_rom_erase_len(offset, size) end
    elen = math.min(elen, dev.flash.size - offset)
    dev:busy(dev.flash:erase(offset, elen))
    w.erased_to = offset + elen
  end
  dev.ld.write = w
  dev:respond(cmd.op, 0, "")
end

H[OP.FLASH_BEGIN] = function(dev, cmd) begin_write(dev, cmd, false) end
H[OP.FLASH_DEFL_BEGIN] = function(dev, cmd)
  if not dev.stub and not dev.chip.rom_deflate then return dev:unsupported(cmd) end
  begin_write(dev, cmd, true)
end

-- Stub: erase just in time ahead of the write cursor, 64 KiB blocks where the region allows.
local function jit_erase(dev, w, upto)
  local cost = 0
  local region_end = w.offset + w.size
  region_end = region_end + (-region_end) % 4096
  while w.erased_to < upto do
    local a = w.erased_to
    if a % 65536 == 0 and a + 65536 <= region_end then
      cost = cost + dev.flash:erase(a, 65536)
      w.erased_to = a + 65536
    else
      cost = cost + dev.flash:erase(a, 4096)
      w.erased_to = a - a % 4096 + 4096
    end
  end
  return cost
end

-- Write decoded bytes at the cursor; returns busy seconds or nil, error key.
local function write_bytes(dev, w, bytes)
  -- The stub writes exactly the announced size: 0xFF padding of the last uncompressed block is
  -- dropped (so it erases nothing past the region); the ROM programs whole blocks.
  if w.stub and not w.compressed then bytes = bytes:sub(1, math.max(0, w.offset + w.size - w.cursor)) end
  if #bytes == 0 then return 0 end
  local limit = w.offset + w.size
  if not w.stub and not w.compressed then limit = math.max(limit, w.offset + w.blocks * w.block_size) end
  if w.cursor + #bytes > limit then return nil, "too_much" end
  if w.cursor + #bytes > dev.flash.size then return nil, "write" end
  local cost = 0
  if w.stub then cost = jit_erase(dev, w, w.cursor + #bytes) end
  local at = w.cursor
  local cut = dev:reset_point(at, #bytes)
  if cut then
    cost = cost + dev.flash:program(at, bytes:sub(1, cut))
    w.cursor = w.cursor + cut
    return cost, "reset"
  end
  cost = cost + dev.flash:program(at, bytes)
  w.cursor = w.cursor + #bytes
  return cost
end

local function data_block(dev, cmd, compressed)
  local w = dev.ld.write
  if not w or w.compressed ~= compressed then return dev:respond(cmd.op, 0, "", err(dev, "not_flash")) end
  local data, e, seq = data_payload(dev, cmd, w.block_size)
  if not data then return dev:respond(cmd.op, 0, "", err(dev, e)) end
  if seq ~= w.seq then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  local bytes = data
  if compressed then
    local ok, out = pcall(w.inflater.feed, w.inflater, data)
    if not ok then return dev:respond(cmd.op, 0, "", err(dev, "deflate")) end
    bytes = out
  end
  w.seq = w.seq + 1
  local cost, werr = write_bytes(dev, w, bytes)
  if werr == "reset" then return dev:power_glitch() end
  if not cost then return dev:respond(cmd.op, 0, "", err(dev, werr)) end
  dev.stats.flash_data_bytes = dev.stats.flash_data_bytes + #data
  if dev.stub then
    -- The stub ACKs as soon as the block is in RAM and writes it while the next one arrives;
    -- with one spare buffer it can only take this block once the previous write is done.
    dev:background_write(cost, function() dev:respond(cmd.op, 0, "") end)
  else
    dev:busy(cost)
    dev:respond(cmd.op, 0, "")
  end
end

H[OP.FLASH_DATA] = function(dev, cmd) data_block(dev, cmd, false) end
H[OP.FLASH_DEFL_DATA] = function(dev, cmd)
  if not dev.stub and not dev.chip.rom_deflate then return dev:unsupported(cmd) end
  data_block(dev, cmd, true)
end

local function end_write(dev, cmd)
  local flag = u32s(cmd.data, 1)
  if not flag then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  if dev.stub then
    -- Stub: wait until the background writes are on flash; 1 = stay, 0 = reboot.
    dev:after_flash(function()
      dev.ld.write = nil
      dev:respond(cmd.op, 0, "")
      dev:persist()
      if flag == 0 then dev:reboot_after_output("flash", "sw") end
    end)
    return
  end
  -- ROM: answering ends the loader either way (0 = reboot, 1 = run user code).
  dev.ld.write = nil
  dev:respond(cmd.op, 0, "")
  dev:persist()
  dev:reboot_after_output("flash", flag == 0 and "sw" or "run")
end

H[OP.FLASH_END] = end_write
H[OP.FLASH_DEFL_END] = function(dev, cmd)
  if not dev.stub and not dev.chip.rom_deflate then return dev:unsupported(cmd) end
  end_write(dev, cmd)
end

H[OP.SPI_FLASH_MD5] = function(dev, cmd)
  if not dev.stub and not dev.chip.rom_md5 then return dev:unsupported(cmd) end
  local addr, size = u32s(cmd.data, 4)
  if not addr then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  if not need_attach(dev, cmd) then return end
  if addr + size > dev.flash.size then return dev:respond(cmd.op, 0, "", err(dev, "read_len")) end
  dev:after_flash(function()
    local raw = dev.flash:md5(dev.hash, addr, size)
    dev:busy(dev.flash:read_time(size))
    dev:persist()
    -- ROM: 32 lowercase hex characters; stub: 16 raw bytes (esptool flash_md5sum).
    dev:respond(cmd.op, 0, dev.stub and raw or dev.hash.hex(raw))
  end)
end

H[OP.READ_FLASH_SLOW] = function(dev, cmd)
  if dev.stub or not dev.chip.rom_read_flash_slow then return dev:unsupported(cmd) end
  local addr, len = u32s(cmd.data, 2)
  if not addr then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  if not need_attach(dev, cmd) then return end
  if len > 64 or addr + len > dev.flash.size then return dev:respond(cmd.op, 0, "", err(dev, "read_len")) end
  -- The ESP32 ROM always answers with its whole 64-byte buffer.
  local data = dev.flash:read(addr, len) .. string.rep("\255", 64 - len)
  dev:respond(cmd.op, 0, data)
end

H[OP.MEM_BEGIN] = function(dev, cmd)
  local size, blocks, block_size, addr = u32s(cmd.data, 4)
  if not size then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  local max = dev.usb == "otg" and M.USB_RAM_BLOCK or 0x1800   -- ESP_RAM_BLOCK / USB_RAM_BLOCK
  if block_size > max then return dev:respond(cmd.op, 0, "", err(dev, "blocksize")) end
  dev.ld.mem = { addr = addr, size = size, blocks = blocks, block_size = block_size, seq = 0, got = 0 }
  dev:respond(cmd.op, 0, "")
end

H[OP.MEM_DATA] = function(dev, cmd)
  local m = dev.ld.mem
  if not m then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  local data, e, seq = data_payload(dev, cmd, m.block_size)
  if not data then return dev:respond(cmd.op, 0, "", err(dev, e)) end
  if seq ~= m.seq then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  m.seq, m.got = m.seq + 1, m.got + #data
  if m.got >= m.size then
    dev.ld.ram[#dev.ld.ram + 1] = { addr = m.addr, size = m.size }
  end
  dev:respond(cmd.op, 0, "")
end

H[OP.MEM_END] = function(dev, cmd)
  local flag, entry = u32s(cmd.data, 2)
  if not flag then return dev:respond(cmd.op, 0, "", err(dev, "invalid")) end
  dev:respond(cmd.op, 0, "")
  if flag ~= 0 then return end
  -- Jumping into uploaded code: if the entry point lies in a loaded segment, that is a flasher
  -- stub; it greets with OHAI. Anything else crashes the way a bad jump does: a reboot.
  for _, seg in ipairs(dev.ld.ram) do
    if entry >= seg.addr and entry < seg.addr + seg.size then
      return dev:start_stub()
    end
  end
  dev:reboot_after_output("flash", "sw")
end

return M
