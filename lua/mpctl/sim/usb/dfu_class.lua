--[[ mpctl.sim.usb.dfu_class: the device side of the USB DFU 1.1 class (DFU spec 1.1 §6, state
diagram fig. A.1), for the simulated DFU devices. The memory behind it is a "backend" supplied by the
device model (stm32_dfu.lua: ST DfuSe; dfu11.lua: plain DFU 1.1):

  backend:download(block, data) -> status, seconds, poll_ms   -- runs when GETSTATUS is asked after DNLOAD
  backend:upload(block, length) -> status, data
  backend:manifest() -> seconds, leave (true: the device resets into its application)

Requests (bmRequestType 0x21 OUT / 0xA1 IN): DETACH 0, DNLOAD 1, UPLOAD 2, GETSTATUS 3,
CLRSTATUS 4, GETSTATE 5, ABORT 6. GETSTATUS reply: bStatus, bwPollTimeout (24-bit LE, ms), bState,
iString. States and status codes as in the spec (and anchors.md §3.3). Time is the device's own clock:
an operation started by GETSTATUS keeps the device in dfuDNBUSY until it is done, however often the
host asks. Own tables, not shared with the client (lua/mpctl/dfu).
]]
local time = require("mpctl.time")

local M = {}
M.__index = M

M.state = { appIDLE = 0, appDETACH = 1, dfuIDLE = 2, dfuDNLOAD_SYNC = 3, dfuDNBUSY = 4,
  dfuDNLOAD_IDLE = 5, dfuMANIFEST_SYNC = 6, dfuMANIFEST = 7, dfuMANIFEST_WAIT_RESET = 8,
  dfuUPLOAD_IDLE = 9, dfuERROR = 10 }
M.status = { OK = 0, errTARGET = 1, errFILE = 2, errWRITE = 3, errERASE = 4, errCHECK_ERASED = 5,
  errPROG = 6, errVERIFY = 7, errADDRESS = 8, errNOTDONE = 9, errFIRMWARE = 10, errVENDOR = 11,
  errUSBR = 12, errPOR = 13, errUNKNOWN = 14, errSTALLEDPKT = 15 }
local S, ST = M.state, M.status

function M.new(backend, opts)
  return setmetatable({ backend = backend, st = S.dfuIDLE, code = ST.OK, busy_until = 0, poll = 0,
    now = opts and opts.clock or time.now, counts = { dnload = 0, upload = 0, getstatus = 0 } }, M)
end

function M:fail(code)
  self.st, self.code = S.dfuERROR, code
  return "stall"
end

local function status_reply(code, poll_ms, state)
  poll_ms = math.max(0, math.min(0xffffff, math.floor(poll_ms + 0.5)))
  return string.pack("<BI3BB", code, poll_ms, state, 0)
end

function M:getstatus()
  self.counts.getstatus = self.counts.getstatus + 1
  local now = self.now()
  if self.st == S.dfuDNLOAD_SYNC then
    local code, secs, poll = self.backend:download(self.block, self.data)
    self.block, self.data = nil, nil
    if code ~= ST.OK then
      self.st, self.code = S.dfuERROR, code
      return "ok", status_reply(code, 0, S.dfuERROR)
    end
    self.busy_until, self.poll = now + (secs or 0), poll or 0
    self.st = S.dfuDNBUSY
    return "ok", status_reply(ST.OK, self.poll, S.dfuDNBUSY)
  elseif self.st == S.dfuDNBUSY then
    if now < self.busy_until then
      -- still busy: the same answer as the first time (the real ROM reports fixed values)
      return "ok", status_reply(ST.OK, self.poll, S.dfuDNBUSY)
    end
    self.st = S.dfuDNLOAD_IDLE
    return "ok", status_reply(ST.OK, 0, S.dfuDNLOAD_IDLE)
  elseif self.st == S.dfuMANIFEST_SYNC then
    local secs, leave = self.backend:manifest()
    self.st = S.dfuMANIFEST
    self.manifest_until, self.leave = now + (secs or 0), leave
    return "ok", status_reply(ST.OK, (secs or 0) * 1000, S.dfuMANIFEST)
  elseif self.st == S.dfuMANIFEST and not self.leave and now >= self.manifest_until then
    self.st = S.dfuIDLE -- manifestation tolerant: back to idle
  end
  return "ok", status_reply(self.code, 0, self.st)
end

function M:control(setup, data)
  local rt, req, value, _, length = string.unpack("<BBI2I2I2", setup)
  if rt & 0x60 ~= 0x20 then return "stall" end -- class requests only
  local st = self.st
  if req == 3 then return self:getstatus() end
  if req == 5 then return "ok", string.char(st) end
  if req == 4 then -- CLRSTATUS
    if st ~= S.dfuERROR then return self:fail(ST.errSTALLEDPKT) end
    self.st, self.code = S.dfuIDLE, ST.OK
    return "ok"
  end
  if req == 6 then -- ABORT
    if st == S.dfuIDLE or st == S.dfuDNLOAD_IDLE or st == S.dfuUPLOAD_IDLE or st == S.dfuDNLOAD_SYNC
      or st == S.dfuMANIFEST_SYNC then
      self.st = S.dfuIDLE
      return "ok"
    end
    return self:fail(ST.errSTALLEDPKT)
  end
  if req == 1 then -- DNLOAD
    self.counts.dnload = self.counts.dnload + 1
    if st ~= S.dfuIDLE and st ~= S.dfuDNLOAD_IDLE then return self:fail(ST.errSTALLEDPKT) end
    data = data or ""
    if #data == 0 then
      self.st = S.dfuMANIFEST_SYNC
      return "ok"
    end
    if self.backend.accept_download then
      local code = self.backend:accept_download(value, data)
      if code ~= ST.OK then return self:fail(code) end
    end
    self.block, self.data, self.st = value, data, S.dfuDNLOAD_SYNC
    return "ok"
  end
  if req == 2 then -- UPLOAD
    self.counts.upload = self.counts.upload + 1
    if st ~= S.dfuIDLE and st ~= S.dfuUPLOAD_IDLE then return self:fail(ST.errSTALLEDPKT) end
    local code, out = self.backend:upload(value, length)
    if code ~= ST.OK then return self:fail(code) end
    self.st = #out < length and S.dfuIDLE or S.dfuUPLOAD_IDLE
    return "ok", out
  end
  if req == 0 then return "ok" end -- DETACH in DFU mode: nothing to do
  return self:fail(ST.errSTALLEDPKT)
end

--- Functional descriptor (DFU 1.1 §4.1.3): bmAttributes, wDetachTimeOut, wTransferSize, bcdDFUVersion.
function M.functional(attributes, detach_ms, transfer_size, version)
  return string.pack("<BBBI2I2I2", 9, 0x21, attributes, detach_ms, transfer_size, version)
end

return M
