--[[ mpctl.dfu: USB DFU 1.1 and ST DfuSe, host side, over mpctl.usb.

  dfu.list([filter]) -> { {path=, vid=, pid=, serial=, product=, mode="dfu"|"runtime", alts={{alt=, name=, layout=}}, ...} }
  dfu.open(filter | "usb:..." , {alt=0, log=fn}) -> d     (exactly one DFU device, interface claimed)
  d:status() -> {status=, poll_ms=, state=}   d:clear_status()  d:abort()  d:ensure_idle()
  d:dnload(block, data)  d:wait_done(what, limit_s) -> status     d:upload(block, length) -> data
  DFU 1.1: d:download(data, progress) -> "idle"|"wait-reset"|"reset"   d:upload_all([max]) -> data
  DfuSe: d:set_address(a)  d:erase_page(a)  d:mass_erase()  d:read_unprotect()
         d:read(addr, size, progress) -> data   d:program(addr, data, progress)   d:leave(addr)
  d.transfer_size, d.dfuse, d.layout (alt 0 memory map), d.info (mpctl.usb info), d:close()

Facts: anchors.md §3.3 (DFU 1.1 requests, states, status codes; DfuSe commands; the STM32F4
mass-erase quirk: the ROM reports bwPollTimeout 100 ms but the erase takes up to 32 s — dfu-util
waits 35 s). GETSTATUS is repeated after the bwPollTimeout the device asks for (the spec's rule),
never sooner. Data blocks go with increasing wBlockNum from one Set Address Pointer (UM0424:
address = pointer + (wBlockNum - 2) * wTransferSize), so each block costs one DNLOAD and its status
polls, not an extra address command.
]]
local usb = require("mpctl.usb")
local errors = require("mpctl.errors")
local time = require("mpctl.time")
local layout = require("mpctl.dfu.layout")

local M = {}

M.layout = layout
M.STATE = { [0] = "appIDLE", "appDETACH", "dfuIDLE", "dfuDNLOAD-SYNC", "dfuDNBUSY", "dfuDNLOAD-IDLE",
  "dfuMANIFEST-SYNC", "dfuMANIFEST", "dfuMANIFEST-WAIT-RESET", "dfuUPLOAD-IDLE", "dfuERROR" }
M.STATUS = { [0] = "OK", "errTARGET", "errFILE", "errWRITE", "errERASE", "errCHECK_ERASED", "errPROG",
  "errVERIFY", "errADDRESS", "errNOTDONE", "errFIRMWARE", "errVENDOR", "errUSBR", "errPOR", "errUNKNOWN",
  "errSTALLEDPKT" }
local S = { appIDLE = 0, dfuIDLE = 2, dfuDNLOAD_SYNC = 3, dfuDNBUSY = 4, dfuDNLOAD_IDLE = 5,
  dfuMANIFEST_SYNC = 6, dfuMANIFEST = 7, dfuMANIFEST_WAIT_RESET = 8, dfuUPLOAD_IDLE = 9, dfuERROR = 10 }
M.S = S

local OUT, IN = 0x21, 0xA1 -- class request, recipient interface
local DETACH, DNLOAD, UPLOAD, GETSTATUS, CLRSTATUS, GETSTATE, ABORT = 0, 1, 2, 3, 4, 5, 6
local MASS_ERASE_LIMIT = 35 -- s: dfu-util's STM32F405 quirk value (anchors.md §3.3)

-- DFU interfaces of a device info table (class 0xFE subclass 1; protocol 1 runtime, 2 DFU mode).
local function dfu_alts(info)
  local out = {}
  for _, cfg in ipairs(info.configs or {}) do
    for _, itf in ipairs(cfg.interfaces) do
      for _, a in ipairs(itf.alts) do
        if a.class == 0xFE and a.subclass == 1 then
          out[#out + 1] = { interface = a.number, alt = a.alt, name = a.name, protocol = a.protocol,
            dfu = a.dfu, layout = layout.parse(a.name) }
        end
      end
    end
  end
  return out
end
M.dfu_alts = dfu_alts

function M.list(filter)
  local out = {}
  for _, info in ipairs(usb.list(filter)) do
    local alts = dfu_alts(info)
    if #alts > 0 then
      out[#out + 1] = { path = info.path, vid = info.vid, pid = info.pid, serial = info.serial,
        product = info.product, manufacturer = info.manufacturer, bus = info.bus, address = info.address,
        mode = alts[1].protocol == 1 and "runtime" or "dfu", alts = alts, info = info }
    end
  end
  return out
end

local Dev = {}
Dev.__index = Dev

function M.open(spec, opts)
  opts = opts or {}
  local filter = type(spec) == "string" and usb.parse_url(spec) or spec or {}
  local h = usb.open(filter)
  local ok, err = pcall(function()
    local info = h:info()
    local alts = dfu_alts(info)
    if #alts == 0 then
      errors.raise("unsupported", "usb:" .. info.path, string.format("%04x:%04x has no DFU interface", info.vid, info.pid),
        { hint = "put the board into its DFU bootloader first" })
    end
    local want = opts.alt or 0
    local chosen
    for _, a in ipairs(alts) do if a.alt == want then chosen = a end end
    if not chosen then errors.raise("not_found", "usb:" .. info.path, "no DFU alt setting " .. want) end
    local fd = chosen.dfu or alts[1].dfu or {}
    return setmetatable({ h = h, info = info, alts = alts, iface = chosen.interface, alt = want,
      transfer_size = opts.transfer_size or fd.transfer_size or 2048, attributes = fd.attributes or 0,
      dfuse = fd.version == 0x011A, version = fd.version, layout = chosen.layout,
      where = "usb:" .. info.path, log = opts.log or function() end,
      stats = { dnload = 0, upload = 0, getstatus = 0, erased = 0, bytes_out = 0, bytes_in = 0 } }, Dev)
  end)
  if not ok then h:close(); error(err, 0) end
  local d = err
  d.h:claim(d.iface)
  d.h:set_alt(d.iface, d.alt)
  return d
end

function Dev:close()
  if self.h then pcall(self.h.release, self.h, self.iface); self.h:close(); self.h = nil end
end
Dev.__close = Dev.close

function Dev:fail(kind, detail, extra)
  errors.raise(kind, self.where, detail, extra)
end

function Dev:status()
  self.stats.getstatus = self.stats.getstatus + 1
  local r = self.h:control(IN, GETSTATUS, 0, self.iface, 6, 5)
  if #r < 6 then self:fail("protocol", "GETSTATUS answered " .. #r .. " bytes, not 6") end
  local st, poll, state = string.unpack("<BI3B", r)
  return { status = st, poll_ms = poll, state = state }
end

function Dev:clear_status() self.h:control(OUT, CLRSTATUS, 0, self.iface, "", 5) end
function Dev:abort() self.h:control(OUT, ABORT, 0, self.iface, "", 5) end
function Dev:get_state() return self.h:control(IN, GETSTATE, 0, self.iface, 1, 5):byte(1) end

--- Back to dfuIDLE from wherever a previous run left the device (pydfu: up to 4 tries).
function Dev:ensure_idle()
  for _ = 1, 4 do
    local s = self:status()
    if s.state == S.dfuIDLE then return end
    if s.state == S.dfuERROR then
      self.log(string.format("device was in dfuERROR (%s): clearing", M.STATUS[s.status] or s.status))
      self:clear_status()
    else
      self:abort()
    end
  end
  local s = self:status()
  if s.state ~= S.dfuIDLE then
    self:fail("protocol", "the device does not return to dfuIDLE (state " .. (M.STATE[s.state] or s.state) .. ")",
      { hint = "reset the board into its DFU bootloader again" })
  end
end

function Dev:dnload(block, data)
  self.stats.dnload = self.stats.dnload + 1
  self.stats.bytes_out = self.stats.bytes_out + #data
  local ok, e = pcall(self.h.control, self.h, OUT, DNLOAD, block, self.iface, data, 5)
  if not ok then
    if errors.is(e, "protocol") then
      -- a stalled DNLOAD: the device says why in GETSTATUS
      local sok, s = pcall(self.status, self)
      local why = sok and (M.STATUS[s.status] or tostring(s.status)) or "no status"
      self:fail("protocol", string.format("the device refused DNLOAD block %d (%s)", block, why), { status = sok and s.status or nil })
    end
    error(e, 0)
  end
end

--- Polls GETSTATUS until the device leaves dfuDNBUSY, sleeping bwPollTimeout between polls.
--- Raises when it ends in dfuERROR. limit: seconds before giving up.
function Dev:wait_done(what, limit)
  local deadline = time.now() + (limit or 10)
  while true do
    local s = self:status()
    if s.state == S.dfuERROR or s.status ~= 0 then
      local name = M.STATUS[s.status] or tostring(s.status)
      pcall(self.clear_status, self)
      self:fail("protocol", string.format("%s failed: the device reports %s", what, name), { status = s.status, status_name = name })
    end
    if s.state ~= S.dfuDNBUSY and s.state ~= S.dfuDNLOAD_SYNC then return s end
    if time.now() > deadline then
      self:fail("timeout", string.format("%s: the device stays busy after %.0f s", what, limit or 10),
        { hint = "reset the board into DFU mode and run the same command again" })
    end
    time.sleep(s.poll_ms / 1000)
  end
end

function Dev:upload(block, length)
  self.stats.upload = self.stats.upload + 1
  local data = self.h:control(IN, UPLOAD, block, self.iface, length, 5)
  self.stats.bytes_in = self.stats.bytes_in + #data
  return data
end

function Dev:detach(ms)
  pcall(self.h.control, self.h, OUT, DETACH, ms or 1000, self.iface, "", 2)
end

-- ---- DfuSe -----------------------------------------------------------------------------------

function Dev:command(bytes, what, limit)
  self:dnload(0, bytes)
  local s = self:status() -- starts the command: dfuDNBUSY
  if s.state == S.dfuERROR or s.status ~= 0 then
    pcall(self.clear_status, self)
    self:fail("protocol", string.format("%s refused: %s", what, M.STATUS[s.status] or s.status), { status = s.status })
  end
  if s.state == S.dfuDNBUSY then
    time.sleep(s.poll_ms / 1000)
    self:wait_done(what, limit)
  end
end

function Dev:set_address(addr)
  self:command(string.pack("<BI4", 0x21, addr), string.format("set address 0x%08X", addr))
  self.pointer = addr
end

function Dev:erase_page(addr)
  self:command(string.pack("<BI4", 0x41, addr), string.format("erase at 0x%08X", addr), 10)
  self.stats.erased = self.stats.erased + 1
end

function Dev:mass_erase()
  self:command("\x41", "mass erase", MASS_ERASE_LIMIT + 5)
end

--- Read unprotect: the chip erases all of its flash and resets. Only on explicit request.
function Dev:read_unprotect()
  -- the device answers, erases and resets: losing it mid-way is the expected end (AN3156)
  local ok, e = pcall(self.command, self, "\x92", "read unprotect", MASS_ERASE_LIMIT + 5)
  if not ok and not errors.is(e, "not_found") and not errors.is(e, "io") then error(e, 0) end
end

--- Reads size bytes at addr (UPLOAD from one address pointer, wTransferSize blocks).
function Dev:read(addr, size, progress)
  self:ensure_idle()
  self:set_address(addr)
  self:abort() -- UPLOAD starts from dfuIDLE
  local chunks, got, block = {}, 0, 2
  local ts = self.transfer_size
  while got < size do
    local n = math.min(ts, size - got)
    -- blocks are addressed in wTransferSize units: ask whole blocks, keep what is wanted
    local data = self:upload(block, ts)
    if #data == 0 then self:fail("protocol", string.format("UPLOAD ended early at 0x%08X", addr + got)) end
    chunks[#chunks + 1] = data:sub(1, n)
    got, block = got + n, block + 1
    if progress then progress(got, size) end
  end
  self:abort()
  return table.concat(chunks)
end

--- True when flash at addr already holds data. Reads block by block and stops at the first
--- difference, so a sector that must be rewritten costs one UPLOAD, not all of them.
function Dev:holds(addr, data)
  self:ensure_idle()
  self:set_address(addr)
  self:abort()
  local ts, pos, block, same = self.transfer_size, 1, 2, true
  while pos <= #data do
    local want = data:sub(pos, pos + ts - 1)
    local got = self:upload(block, ts):sub(1, #want)
    if got ~= want then same = false; break end
    pos, block = pos + ts, block + 1
  end
  self:abort()
  return same
end

--- Programs data at addr (the area must be erased). Raises with e.offset = first address not written.
function Dev:program(addr, data, progress)
  local ts = self.transfer_size
  self:set_address(addr)
  local block, pos = 2, 1
  while pos <= #data do
    local chunk = data:sub(pos, pos + ts - 1)
    local ok, e = pcall(function()
      self:dnload(block, chunk)
      self:wait_done(string.format("write at 0x%08X", addr + pos - 1), 10)
    end)
    if not ok then
      if type(e) == "table" then e.offset = addr + pos - 1 end
      error(e, 0)
    end
    pos, block = pos + #chunk, block + 1
    if progress then progress(pos - 1, #data) end
  end
end

-- ---- plain DFU 1.1 (no DfuSe) -----------------------------------------------------------------

--- Downloads a whole image (DFU 1.1 §6.1): blocks numbered from 0 in wTransferSize pieces, each
--- followed by GETSTATUS polling; a zero-length DNLOAD starts manifestation, which ends in
--- dfuIDLE (manifestation tolerant) or with the device resetting (dfuMANIFEST-WAIT-RESET).
function Dev:download(data, progress)
  self:ensure_idle()
  local ts, pos, block = self.transfer_size, 1, 0
  while pos <= #data do
    local chunk = data:sub(pos, pos + ts - 1)
    local ok, e = pcall(function()
      self:dnload(block & 0xFFFF, chunk)
      self:wait_done(string.format("download block %d", block), 10)
    end)
    if not ok then
      if type(e) == "table" then e.offset = pos - 1 end
      error(e, 0)
    end
    pos, block = pos + #chunk, block + 1
    if progress then progress(pos - 1, #data) end
  end
  self:dnload(block & 0xFFFF, "")
  local deadline = time.now() + 30
  while true do
    local ok, s = pcall(self.status, self)
    if not ok then return "reset" end -- the device left to manifest: normal without manifestation tolerance
    if s.state == S.dfuERROR or s.status ~= 0 then
      self:fail("protocol", "manifestation failed: " .. (M.STATUS[s.status] or s.status), { status = s.status })
    end
    if s.state == S.dfuIDLE then return "idle" end
    if s.state == S.dfuMANIFEST_WAIT_RESET then return "wait-reset" end
    if time.now() > deadline then self:fail("timeout", "manifestation does not end") end
    time.sleep(math.max(s.poll_ms, 1) / 1000)
  end
end

--- Uploads the device's image (DFU 1.1 §6.2): blocks from 0 until a short one, or max bytes.
function Dev:upload_all(max)
  self:ensure_idle()
  local ts, out, got, block = self.transfer_size, {}, 0, 0
  while not max or got < max do
    local data = self:upload(block & 0xFFFF, ts)
    out[#out + 1] = data
    got, block = got + #data, block + 1
    if #data < ts then break end
  end
  if max and got >= max then self:abort() end
  local all = table.concat(out)
  return max and all:sub(1, max) or all
end

--- Leaves DFU and starts the application (DfuSe: address, then a zero-length DNLOAD, then
--- GETSTATUS; the device may reset before it answers, which is not an error: dfu-util's
--- QUIRK_DFUSE_LEAVE).
function Dev:leave(addr)
  if self.dfuse then self:set_address(addr or 0x08000000) end
  self:dnload(self.dfuse and 2 or 0, "")
  pcall(self.status, self)
end

return M
