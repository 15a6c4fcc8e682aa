--[[ mpctl.sim.usb.rp2_boot: the RP2040 / RP2350 boot ROM in BOOTSEL mode, as a USB device model
for mpctl.sim.usb.host (docs/simulators.md "USB device models").

Sources (facts only; the code is ours):
  - pico-sdk src/common/boot_picoboot_headers/include/boot/picoboot.h (+ picoboot_constants.h):
    PICOBOOT_MAGIC 0x431FD10B; control requests PICOBOOT_IF_RESET 0x41 (OUT, no data: un-stall the
    endpoints and reset) and PICOBOOT_IF_CMD_STATUS 0x42 (IN, 16 bytes: dToken, dStatusCode,
    bCmdId, bInProgress, 6 pad), both vendor requests to the interface (bmRequestType 0x41 / 0xC1);
    struct picoboot_cmd (32 bytes LE: dMagic, dToken, bCmdId (bit 7 = IN data), bCmdSize,
    u16 unused, dTransferLength, args[16]); command ids EXCLUSIVE_ACCESS 0x01, REBOOT 0x02,
    FLASH_ERASE 0x03, READ 0x84, WRITE 0x05, EXIT_XIP 0x06, ENTER_CMD_XIP 0x07, EXEC 0x08,
    VECTORIZE_FLASH 0x09, RP2350: REBOOT2 0x0A, GET_INFO 0x8B, OTP_READ 0x8C, OTP_WRITE 0x0D;
    status codes OK 0, UNKNOWN_CMD 1, INVALID_CMD_LENGTH 2, INVALID_TRANSFER_LENGTH 3,
    INVALID_ADDRESS 4, BAD_ALIGNMENT 5, INTERLEAVED_WRITE 6, REBOOTING 7, UNKNOWN_ERROR 8,
    INVALID_STATE 9, NOT_PERMITTED 10, INVALID_ARG 11 ...; "picoboot_cmd structure of size 32 is
    sent to OUT endpoint, transfer_length bytes are transferred via IN/OUT, device responds on
    success with 0 length ACK packet set via OUT/IN, device may stall the transferring endpoint in
    case of error".
  - RP2040 datasheet §2.8 "Bootrom" (§2.8.5 USB mass storage and PICOBOOT interfaces).
  - The ROM's behaviour where the header is silent, from the published ROM sources
    raspberrypi/pico-bootrom-rp2040 (bootrom/usb_boot_device.c _picoboot_cmd_packet_internal,
    bootrom/async_task.c _execute_task) and raspberrypi/pico-bootrom-rp2350
    (src/nsboot/nsboot_usb_client.c):
      * a command is accepted only as one 32-byte packet with the magic; otherwise both endpoints
        stall and the status is left as it was
      * the status becomes the command's token/id with UNKNOWN_CMD; an id (bits 0-6) outside the
        table keeps UNKNOWN_CMD; bCmdSize must equal the command's argument size
        (INVALID_CMD_LENGTH); dTransferLength must be dSize for READ/WRITE and 0 otherwise
        (INVALID_TRANSFER_LENGTH); each failure stalls both endpoints
      * FLASH_ERASE: address and size 4096-aligned (BAD_ALIGNMENT), inside 0x10000000..0x20000000
        (INVALID_ADDRESS); READ/WRITE go in 256-byte chunks, flash chunks must start 256-aligned,
        RAM (and for READ the ROM) is accessed directly; WRITE does no erase
      * REBOOT (RP2040): acked, then a watchdog reboot after dDelayMS; dPC 0 = the normal boot path
      * RP2040 acks FLASH_ERASE / EXIT_XIP / ENTER_CMD_XIP / EXCLUSIVE_ACCESS without checking their
        result (async_task results are dropped by _atc_ack): a misaligned erase is acked with
        status OK and erases nothing. The RP2350 ROM sets the status and stalls both endpoints.
      * a failed READ/WRITE chunk: status set, the data endpoint stalls (RP2350: both)
      * no check that EXCLUSIVE_ACCESS or EXIT_XIP came first: the ROM writes without them too
      * exclusive access makes the drive's writes fail; EXCLUSIVE_AND_EJECT (2) also ejects it;
        INTERFACE_RESET (and a bus reset) clears exclusive access
Model decisions (not from the sources):
  - flash addresses inside the XIP window but beyond the chip (2 MiB pico, 4 MiB pico2) answer
    INVALID_ADDRESS (a real chip would see its address bits wrap)
  - the simulator runs no code: EXEC / VECTORIZE_FLASH are acked and do nothing (RP2040) or answer
    UNKNOWN_CMD as the RP2350 ROM does; a REBOOT with dPC != 0 (RAM code) comes back in BOOTSEL
  - RP2350 GET_INFO: SYS and UF2_STATUS (fixed chip ids, see info_reply); partition-table types
    answer INVALID_ARG. OTP_READ reads an unprogrammed OTP (zeros); OTP_WRITE answers NOT_PERMITTED
  - bulk IN asked while the device has nothing to send (a real one NAKs until the host times out)
    fails at once with an I/O error: umockdev cannot hold a URB back without libusb spinning
  - the mass-storage interface has its descriptors only; the drive is a folder (mpctl.sim.rp2.drive)
Time (timing=on): flash erase/program times from mpctl.sim.rp2.flash accumulate on the device's
own clock; the next transfer that needs the work done (the ACK, the next data) waits for it,
which is what the ROM's NAKs do to a host. GET_COMMAND_STATUS answers at once (bInProgress).
]]
local device = require("mpctl.sim.usb.device")
local time = require("mpctl.time")

local M = {}
M.__index = M

local MAGIC = 0x431FD10B
local EP_OUT, EP_IN = 0x03, 0x84
local IFACE = 1
local XIP_BASE, XIP_END = 0x10000000, 0x20000000

local ST = { OK = 0, UNKNOWN_CMD = 1, INVALID_CMD_LENGTH = 2, INVALID_TRANSFER_LENGTH = 3,
  INVALID_ADDRESS = 4, BAD_ALIGNMENT = 5, INTERLEAVED_WRITE = 6, REBOOTING = 7, UNKNOWN_ERROR = 8,
  INVALID_STATE = 9, NOT_PERMITTED = 10, INVALID_ARG = 11, BUFFER_TOO_SMALL = 12 }
M.status = ST

-- id (bits 0-6) -> name, argument size, transfer ("range": dSize, "info": <= 256, or 0), rp2350 only
local CMDS = {
  [0x01] = { name = "EXCLUSIVE_ACCESS", size = 1 },
  [0x02] = { name = "REBOOT", size = 12 },
  [0x03] = { name = "FLASH_ERASE", size = 8 },
  [0x04] = { name = "READ", size = 8, xfer = "range" },
  [0x05] = { name = "WRITE", size = 8, xfer = "range" },
  [0x06] = { name = "EXIT_XIP", size = 0 },
  [0x07] = { name = "ENTER_CMD_XIP", size = 0 },
  [0x08] = { name = "EXEC", size = 4 },
  [0x09] = { name = "VECTORIZE_FLASH", size = 4 },
  [0x0A] = { name = "REBOOT2", size = 16, rp2350 = true },
  [0x0B] = { name = "GET_INFO", size = 16, xfer = "info", rp2350 = true },
  [0x0C] = { name = "OTP_READ", size = 5, xfer = "otp", rp2350 = true },
  [0x0D] = { name = "OTP_WRITE", size = 5, xfer = "otp", rp2350 = true },
}

--- board: the shared state of one simulated Pico (mpctl.sim.rp2.board): chip, flash, drive,
--- stats, opts, log, and board:after_reboot(kind) -> the next model.
function M.new(board)
  local chip = board.chip
  local self = setmetatable({ board = board, chip = chip, flash = board.flash, log = board.log,
    status = { token = 0, code = 0, cmd = 0, busy = false }, halted = {}, phase = "cmd",
    exclusive = 0, busy_until = 0, timing = board.timing }, M)
  local bulk = function(addr) return { address = addr, attributes = 2, max_packet = 64, interval = 0 } end
  self.usb = device.new {
    vid = 0x2E8A, pid = chip.pid, bcd_device = 0x0100, usb_version = chip.bcd_usb, max_packet0 = 64,
    -- RP2040: the ROM's constant, whatever the board (serial= sets the flash's unique id instead,
    -- what MicroPython shows); RP2350: the chip's id
    manufacturer = "Raspberry Pi", product = chip.product,
    serial = chip.name == "rp2040" and chip.serial or (board.serial or chip.serial),
    configs = { { attributes = 0x80, max_power = chip.max_power, interfaces = {
      { class = 0x08, subclass = 0x06, protocol = 0x50, endpoints = { bulk(0x81), bulk(0x02) } },
      { class = 0xFF, subclass = 0x00, protocol = 0x00, endpoints = { bulk(EP_OUT), bulk(EP_IN) } },
    } } },
  }
  return self
end

-- The device clock: work queued by the flash runs until busy_until.
function M:work(secs)
  if not self.timing then return end
  self.busy_until = math.max(self.busy_until, time.now()) + secs
end

function M:wait_busy()
  local left = self.busy_until - time.now()
  if left > 0 then time.sleep(left) end
end

function M:count(name)
  local s = self.board.stats
  s.commands = s.commands + 1
  s.by_command[name] = (s.by_command[name] or 0) + 1
end

-- Both endpoints stall (a failed command); the status keeps code.
function M:fail(code)
  if code then self.status.code = code end
  self.status.busy = false
  self.halted[EP_OUT], self.halted[EP_IN] = true, true
  self.phase = "halted"
end

-- Where an address range lies: "flash", "ram", "rom" (reads only), or nil.
function M:region(addr, len, write)
  local chip = self.chip
  for _, r in ipairs(chip.ram) do
    if addr >= r[1] and addr + len <= r[1] + r[2] then return "ram" end
  end
  if not write and addr + len <= chip.rom_size then return "rom" end
  if addr >= XIP_BASE and addr + len <= XIP_END then return "flash" end
end

-- RAM and ROM contents (sparse 256-byte pages, zero-filled; the ROM has only its header at 0x10:
-- 'M' 'u' 0x01 and the version byte, RP2040 datasheet §2.8.3 "Bootrom Contents").
function M:mem_read(addr, len, kind)
  if kind == "rom" then
    local rom = string.rep("\0", 0x10) .. "Mu\1" .. string.char(self.chip.rom_version)
    local out = {}
    for a = addr, addr + len - 1 do out[#out + 1] = a < #rom and rom:sub(a + 1, a + 1) or "\0" end
    return table.concat(out)
  end
  local ram = self.board.ram
  local out = {}
  for a = addr, addr + len - 1 do out[#out + 1] = ram[a] or "\0" end
  return table.concat(out)
end

function M:mem_write(addr, data)
  local ram = self.board.ram
  for i = 1, #data do ram[addr + i - 1] = data:sub(i, i) end
end

-- One 256-byte (or shorter, last) chunk of READ/WRITE: the ROM's per-chunk checks. Returns a
-- status code, and for reads the data.
function M:chunk(addr, data_or_len, write)
  local len = write and #data_or_len or data_or_len
  local kind = self:region(addr, len, write)
  if not kind then return ST.INVALID_ADDRESS end
  if kind ~= "flash" then
    if write then self:mem_write(addr, data_or_len); return ST.OK end
    return ST.OK, self:mem_read(addr, len, kind)
  end
  if addr % 256 ~= 0 then return ST.BAD_ALIGNMENT end
  local off = addr - XIP_BASE
  if not self.flash:contains(off, len) then return ST.INVALID_ADDRESS end
  if write then
    self:work(self.flash:program(off, data_or_len))
    return ST.OK
  end
  return ST.OK, self.flash:read(off, len)
end

-- The flash write/erase commands count for fault=…, fault_at=N.
function M:fault_due()
  local b = self.board
  if not b.fault then return false end
  b.mutations = (b.mutations or 0) + 1
  if b.mutations == b.fault_at then
    b.fault = nil
    return true
  end
  return false
end

-- Commands without a data phase, run when they arrive. Returns a status code.
function M:run_task(name, args)
  if name == "EXCLUSIVE_ACCESS" then
    self.exclusive = args:byte(1)
    local drive = self.board.drive
    if drive then
      if self.exclusive == 2 then drive:unmount() elseif self.exclusive == 0 and self.board.in_bootsel then drive:mount() end
    end
    return ST.OK
  elseif name == "EXIT_XIP" then
    self.xip = false
    return ST.OK
  elseif name == "ENTER_CMD_XIP" then
    self.xip = true
    return ST.OK
  elseif name == "FLASH_ERASE" then
    local addr, size = string.unpack("<I4I4", args)
    if addr % 4096 ~= 0 or size % 4096 ~= 0 then return ST.BAD_ALIGNMENT end
    if not (addr >= XIP_BASE and addr <= XIP_END and addr + size >= XIP_BASE and addr + size <= XIP_END) then
      return ST.INVALID_ADDRESS
    end
    if not self.flash:contains(addr - XIP_BASE, size) then return ST.INVALID_ADDRESS end
    for a = addr, addr + size - 1, 4096 do self:work(self.flash:erase_sector(a - XIP_BASE)) end
    return ST.OK
  elseif name == "EXEC" or name == "VECTORIZE_FLASH" then
    if self.chip.name == "rp2350" then return ST.UNKNOWN_CMD end
    self.log(name .. " acked: the simulator runs no code")
    return ST.OK
  end
  return ST.UNKNOWN_CMD
end

-- RP2350 GET_INFO and OTP_READ replies (tlen bytes). GET_INFO (pico-bootrom-rp2350
-- nsboot_async_task.c, varm_apis.c s_varm_api_get_sys_info; the RP2350 datasheet's bootrom chapter,
-- get_sys_info and PICOBOOT GET_INFO): word 0 is
-- the number of words that follow, then the answer. SYS (bType 1, dParams[0] = flags from
-- pico-sdk boot/bootrom_constants.h): the supported flags first, then per flag CHIP_INFO 0x1
-- (package_sel, device id, wafer id: 3 words), CRITICAL 0x2 (1), CPU_INFO 0x4 (1: 0 = Arm),
-- FLASH_DEV_INFO 0x8 (1), BOOT_RANDOM 0x10 (4), BOOT_INFO 0x40 (4); NONCE 0x20 is not offered.
-- UF2_STATUS (bType 4): 4 words of the drive's download state (mpctl.sim.rp2.uf2). Partition
-- tables (bTypes 2, 3) are not modelled: INVALID_ARG, as for an unknown bType.
-- OTP_READ: an unprogrammed OTP (rows read 0); rows past 4096 are INVALID_ADDRESS.
function M:info_reply(name, args, tlen)
  if name == "OTP_READ" then
    local row, count = string.unpack("<I2I2", args)
    if row + count > 4096 then return ST.INVALID_ADDRESS end
    return ST.OK, string.rep("\0", tlen)
  end
  if name ~= "GET_INFO" then return ST.NOT_PERMITTED end
  if tlen < 8 or tlen % 4 ~= 0 then return ST.INVALID_TRANSFER_LENGTH end
  local btype, _, _, p0 = string.unpack("<BBI2I4", args)
  local words
  if btype == 1 then
    local flags = p0 & 0x5F
    words = { flags }
    local function add(...) for _, w in ipairs({ ... }) do words[#words + 1] = w end end
    if flags & 0x01 ~= 0 then add(0, 0x00004927, 0x5A09D531) end -- package sel 0; the simulator's own made-up ids
    if flags & 0x02 ~= 0 then add(0) end -- no critical OTP flags (secure boot off)
    if flags & 0x04 ~= 0 then add(0) end -- Arm
    if flags & 0x08 ~= 0 then add(0) end -- flash devinfo as the ROM leaves it unconfigured
    if flags & 0x10 ~= 0 then add(0x1234ABCD, 0x0F1E2D3C, 0x4B5A6978, 0x8796A5B4) end
    if flags & 0x40 ~= 0 then add(0, 0, 0, 0) end
    if #words > tlen // 4 - 1 then return ST.BUFFER_TOO_SMALL end
  elseif btype == 4 then
    local uf2 = self.board.uf2
    local raw = uf2 and uf2:status_words() or string.rep("\0", 16)
    words = { string.unpack("<I4I4I4I4", raw) }
    words[5] = nil
  else
    return ST.INVALID_ARG
  end
  local out = { string.pack("<I4", #words) }
  for _, w in ipairs(words) do out[#out + 1] = string.pack("<I4", w) end
  local reply = table.concat(out)
  return ST.OK, reply .. string.rep("\0", tlen - #reply)
end

-- REBOOT (RP2040) / REBOOT2 (RP2350): acked, then the board reboots after the delay.
function M:schedule_reboot(kind, delay_ms)
  self.reboot_at = time.now() + math.max(delay_ms, 1) / 1000
  self.reboot_kind = kind
  self.log(string.format("reboot (%s) in %d ms", kind, delay_ms))
end

function M:command(data)
  if #data ~= 32 or string.unpack("<I4", data) ~= MAGIC then
    self:fail(nil)
    return "ok"
  end
  local token, id, size, tlen = string.unpack("<I4BBxxI4", data, 5)
  local args = data:sub(17, 32)
  local st = self.status
  st.token, st.cmd, st.busy, st.code = token, id, false, ST.UNKNOWN_CMD
  local spec = CMDS[id & 0x7F]
  if not spec or (spec.rp2350 and self.chip.name ~= "rp2350") then self:fail(); return "ok" end
  self:count(spec.name)
  if size ~= spec.size then self:fail(ST.INVALID_CMD_LENGTH); return "ok" end
  st.code = ST.OK
  local want = 0
  if spec.xfer == "range" then want = select(2, string.unpack("<I4I4", args))
  elseif spec.xfer == "info" then want = tlen <= 256 and tlen or -1
  elseif spec.xfer == "otp" then
    local _, rows, ecc = string.unpack("<I2I2B", args)
    want = rows * (ecc ~= 0 and 2 or 4)
  end
  -- REBOOT / REBOOT2 are handled before the transfer length is looked at (both ROMs)
  if spec.name == "REBOOT" and self.chip.has_reboot then
    local pc, _, delay = string.unpack("<I4I4I4", args)
    self:schedule_reboot(pc == 0 and "boot" or "bootsel", delay)
    self.phase = "ack_in"
    return "ok"
  end
  if spec.name == "REBOOT2" then
    local flags, delay = string.unpack("<I4I4", args)
    local t = flags & 0x0F -- REBOOT2_TYPE_MASK; picoboot_constants.h
    local kind = (t == 0x0 or t == 0x4) and "boot" or t == 0x2 and "bootsel" or nil
    if not kind then self:fail(ST.NOT_PERMITTED); return "ok" end
    self:schedule_reboot(kind, delay)
    self.phase = "ack_in"
    return "ok"
  end
  if want ~= tlen then self:fail(ST.INVALID_TRANSFER_LENGTH); return "ok" end
  if spec.name == "REBOOT" then self:fail(ST.UNKNOWN_CMD); return "ok" end -- RP2350: not supported
  if spec.name == "FLASH_ERASE" or spec.name == "WRITE" then
    if self:fault_due() then
      if self.board.fault_kind == "disconnect" then
        self.log("fault: the board drops off the bus at flash command " .. self.board.fault_at)
        self.disconnect = true
        return "nodev"
      end
      self.log("fault: stall at flash command " .. self.board.fault_at)
      self:fail(ST.UNKNOWN_ERROR)
      return "ok"
    end
  end
  st.busy = true
  local in_dir = (id & 0x80) ~= 0
  if self.chip.name == "rp2040" then in_dir = spec.name ~= "WRITE" end
  if tlen > 0 then
    self.cur = { name = spec.name, addr = string.unpack("<I4", args), left = tlen, write = not in_dir }
    if spec.xfer ~= "range" then
      -- GET_INFO / OTP_READ: the whole reply is known now; OTP_WRITE is refused
      local code, reply = self:info_reply(spec.name, args, tlen)
      if code ~= ST.OK then self:fail(code); return "ok" end
      self.cur.reply = reply
    end
    self.phase = in_dir and "data_in" or "data_out"
    return "ok"
  end
  local code = self:run_task(spec.name, args)
  if code ~= ST.OK and not self.chip.acks_failed_commands then
    self:fail(code)
    return "ok"
  end
  if code ~= ST.OK then self.log(string.format("%s failed (status %d), acked anyway as the RP2040 ROM does", spec.name, code)) end
  self.phase = "ack_in"
  return "ok"
end

-- A failed data chunk: the data endpoint stalls (RP2350: both).
function M:fail_data(code, ep)
  self.status.code, self.status.busy = code, false
  self.halted[ep] = true
  if self.chip.halts_both_on_data_error then self.halted[EP_OUT], self.halted[EP_IN] = true, true end
  self.phase = "halted"
  return "stall"
end

function M:bulk_out(ep, data)
  if ep ~= EP_OUT then return "stall" end -- the mass-storage endpoints: descriptors only
  self:wait_busy()
  if self.halted[EP_OUT] then return "stall" end
  data = data or ""
  if self.phase == "cmd" or self.phase == "halted" then return self:command(data) end
  if self.phase == "data_out" then
    local cur = self.cur
    if #data > cur.left then return self:fail_data(ST.INVALID_TRANSFER_LENGTH, EP_OUT) end
    local pos = 1
    while pos <= #data do
      -- chunks end at 256-byte steps of the transfer (the ROM's stream buffer)
      local n = math.min(256 - (cur.done or 0) % 256, #data - pos + 1)
      local code = self:chunk(cur.addr, data:sub(pos, pos + n - 1), true)
      if code ~= ST.OK then return self:fail_data(code, EP_OUT) end
      cur.addr, cur.left, cur.done, pos = cur.addr + n, cur.left - n, (cur.done or 0) + n, pos + n
    end
    if cur.left == 0 then self.phase = "ack_in" end
    return "ok"
  end
  if self.phase == "ack_out" then
    if #data ~= 0 then self:fail(); return "stall" end
    self:done()
    return "ok"
  end
  return "timeout" -- the device expects IN now: a real one NAKs this OUT
end

function M:bulk_in(ep, length)
  if ep ~= EP_IN then return "stall" end
  self:wait_busy()
  if self.halted[EP_IN] then return "stall" end
  if self.phase == "data_in" and self.cur.reply then
    local cur = self.cur
    local n = math.min(length, cur.left)
    local start = #cur.reply - cur.left
    cur.left = cur.left - n
    if cur.left == 0 then self.phase = "ack_out" end
    return "ok", cur.reply:sub(start + 1, start + n)
  end
  if self.phase == "data_in" then
    local cur, out = self.cur, {}
    local want = math.min(length, cur.left)
    while want > 0 do
      local n = math.min(256 - (cur.done or 0) % 256, want)
      local code, bytes = self:chunk(cur.addr, n, false)
      if code ~= ST.OK then return self:fail_data(code, EP_IN) end
      out[#out + 1] = bytes
      cur.addr, cur.left, cur.done, want = cur.addr + n, cur.left - n, (cur.done or 0) + n, want - n
    end
    if cur.left == 0 then self.phase = "ack_out" end
    return "ok", table.concat(out)
  end
  if self.phase == "ack_in" then
    self:done()
    return "ok", ""
  end
  return "timeout" -- nothing to send: a real device NAKs until the host gives up
end

function M:done()
  self.status.busy = false
  self.phase, self.cur = "cmd", nil
end

-- PICOBOOT_IF_RESET / PICOBOOT_IF_CMD_STATUS (vendor requests to interface 1).
function M:control(setup, _)
  local rt, req, _, index, length = string.unpack("<BBI2I2I2", setup)
  if (rt >> 5) & 3 ~= 2 or rt & 0x1F ~= 1 or index & 0xFF ~= IFACE then return "stall" end
  if rt & 0x80 ~= 0 and req == 0x42 and length == 16 then
    local st = self.status
    local busy = st.busy or (self.timing and time.now() < self.busy_until)
    return "ok", string.pack("<I4I4BB", st.token, st.code, st.cmd, busy and 1 or 0) .. string.rep("\0", 6)
  end
  if rt & 0x80 == 0 and req == 0x41 then
    self:interface_reset()
    return "ok"
  end
  return "stall"
end

function M:interface_reset()
  self.halted = {}
  self.phase, self.cur = "cmd", nil
  self.status = { token = 0, code = 0, cmd = 0, busy = false }
  if self.exclusive == 2 and self.board.drive and self.board.in_bootsel then self.board.drive:mount() end
  self.exclusive = 0
end

function M:clear_halt(ep)
  self.halted[ep] = nil
  if self.phase == "halted" and not self.halted[EP_OUT] then self.phase = "cmd" end
  return "ok"
end

-- A bus reset: the ROM's on_configure resets PICOBOOT (usb_boot_device.c _usb_boot_on_configure).
function M:reset()
  self:interface_reset()
  return "ok"
end

function M:on_plug()
  self.board.in_bootsel = true
  if self.board.uf2 then self.board.uf2:restart() end
  if self.board.drive then self.board.drive:mount() end
end

function M:on_unplug()
  self.board.in_bootsel = false
  if self.board.drive then self.board.drive:unmount() end
end

function M:tick(now)
  if self.disconnect then
    self.disconnect = nil
    return { unplug = true, replace = self.board:after_reboot("boot") }
  end
  local drive = self.board.drive
  if drive and not self.reboot_at then
    local action, ram = drive:poll(now, self.exclusive ~= 0, self.timing)
    if action == "reboot" then
      -- RP2040: a watchdog reboot 1000 ms after the last block (virtual_disk.c); instant with timing=off
      self:schedule_reboot(ram and "bootsel" or "boot", self.timing and 1000 or 10)
    end
  end
  if self.reboot_at and now >= self.reboot_at and now >= self.busy_until then
    local kind = self.reboot_kind
    self.reboot_at = nil
    return { unplug = true, replace = self.board:after_reboot(kind) }
  end
end

return M
