--[[ mpctl.dfu.target: the DFU family driver of the target interface (PLAN.md Contract 3), so backup,
history, rollback and the flash recipes work for Pyboards and STM32 boards in DFU mode.

connect: a DFU device named by the port (usb:...), else the one DFU device present, else a board
running MicroPython (its CDC port, F055:9800, given or found) sent to its bootloader with
machine.bootloader() over the raw REPL; else the person is told what to do and the driver waits.

write: reads the target sectors back (UPLOAD, stopping at a sector's first difference), compares,
erases and programs only the sectors that differ (STM32F4 sector erase is where the time goes: 0.4-2 s each, DS8626), then reads back
everything written. The whole check happens before the first erase: every part must lie in
erasable, writeable sectors of the alt-0 memory map the device reports.
]]
local dfu = require("mpctl.dfu")
local usb = require("mpctl.usb")
local errors = require("mpctl.errors")
local time = require("mpctl.time")

local M = { family = "dfu" }

local RESUME = "run the same command again to resume"

local T = {}
T.__index = T

local function ids(board, mode)
  local out = {}
  for _, u in ipairs(board.usb or {}) do
    if (u.mode or "dfu") == mode then out[#out + 1] = u end
  end
  return out
end

--- The tty of a USB device (by sysfs port path): /sys/bus/usb/devices/<path>:1.N/tty/<name>.
M.tty_of = usb.tty_of


-- The board's DFU devices; at = a USB path: only the device there (nothing else is opened).
local function dfu_present(board, at)
  local out = {}
  for _, d in ipairs(dfu.list(at and { path = at } or nil)) do
    if d.mode == "dfu" then
      local match = #ids(board, "dfu") == 0
      for _, u in ipairs(ids(board, "dfu")) do if u.vid == d.vid and u.pid == d.pid then match = true end end
      if match then out[#out + 1] = d end
    end
  end
  return out
end

-- machine.bootloader() over the raw REPL: the board resets into its DFU bootloader (target.bootloader_via_repl).
local function enter_bootloader(tty, log) require("mpctl.target").bootloader_via_repl(tty, log) end

local function wait_dfu(board, seconds, at)
  local function present() return dfu_present(board, at) end
  return require("mpctl.target").wait_usb(present, ids(board, "dfu"), seconds, at)
end

-- After machine.bootloader() on a MicroPython port: the board's DFU device, which comes up at
-- the USB path the tty sat on (`at`, read before the tty went away: with several boards entering
-- DFU at once, as in a station, "the one DFU device present" is not this board's, and opening
-- the others is not ours to do). A tty whose USB path is unknown (at = nil): the one present.
local function dfu_after_bootloader(board, at, opts, where)
  local found = wait_dfu(board, opts.wait or 15, at)
  if #found ~= 1 then
    errors.raise("timeout", where, "no DFU device appeared" .. (at and (" at usb:" .. at) or "") .. " after machine.bootloader()",
      { hint = M.how_to_enter(board) })
  end
  return { path = found[1].path }
end

function M.how_to_enter(board)
  return board.dfu_entry or
    "connect the DFU/BOOT0 pin to 3V3 and press RST (Pyboard v1.x), or hold USR and press RST until the LED turns white (mboot boards)"
end

-- --port sim://pyboard[?k=v&...]: the whole command runs again under the simulator (target.simulated).
local function simulated(port) return require("mpctl.target").simulated(port) end

function M.connect(ctx)
  -- ctx.log is target.connect's log(level, fmt, ...); this driver and mpctl.dfu log whole lines
  local board, log = ctx.board, function() end
  if ctx.log then log = function(line) ctx.log("info", "%s", line) end end
  local opts = ctx.opts or {}
  local port = ctx.port
  if type(port) == "string" and port:match("^sim://") and simulated(port) then port = nil end
  local spec
  if type(port) == "string" and port:match("^usb:") then
    local filter = usb.parse_url(port)
    local list = usb.list(filter)
    if #list == 1 and #dfu.dfu_alts(list[1]) == 0 then
      local tty = M.tty_of(list[1].path)
      if not tty then errors.raise("unsupported", port, "neither a DFU device nor a serial port") end
      enter_bootloader(tty, log)
      spec = dfu_after_bootloader(board, list[1].path, opts, port)
    else
      spec = filter
    end
  elseif type(port) == "string" and port ~= "" then
    local at = require("mpctl.many.identity").usb_path(port)
    enter_bootloader(port, log)
    spec = dfu_after_bootloader(board, at, opts, port)
  else
    local found = dfu_present(board)
    if #found > 1 then
      local names = {}
      for _, d in ipairs(found) do names[#names + 1] = string.format("usb:%s (%04x:%04x %s)", d.path, d.vid, d.pid, d.serial or "") end
      errors.raise("usage", "usb", #found .. " DFU devices are connected: " .. table.concat(names, ", "),
        { hint = "name one with --port usb:BUS-PATH or usb:serial=SERIAL" })
    end
    if #found == 0 then
      local tty, info = require("mpctl.target").app_tty(ids(board, "app")) -- the lone MicroPython board, if one
      if tty then
        enter_bootloader(tty, log)
        found = wait_dfu(board, opts.wait or 15, info and info.path)
      end
    end
    if #found == 0 then
      local secs = tonumber(opts.wait) or 120
      log(string.format("no board in DFU mode: %s. Waiting up to %d s ...", M.how_to_enter(board), secs))
      found = wait_dfu(board, secs)
      if #found == 0 then
        errors.raise("timeout", "usb", "no DFU device appeared in " .. secs .. " s", { hint = M.how_to_enter(board) })
      end
    end
    spec = { path = found[1].path }
  end
  local d = dfu.open(spec, { alt = 0, log = log })
  d:ensure_idle()
  if not d.layout then
    d:close()
    errors.raise("unsupported", d.where, "alt 0 has no DfuSe memory map in its name (plain DFU devices are not flashed by this driver)")
  end
  log(string.format("DFU device %04x:%04x at usb:%s, %s, %s", d.info.vid, d.info.pid, d.info.path,
    d.dfuse and "DfuSe" or "DFU 1.1", d.alts[1].name or ""))
  return setmetatable({ family = "dfu", board = board, d = d, log = log, opts = opts }, T)
end

--- A MicroPython-like image for firmware=demo and the bench: a Cortex-M vector table (initial SP at
--- the top of SRAM, reset handler in flash, Thumb bit) so the ROM's leave jumps to it, then text and
--- code-like bytes from a seeded generator (the same seed gives the same image).
function M.demo_image(board, size, seed)
  size = size or 500 * 1024
  local x = seed or 1
  local t = { string.pack("<I4I4", 0x20020000, (board and board.offset or 0x08000000) + 0x401) }
  local banner = "MicroPython demo image for " .. (board and board.id or "STM32") .. "\0"
  local n = #t[1]
  while n < size do
    local piece
    if n % 4096 == 8 then
      piece = banner
    else
      local b = {}
      for i = 1, 256 do x = (x * 1103515245 + 12345) & 0x7fffffff; b[i] = string.char((x >> 16) & 255) end
      piece = table.concat(b)
    end
    t[#t + 1] = piece
    n = n + #piece
  end
  return table.concat(t):sub(1, size)
end

--- What a firmware file puts where, for rollback and target.image: .dfu (its elements' addresses),
--- .hex (its records'), .bin at the board's flash start; refused when corrupt or for another VID:PID.
function M.parts(path, board, opts)
  local dfu_id = ids(board, "dfu")[1] or {}
  return require("mpctl.dfu.file").load(path, { address = opts and opts.address, base = board.offset,
    vid = dfu_id.vid, pid = dfu_id.pid })
end

function T:identify()
  local base, size = dfu.layout.total(self.d.layout)
  return { chip = self.board.chip, flash_size = size, flash_base = base, id = self.d.info.serial,
    usb = string.format("%04x:%04x", self.d.info.vid, self.d.info.pid), path = self.d.info.path }
end

--- Every part inside erasable, writeable sectors of the device's map; nothing touched otherwise.
function T:check_image(parts)
  local map = self.d.layout
  local base, size = dfu.layout.total(map)
  for _, p in ipairs(parts) do
    if #p.data == 0 then errors.raise("refused", p.name or "image", "an empty part") end
    if p.offset < base or p.offset + #p.data > base + size then
      errors.raise("refused", p.name or "image", string.format("0x%08X..0x%08X is outside the flash (0x%08X, %d KiB)",
        p.offset, p.offset + #p.data, base, size // 1024), { hint = "nothing was erased; check the file and address=" })
    end
    local secs, bad = dfu.layout.sectors_for(map, p.offset, #p.data)
    if not secs then errors.raise("refused", p.name or "image", string.format("0x%08X is not in the device's memory map", bad)) end
    for _, s in ipairs(secs) do
      if not (s.erasable and s.writable) then
        errors.raise("refused", p.name or "image", string.format("sector 0x%08X is read-only", s.addr),
          { hint = "nothing was erased" })
      end
    end
  end
end

function T:read(addr, size, opts)
  return self.d:read(addr, size, opts and opts.progress)
end

local function sector_list(map, parts)
  local list, seen = {}, {}
  for _, p in ipairs(parts) do
    for _, s in ipairs(dfu.layout.sectors_for(map, p.offset, #p.data)) do
      if not seen[s.addr] then seen[s.addr] = true; list[#list + 1] = s end
    end
  end
  table.sort(list, function(a, b) return a.addr < b.addr end)
  return list
end

-- The bytes parts put into sector s, as {offset, data} pieces.
local function pieces_in(parts, s)
  local out = {}
  for _, p in ipairs(parts) do
    local a = math.max(p.offset, s.addr)
    local b = math.min(p.offset + #p.data, s.addr + s.size)
    if a < b then out[#out + 1] = { offset = a, data = p.data:sub(a - p.offset + 1, b - p.offset) } end
  end
  return out
end

function T:write(parts, opts)
  opts = opts or {}
  self:check_image(parts)
  local d, t0 = self.d, time.now()
  local st0 = { out = d.stats.bytes_out, inb = d.stats.bytes_in }
  local sectors = sector_list(d.layout, parts)
  local raw = 0
  for _, p in ipairs(parts) do raw = raw + #p.data end
  local written, erased, skipped = 0, 0, 0
  local programmed = {} -- pieces written now: the ones verify reads back (the others were just compared)
  for _, s in ipairs(sectors) do
    local pieces = pieces_in(parts, s)
    local same = not opts.erased
    if same then
      for _, pc in ipairs(pieces) do
        if not d:holds(pc.offset, pc.data) then same = false; break end
      end
    end
    if same then
      skipped = skipped + 1
    else
      local ok, e = pcall(function()
        if not opts.erased then
          d:ensure_idle()
          d:erase_page(s.addr)
          erased = erased + 1
        end
        for _, pc in ipairs(pieces) do
          d:program(pc.offset, pc.data, opts.progress)
          written = written + #pc.data
          programmed[#programmed + 1] = pc
        end
      end)
      if not ok then
        if type(e) == "table" then
          e.offset = e.offset or s.addr
          e.hint = RESUME
          if e.msg and not e.msg:find(RESUME, 1, true) then
            e.msg = string.format("%s (flash known good up to 0x%08X); %s", e.msg, e.offset, RESUME)
          end
        end
        error(e, 0)
      end
    end
  end
  local verified, verify_skipped = false, opts.verify == false
  if not verify_skipped then
    -- Everything written is read back. Sectors skipped were read and compared equal above, so
    -- with opts.erased (nothing compared first) every part is read back.
    for _, p in ipairs(opts.erased and parts or programmed) do
      local back = d:read(p.offset, #p.data)
      if back ~= p.data then
        local i = 1
        while i <= #back and back:byte(i) == p.data:byte(i) do i = i + 1 end
        errors.raise("failed", d.where, string.format("verify: flash differs from the image at 0x%08X", p.offset + i - 1),
          { offset = p.offset + i - 1, hint = RESUME })
      end
    end
    verified = true
  end
  return { raw = raw, sent = written, written = written, wire = (d.stats.bytes_out - st0.out) + (d.stats.bytes_in - st0.inb),
    seconds = time.now() - t0, verified = verified, verify_skipped = verify_skipped,
    sectors_erased = erased, sectors_skipped = skipped,
    -- Flash outside the image is not read back, so nothing is claimed about it; note that an
    -- erased sector loses its bytes past the image's end (STM32 erases whole sectors).
    outside = "skipped", outside_why = "DFU writes do not read back the flash outside the image" }
end

function T:erase(addr, size)
  local secs = dfu.layout.sectors_for(self.d.layout, addr, size)
  if not secs then errors.raise("refused", self.d.where, string.format("0x%08X+%d is not in the memory map", addr, size)) end
  for _, s in ipairs(secs) do self.d:ensure_idle(); self.d:erase_page(s.addr) end
end

function T:erase_all()
  self.d:ensure_idle()
  self.d:mass_erase()
end

--- Leaves DFU; returns the CDC port of the board's MicroPython once it has enumerated.
function T:reset_to_app(opts)
  opts = opts or {}
  local path = self.d.info.path
  local base = dfu.layout.total(self.d.layout)
  self.d:leave(base)
  self.d:close()
  local deadline = time.now() + (opts.timeout or 15)
  while time.now() < deadline do
    local tty = require("mpctl.target").app_tty(ids(self.board, "app"), path)
    if tty then return tty end
    for _, u in ipairs(ids(self.board, "app")) do usb.wait({ vid = u.vid, pid = u.pid, path = path, open = false }, 0.2) end
  end
  errors.raise("timeout", "usb:" .. path, "the board did not come back as MicroPython's USB serial port after leaving DFU",
    { hint = "press RST (and remove the DFU/BOOT0 jumper); check that the firmware is for this board" })
end

--- Read unprotect (only when asked: it wipes the whole chip): the device mass-erases and resets;
--- the driver waits for it to come back in DFU mode and reopens it.
function T:unprotect()
  local path = self.d.info.path
  self.d:read_unprotect()
  self.d:close()
  usb.wait({ path = path, vid = self.d.info.vid, pid = self.d.info.pid }, 40, true)
  local back = usb.wait({ path = path, vid = self.d.info.vid, pid = self.d.info.pid }, 40)
  if not back then errors.raise("timeout", "usb:" .. path, "the board did not come back in DFU mode after read unprotect",
    { hint = M.how_to_enter(self.board) }) end
  self.d = dfu.open({ path = path }, { alt = 0, log = self.log })
  self.d:ensure_idle()
end

function T:close() if self.d then self.d:close() end end
T.__close = T.close

return M
