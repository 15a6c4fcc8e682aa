--[[ mpctl.rp2.picoboot: the PICOBOOT client (the RP2040/RP2350 boot ROM's vendor USB interface in
BOOTSEL mode), over mpctl.usb (libusb).

    picoboot.list() -> { info, ... }           BOOTSEL devices present (2E8A:0003 RP2040, 2E8A:000F RP2350)
    picoboot.open(filter | "usb:...", {log=}) -> c   claims the PICOBOOT interface
    c:exclusive(mode)      0 not exclusive, 1 exclusive, 2 exclusive and eject the drive
    c:exit_xip()           c:erase(addr, size)    c:read(addr, size) -> data    c:write(addr, data)
    c:reboot()             back to the normal boot path (RP2040: REBOOT pc=0; RP2350: REBOOT2 NORMAL)
    c:status() -> {token=, code=, name=, cmd=, in_progress=}   c:reset()   c:close() / __close
    c.chip ("RP2040" | "RP2350"), c.info (mpctl.usb info), c.where ("usb:1-1"), c.stats {bytes_out=, bytes_in=, commands=}

Facts (pico-sdk src/common/boot_picoboot_headers/include/boot/picoboot.h, picoboot_constants.h;
picotool picoboot_connection/picoboot_connection.c and .h; anchors.md §3.4):
- Interface: class 0xFF with two bulk endpoints (OUT first, then IN); interface 1 when the
  configuration has two interfaces (mass storage is 0), else 0 (picotool picoboot_open_device).
- Command: 32 bytes on bulk OUT, little-endian: dMagic 0x431FD10B, dToken, bCmdId (bit 7 = data
  phase IN), bCmdSize (argument bytes), u16 unused, dTransferLength, args[16]. Then
  dTransferLength bytes on bulk IN or OUT, then a zero-length ack in the opposite direction. A
  failed command STALLs the endpoint; the host asks PICOBOOT_IF_CMD_STATUS (0x42, vendor,
  interface, IN, 16 bytes: dToken, dStatusCode, bCmdId, bInProgress) and recovers with
  PICOBOOT_IF_RESET (0x41, vendor, interface, OUT, no data) after clearing the endpoint halts
  (picotool picoboot_reset / connection::wrap_call).
- Ids: EXCLUSIVE_ACCESS 0x01, REBOOT 0x02 (dPC, dSP, dDelayMS), FLASH_ERASE 0x03 (dAddr, dSize),
  READ 0x84, WRITE 0x05 (dAddr, dSize; no erase), EXIT_XIP 0x06, REBOOT2 0x0A (dFlags, dDelayMS,
  dParam0, dParam1; REBOOT2_FLAG_REBOOT_TYPE_NORMAL 0x0). Status codes 0..17 (names below).
- Timeouts as picotool's: the command 3 s, the data phase 10 s, the ack 10 s for a command
  without data (an erase can take that long) and 3 s after a data phase; control requests 1 s.
  Reboot delay 500 ms (picotool's reboot and load -x).
- Flash: 256-byte pages, 4096-byte erase sectors (picoboot_connection.h PAGE_SIZE,
  FLASH_SECTOR_ERASE_SIZE); XIP base 0x10000000.
]]
local usb = require("mpctl.usb")
local errors = require("mpctl.errors")

local M = {}

M.VID = 0x2E8A
M.PIDS = { [0x0003] = "RP2040", [0x000F] = "RP2350" }
M.MAGIC = 0x431FD10B
M.CMD = { EXCLUSIVE_ACCESS = 0x01, REBOOT = 0x02, FLASH_ERASE = 0x03, READ = 0x84, WRITE = 0x05, EXIT_XIP = 0x06,
  ENTER_CMD_XIP = 0x07, EXEC = 0x08, VECTORIZE_FLASH = 0x09, REBOOT2 = 0x0A, GET_INFO = 0x8B, OTP_READ = 0x8C,
  OTP_WRITE = 0x0D }
local CMD_NAME = {}
for k, v in pairs(M.CMD) do CMD_NAME[v] = k end
M.STATUS = { [0] = "OK", "UNKNOWN_CMD", "INVALID_CMD_LENGTH", "INVALID_TRANSFER_LENGTH", "INVALID_ADDRESS",
  "BAD_ALIGNMENT", "INTERLEAVED_WRITE", "REBOOTING", "UNKNOWN_ERROR", "INVALID_STATE", "NOT_PERMITTED",
  "INVALID_ARG", "BUFFER_TOO_SMALL", "PRECONDITION_NOT_MET", "MODIFIED_DATA", "INVALID_DATA", "NOT_FOUND",
  "UNSUPPORTED_MODIFICATION" }
M.IF_RESET, M.IF_CMD_STATUS = 0x41, 0x42
M.PAGE, M.SECTOR, M.FLASH_BASE = 256, 4096, 0x10000000
local VENDOR_IF_OUT, VENDOR_IF_IN = 0x41, 0xC1 -- bmRequestType: vendor | interface (| IN)
local T_CMD, T_DATA, T_ACK_AFTER_DATA, T_CTRL = 3, 10, 3, 1
M.REBOOT_DELAY_MS = 500

-- The PICOBOOT interface of a device info table: {number=, out=, ["in"]=}, or nil.
function M.interface_of(info)
  for _, cfg in ipairs(info.configs or {}) do
    local n = #cfg.interfaces
    for _, itf in ipairs(cfg.interfaces) do
      local a = itf.alts and itf.alts[1]
      if a and a.class == 0xFF and (n == 1 or a.number == 1) and #(a.endpoints or {}) == 2 then
        local e1, e2 = a.endpoints[1], a.endpoints[2]
        local a1 = type(e1) == "table" and e1.address or e1
        local a2 = type(e2) == "table" and e2.address or e2
        if a1 and a2 and a1 & 0x80 == 0 and a2 & 0x80 ~= 0 then
          return { number = a.number, out = a1, ["in"] = a2 }
        end
      end
    end
  end
end

function M.list(filter)
  local out = {}
  for _, info in ipairs(usb.list(filter or { vid = M.VID })) do
    if info.vid == M.VID and M.PIDS[info.pid] then out[#out + 1] = info end
  end
  return out
end

local C = {}
C.__index = C

function M.open(spec, opts)
  opts = opts or {}
  local filter = type(spec) == "string" and usb.parse_url(spec) or spec or { vid = M.VID }
  local h = usb.open(filter)
  local ok, c = pcall(function()
    local info = h:info()
    local itf = M.interface_of(info)
    local where = "usb:" .. info.path
    if not (info.vid == M.VID and M.PIDS[info.pid]) or not itf then
      errors.raise("unsupported", where, string.format("%04x:%04x is not an RP2 boot ROM in BOOTSEL (no PICOBOOT interface)",
        info.vid, info.pid), { hint = "hold BOOTSEL while plugging the board in, or use --port with the board's MicroPython port" })
    end
    return setmetatable({ h = h, info = info, iface = itf.number, ep_out = itf.out, ep_in = itf["in"], where = where,
      chip = M.PIDS[info.pid], token = 1, log = opts.log or function() end,
      stats = { bytes_out = 0, bytes_in = 0, commands = 0 } }, C)
  end)
  if not ok then h:close(); error(c, 0) end
  c.h:claim(c.iface)
  return c
end

function C:close()
  if self.h then pcall(self.h.release, self.h, self.iface); self.h:close(); self.h = nil end
end
C.__close = C.close

--- GET_COMMAND_STATUS: the status of the last command.
function C:status()
  local r = self.h:control(VENDOR_IF_IN, M.IF_CMD_STATUS, 0, self.iface, 16, T_CTRL)
  if #r < 16 then errors.raise("protocol", self.where, "command status answered " .. #r .. " bytes, not 16") end
  local token, code, cmd, busy = string.unpack("<I4I4BB", r)
  return { token = token, code = code, name = M.STATUS[code] or ("status " .. code), cmd = cmd, in_progress = busy ~= 0 }
end

--- Clears both endpoints' halts and resets the interface (what picotool does after a failure).
function C:reset()
  pcall(self.h.clear_halt, self.h, self.ep_in)
  pcall(self.h.clear_halt, self.h, self.ep_out)
  self.h:control(VENDOR_IF_OUT, M.IF_RESET, 0, self.iface, "", T_CTRL)
end

-- A failed command: the device's own status when it can still say it (a stall), then the reset so
-- the next command can run. A device that went away (kind not_found) or Ctrl-C is raised as it is.
function C:failed(e, id, token, what)
  if errors.is(e, "interrupted") or errors.is(e, "not_found") then
    if type(e) == "table" then e.cmd = CMD_NAME[id] end
    error(e, 0)
  end
  local st
  local okst = pcall(function() st = self:status() end)
  pcall(self.reset, self)
  local detail = string.format("%s %s failed: %s", CMD_NAME[id] or string.format("0x%02x", id), what or "",
    type(e) == "table" and (e.detail or e.msg) or tostring(e))
  if okst and st and st.token == token and st.code ~= 0 then
    detail = detail .. string.format("; the boot ROM says %s (%d)", st.name, st.code)
  end
  errors.raise(errors.kind(e) == "timeout" and "timeout" or "protocol", self.where, detail,
    { cmd = CMD_NAME[id], status = st and st.code, status_name = st and st.name })
end

--- One command: the 32-byte header, the data phase, the ack. Returns the IN data (or "").
function C:command(id, args, length, data, what)
  args = args or ""
  length = length or (data and #data) or 0
  local token = self.token
  self.token = (self.token + 1) & 0xFFFFFFFF
  local cmd = string.pack("<I4I4BBI2I4", M.MAGIC, token, id, #args, 0, length) .. args .. string.rep("\0", 16 - #args)
  self.stats.commands = self.stats.commands + 1
  local ok, got = pcall(function()
    self.h:bulk_out(self.ep_out, cmd, T_CMD)
    self.stats.bytes_out = self.stats.bytes_out + 32
    local back = ""
    if length > 0 then
      if id & 0x80 ~= 0 then
        back = self.h:bulk_in(self.ep_in, length, T_DATA)
        self.stats.bytes_in = self.stats.bytes_in + #back
        if #back ~= length then
          errors.raise("protocol", self.where, string.format("read %d of %d bytes", #back, length))
        end
      else
        self.h:bulk_out(self.ep_out, data, T_DATA)
        self.stats.bytes_out = self.stats.bytes_out + #data
      end
    end
    local t_ack = length == 0 and T_DATA or T_ACK_AFTER_DATA
    if id & 0x80 ~= 0 then
      self.h:bulk_out(self.ep_out, "", t_ack)
    else
      local ack = self.h:bulk_in(self.ep_in, 64, t_ack)
      if #ack ~= 0 then errors.raise("protocol", self.where, "the ack was " .. #ack .. " bytes, not a zero-length packet") end
    end
    return back
  end)
  if not ok then self:failed(got, id, token, what) end
  return got
end

function C:exclusive(mode) self:command(M.CMD.EXCLUSIVE_ACCESS, string.char(mode or 1)) end
function C:exit_xip() self:command(M.CMD.EXIT_XIP) end

function C:erase(addr, size)
  self:command(M.CMD.FLASH_ERASE, string.pack("<I4I4", addr, size), 0, nil, string.format("0x%08x+%d", addr, size))
end

function C:read(addr, size)
  return self:command(M.CMD.READ, string.pack("<I4I4", addr, size), size, nil, string.format("0x%08x+%d", addr, size))
end

function C:write(addr, data)
  self:command(M.CMD.WRITE, string.pack("<I4I4", addr, #data), #data, data, string.format("0x%08x+%d", addr, #data))
end

--- Back to the normal boot path after REBOOT_DELAY_MS. RP2040: REBOOT with dPC 0 ("reset into
--- regular boot path"); RP2350: REBOOT2 with REBOOT2_FLAG_REBOOT_TYPE_NORMAL, as picotool does
--- (it uses REBOOT2 whenever the model supports it), falling back to REBOOT if the ROM refuses it.
function C:reboot()
  if self.chip == "RP2350" then
    local ok, e = pcall(self.command, self, M.CMD.REBOOT2, string.pack("<I4I4I4I4", 0, M.REBOOT_DELAY_MS, 0, 0))
    if ok then return end
    if not (type(e) == "table" and e.status_name == "UNKNOWN_CMD") then error(e, 0) end
  end
  self:command(M.CMD.REBOOT, string.pack("<I4I4I4", 0, 0, M.REBOOT_DELAY_MS))
end

return M
