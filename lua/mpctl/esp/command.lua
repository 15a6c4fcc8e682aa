-- SLIP command layer of the ESP serial loader (ROM and flasher stub).
-- Wire format from esptool `loader.py` and `docs/en/advanced-topics/serial-protocol.rst`
-- (anchors.md §3.1): request <BBHI dir=0, op, len, checksum> + data; response <BBHI dir=1, op,
-- len, value> + data whose status bytes follow the expected payload.
local slip = require("mpctl.slip")
local errors = require("mpctl.errors")

local M = {}

M.OP = {
  FLASH_BEGIN = 0x02, FLASH_DATA = 0x03, FLASH_END = 0x04,
  MEM_BEGIN = 0x05, MEM_END = 0x06, MEM_DATA = 0x07,
  SYNC = 0x08, WRITE_REG = 0x09, READ_REG = 0x0A,
  SPI_SET_PARAMS = 0x0B, SPI_ATTACH = 0x0D, READ_FLASH_SLOW = 0x0E, CHANGE_BAUDRATE = 0x0F,
  FLASH_DEFL_BEGIN = 0x10, FLASH_DEFL_DATA = 0x11, FLASH_DEFL_END = 0x12,
  SPI_FLASH_MD5 = 0x13, GET_SECURITY_INFO = 0x14,
  ERASE_FLASH = 0xD0, ERASE_REGION = 0xD1, READ_FLASH = 0xD2, RUN_USER_CODE = 0xD3,
}
M.OP_NAME = {}
for k, v in pairs(M.OP) do M.OP_NAME[v] = k end

-- ROM/stub error codes (serial-protocol.rst); stub errors are 0xC0.. (esptool stub_flasher.h).
M.ERR = {
  [0x05] = "invalid message (command not supported)", [0x06] = "failed to act on message",
  [0x07] = "invalid CRC in message", [0x08] = "flash write error", [0x09] = "flash read error",
  [0x0A] = "flash read length error", [0x0B] = "deflate error", [0x0C] = "deflate error",
  [0x0D] = "deflate error", [0x0E] = "RAM size error", [0x0F] = "RAM address error",
  [0x64] = "invalid parameter", [0x65] = "invalid format", [0x66] = "description too long",
  [0x67] = "bad encoding description", [0x69] = "insufficient storage",
  [0xC0] = "stub: bad data length", [0xC1] = "stub: bad data checksum", [0xC2] = "stub: bad block size",
  [0xC3] = "stub: invalid command", [0xC4] = "stub: SPI operation failed", [0xC5] = "stub: SPI unlock failed",
  [0xC6] = "stub: not in flash mode", [0xC7] = "stub: inflate error", [0xC8] = "stub: not enough data",
  [0xC9] = "stub: too much data", [0xFF] = "stub: command not implemented",
}
M.ROM_INVALID_RECV_MSG = 0x05
M.CHECKSUM_SEED = 0xEF

-- XOR of every byte, seeded with 0xEF (loader.py ESP_CHECKSUM_MAGIC). Eight bytes per step.
function M.checksum(data, state)
  state = state or M.CHECKSUM_SEED
  local n = #data
  local i = 1
  local acc = 0
  while i + 7 <= n do
    acc = acc ~ string.unpack("<i8", data, i)
    i = i + 8
  end
  for s = 0, 56, 8 do state = state ~ ((acc >> s) & 0xFF) end
  for j = i, n do state = state ~ data:byte(j) end
  return state & 0xFF
end

function M.encode(op, data, chk)
  data = data or ""
  return string.pack("<BBHI4", 0, op, #data, chk or 0) .. data
end

-- Payload of MEM_DATA / FLASH_DATA / FLASH_DEFL_DATA: <IIII len, seq, 0, 0> + data; the checksum
-- field of the request covers only `data`.
function M.data_packet(op, seq, data)
  return M.encode(op, string.pack("<I4I4I4I4", #data, seq, 0, 0) .. data, M.checksum(data))
end

function M.decode(frame)
  if #frame < 8 then return nil end
  local dir, op, len, value = string.unpack("<BBHI4", frame)
  if dir ~= 1 then return nil end
  return { op = op, len = len, value = value, data = frame:sub(9) }
end

local function hexs(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
M.hex = hexs

-- A connection: a port plus the loader state the command layer needs.
local Conn = {}
Conn.__index = Conn

function M.new(port, opts)
  opts = opts or {}
  return setmetatable({
    port = port,
    status_len = opts.status_len or 2, -- 4 on ESP32+ ROM; the 2 meaningful ones come first
    tx = 0, rx = 0, retries = 0,
    timeouts = 0, settled = 0,         -- commands that timed out; how many of them settle() waited out       -- bytes on the wire (SLIP encoded), for the summary/bench
    trace = opts.trace,
    -- Multiplies every reply timeout: >1 for slow remote links (RFC 2217 over a WAN, esptool
    -- #628/#704), <1 for a simulator with timing off, where an answer is due at once.
    tscale = opts.timeout_scale or 1,
  }, Conn)
end

-- A reply timeout in seconds, scaled for this link.
function Conn:t(seconds) return seconds * self.tscale end

function Conn:write_raw(packet)
  local frame = slip.encode(packet)
  self.tx = self.tx + #frame
  if self.trace then self.trace("tx", packet) end
  self.port:write(frame)
end

function Conn:send(op, data, chk)
  self:write_raw(M.encode(op, data, chk))
end

-- Returns frame or nil, kind, message. A timeout is not an error at this layer. Kinds come from
-- the error object (mpctl.errors), never from its text: a port URL may itself contain "timeout".
function Conn:read_frame(timeout)
  local ok, frame = pcall(slip.read_frame, self.port, timeout)
  if not ok then
    local kind = errors.kind(frame)
    if kind == "interrupted" then error(frame, 0) end
    local msg = tostring(frame)
    if kind == "protocol" then return nil, "garbled", msg end
    if kind == "timeout" or kind == "eof" then return nil, kind, msg end
    return nil, "io", msg
  end
  self.rx = self.rx + #frame + 2
  if self.trace then self.trace("rx", frame) end
  return frame
end

-- Drop input that arrived before a command is sent. Only a command that timed out can still
-- have an answer on its way (self.outstanding counts them), so only then is there any.
function Conn:discard_stale()
  if (self.outstanding or 0) > 0 and self.port.pending and self.port:pending() > 0 then
    self.outstanding = self.outstanding - 1
    self.stale = (self.stale or 0) + 1
    self.port:flush_input()
  end
end

-- Swallow frames still in flight (the ROM repeats an unsupported-command reply ~8 times;
-- esptool drains them, esptool-js readPacket likewise) so they are not read as the next answer.
function Conn:drain(quiet_for)
  quiet_for = quiet_for or 0.02 -- the repeats come back to back; a 14-byte frame is 1.2 ms at 115200
  local n = 0
  while n < 64 do
    local f = self:read_frame(quiet_for)
    if not f then break end
    n = n + 1
  end
  return n
end

-- Whether a command timed out since the last settle(): its answer may still be on its way and
-- would be read as the answer to the next command of the same kind.
function Conn:unsettled() return self.timeouts ~= self.settled end

-- Read and discard until the line has been quiet for `quiet` seconds: every late answer that was
-- coming has come. Costs `quiet` seconds, so only callers that must not be fooled by a late answer
-- (mpctl.esp.guard: an MD5 reply names no range) use it, and only after a timeout.
function Conn:settle(quiet)
  for _ = 1, 4096 do
    local f, kind = self:read_frame(quiet)
    if not f and kind ~= "garbled" then break end
  end
  self.outstanding = 0
  self.settled = self.timeouts
end

-- Wait for the response to `op`. Up to 100 unrelated frames are skipped (esptool loops 100 times
-- too: the ESP8266 ROM emits extra SYNC replies). Returns resp or nil, kind, message.
function Conn:response(op, timeout)
  for _ = 1, 100 do
    local frame, kind, msg = self:read_frame(timeout)
    if not frame then
      if kind == "timeout" then
        self.outstanding = (self.outstanding or 0) + 1
        self.timeouts = self.timeouts + 1
      end
      return nil, kind, msg
    end
    local r = M.decode(frame)
    if r then
      if r.op == op then return r end
      -- an error reply to something else we sent earlier and that timed out
      if #r.data >= 2 and r.data:byte(1) ~= 0 and r.data:byte(2) == M.ROM_INVALID_RECV_MSG then
        self:drain()
        return nil, "unsupported", "command not supported by the loader"
      end
    end
  end
  return nil, "io", "no response to " .. (M.OP_NAME[op] or op) .. " among 100 frames"
end

-- Check the status bytes that follow `resp_len` bytes of payload. Returns payload, value or
-- nil, kind, message.
function Conn:check(op, resp, resp_len)
  resp_len = resp_len or 0
  local data = resp.data
  if #data < resp_len + 2 then
    if #data >= 2 and data:byte(1) ~= 0 then
      resp_len = 0 -- a failure reply carries only the status
    else
      return nil, "short", string.format("%s: expected %d data bytes + status, got %d",
        M.OP_NAME[op] or op, resp_len, #data)
    end
  end
  local status, err = data:byte(resp_len + 1), data:byte(resp_len + 2)
  if status ~= 0 then
    local kind = err == M.ROM_INVALID_RECV_MSG and "unsupported" or "status"
    if kind == "unsupported" then self:drain() end
    return nil, kind, string.format("%s failed: status %d, error 0x%02X (%s)", M.OP_NAME[op] or op,
      status, err or 0, M.ERR[err] or "unknown error"), err, status
  end
  return data:sub(1, resp_len), resp.value
end

-- Send a command and check its reply. Returns payload, value or nil, kind, message, code.
function Conn:try(op, data, opts)
  opts = opts or {}
  -- A reply that came after its command timed out would be read as this command's answer (an
  -- MD5 of another range, an ack for another block): whatever already arrived is stale.
  self:discard_stale()
  if opts.raw then self:write_raw(opts.raw) else self:send(op, data, opts.chk) end
  local resp, kind, msg = self:response(op, self:t(opts.timeout or 3))
  if not resp then
    return nil, kind, string.format("%s: %s", M.OP_NAME[op] or op, msg or kind)
  end
  return self:check(op, resp, opts.resp_len)
end

-- Failures worth sending the same command again for: lost or mangled frames on the wire
-- (ROM 0x07 / stub 0xC0, 0xC1 are the loader's own "that frame arrived damaged" answers).
-- The ROM also answers a mangled frame with 0x05 "invalid message", the same code it uses for an
-- unknown command: one more try costs a round trip and tells the two apart.
M.RETRYABLE_KIND = { timeout = true, garbled = true, short = true, unsupported = true }
M.RETRYABLE_CODE = { [0x07] = true, [0xC0] = true, [0xC1] = true }

-- Replies carry no checksum, so a status other than 0/1 or an error code no loader uses is a
-- reply damaged on the way back; the command is worth sending again.
function M.damaged_status(code, status)
  if M.RETRYABLE_CODE[code] or not M.ERR[code] then return true end
  return status ~= nil and status ~= 1
end

-- The error kind (mpctl.errors) a failed command becomes, by what this layer saw.
M.ERROR_KIND = { timeout = "timeout", eof = "eof", io = "io", garbled = "protocol", short = "protocol",
  status = "protocol", unsupported = "unsupported" }

-- Raise a structured error for a failed command: kind, where (the port), detail, and the
-- opcode and loader error code as extra fields (e.op, e.code) for callers that branch on them.
function Conn:raise(op, kind, msg, code, extra)
  local t = { op = op, code = code, wire = kind }
  for k, v in pairs(extra or {}) do t[k] = v end
  local detail = tostring(msg):gsub(";%s*last bytes seen.*$", "")
  errors.raise(M.ERROR_KIND[kind] or "protocol", self.port.name or "port", detail, t)
end

-- Like try, but retried on wire damage (opts.retries, default 3) and raising a structured error
-- (kind timeout / eof / io / protocol / unsupported) naming the port.
function Conn:command(op, data, opts)
  opts = opts or {}
  local retries = opts.retries or 3
  while true do
    local payload, value, msg, code, status = self:try(op, data, opts)
    if payload ~= nil then return payload, value, code end
    local kind = value
    if retries <= 0 or not (M.RETRYABLE_KIND[kind] or (kind == "status" and M.damaged_status(code, status))) then
      self:raise(op, kind, msg, code)
    end
    retries = retries - 1
    self.retries = self.retries + 1
    self:drain(0.05)
  end
end

function Conn:read_reg(addr, timeout)
  local _, value = self:command(M.OP.READ_REG, string.pack("<I4", addr), { timeout = timeout })
  return value
end

function Conn:write_reg(addr, value, mask, delay_us)
  self:command(M.OP.WRITE_REG, string.pack("<I4I4I4I4", addr, value, mask or 0xFFFFFFFF, delay_us or 0))
end

-- SYNC: 07 07 12 20 + 32 x 55 (loader.py sync). The ROM answers up to 8 times with a non-zero
-- value (0x20120707 in serial-protocol.rst's trace); the stub once, with value 0
-- (sync_stub_detected). Replies carry no checksum, so only a well-formed one counts: length
-- field equal to the data received, data = the status alone (2 bytes: stub, ESP8266 ROM; 4:
-- ESP32-family ROMs), all zero. A damaged error reply's value 0 must not pass for the stub.
M.SYNC_PAYLOAD = "\7\7\18\32" .. string.rep("\85", 32)

function M.sync_value(r)
  if not r or r.op ~= M.OP.SYNC or r.len ~= #r.data then return nil end
  if (#r.data ~= 2 and #r.data ~= 4) or r.data:find("[^%z]") then return nil end
  return r.value
end

-- Returns the loader's SYNC value (0 = stub, else ROM) or nil when no well-formed reply came.
-- One ROM reply among the replies makes it the ROM: the stub never sends a non-zero value.
function Conn:sync(timeout)
  self:send(M.OP.SYNC, M.SYNC_PAYLOAD)
  local first, rom
  for i = 1, 8 do
    local resp = self:response(M.OP.SYNC, i == 1 and (timeout or 0.1) or 0.1)
    if not resp then break end
    local v = M.sync_value(resp)
    if v ~= nil then
      first = first or v
      if v ~= 0 then rom = v end
    end
  end
  return rom or first
end

return M
