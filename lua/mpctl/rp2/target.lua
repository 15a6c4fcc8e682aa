--[[ mpctl.rp2.target: the RP2040/RP2350 driver of the target interface (docs/internals.md "The
target interface"), so rp2_flash, backup, history and rollback work for Picos.

connect: the board must be in BOOTSEL (its boot ROM). A BOOTSEL device named by --port usb:...,
else the one present (several: listed, not guessed); else a board running MicroPython (its CDC
port 2E8A:0005, given as --port /dev/ttyACM0 or found) told machine.bootloader() over the raw
REPL; else the person is told to hold BOOTSEL while plugging in, and the driver waits (bounded).

Two methods (opts.method; default: PICOBOOT when the USB device can be opened, else the drive):
- picoboot: EXCLUSIVE_ACCESS with eject (the drive goes away, so nothing writes flash behind our
  back), EXIT_XIP, then per 4 KiB sector: READ, compare, and only when it differs FLASH_ERASE and
  WRITE the sector (its bytes outside the image as they were: read first), like `picotool load -u`
  (main.cpp: "Skip writing flash sectors that already contain identical data"); then every sector
  written is read back and compared. REBOOT into the application.
- drive: the UF2 copied onto the RPI-RP2/RP2350 drive (mpctl.rp2.drive), fsync'ed; the ROM writes
  and reboots on its own. No read-back exists on this path: the write reports verify skipped,
  and the recipe's REPL check after the reboot is what says the board runs.

A failure while writing raises with e.offset (the first sector not known good), e.sector (its
index in the image's sectors), e.hint = "run the same command again to resume" (the rerun skips
the sectors already on flash).
]]
local usb = require("mpctl.usb")
local errors = require("mpctl.errors")
local time = require("mpctl.time")
local picoboot = require("mpctl.rp2.picoboot")
local drive = require("mpctl.rp2.drive")
local uf2 = require("mpctl.rp2.uf2")

local M = { family = "rp2" }

local RESUME = "run the same command again to resume"
local SECTOR, PAGE = picoboot.SECTOR, picoboot.PAGE
local READ_AHEAD = 16 -- sectors per READ when comparing (64 KiB)

local T = {}
T.__index = T

local function ids(board, mode)
  local out = {}
  for _, u in ipairs(board.usb or {}) do if u.mode == mode then out[#out + 1] = u end end
  return out
end

function M.how_to_enter(board)
  return board.bootsel_entry or "hold the BOOTSEL button while plugging the board into USB, then let go"
end

-- The BOOTSEL devices of this board's chip (2E8A:0003 for an RP2040 board, 000F for RP2350);
-- at = a USB path: only the one there (no other device is opened: another board's run may be
-- flashing it).
local function bootsel_present(board, at)
  local out = {}
  for _, u in ipairs(ids(board, "bootsel")) do
    for _, info in ipairs(usb.list { vid = u.vid, pid = u.pid, path = at }) do out[#out + 1] = info end
  end
  return out
end

-- Whether the boot ROM's USB serial names the board. The RP2040 has no unique id of its own and
-- its ROM shows the same serial, E0C9125B0D9B, on every board (pico-examples issue #6; picotool
-- pull request #84: its --serial filter cannot tell RP2040s in BOOTSEL apart); such a board's id
-- is its flash chip's unique id, which MicroPython gives as its USB serial number. The RP2350's
-- ROM shows the chip's own id, the same string MicroPython shows.
local function rom_serial_is_board_id(board) return board.chip ~= "RP2040" end

-- The USB serial number of the device at a port path, read from sysfs (nothing is opened).
local function serial_at(path)
  if not path then return nil end
  local serial = select(3, usb.ids_at(path))
  return serial ~= "" and serial or nil
end

local function find_app(board, path) return require("mpctl.target").app_tty(ids(board, "app"), path) end

local function wait_bootsel(board, seconds, at)
  return require("mpctl.target").wait_usb(function() return bootsel_present(board, at) end, ids(board, "bootsel"),
    seconds, at)
end

local function list_text(found)
  local names = {}
  found = { table.unpack(found) }
  table.sort(found, function(a, b) return tostring(a.path) < tostring(b.path) end)
  for _, d in ipairs(found) do
    names[#names + 1] = string.format("usb:%s (%04x:%04x %s)", d.path, d.vid, d.pid, d.serial or "")
  end
  return table.concat(names, ", ")
end

-- Where the BOOTSEL device is: {path=} of the one device, after getting the board there; and
-- when the board was running MicroPython, the id its USB port showed (read before it left).
local function reach_bootsel(board, port, opts, log)
  local wait = tonumber(opts.wait)
  -- the BOOTSEL device comes up at the USB path the tty sat on (`at`, read before the tty went
  -- away): with several boards entering BOOTSEL at once (many boards, a station), "the one
  -- present" is not this board's, and opening the others is not ours to do
  local function after_bootloader(where, at)
    local found = wait_bootsel(board, wait or 15, at)
    if #found ~= 1 then
      errors.raise("timeout", where, "no " .. board.chip .. " BOOTSEL device appeared" .. (at and (" at usb:" .. at) or "") ..
        " after machine.bootloader()", { hint = M.how_to_enter(board) })
    end
    return found[1]
  end
  if type(port) == "string" and port:match("^usb:") then
    local list = usb.list(usb.parse_url(port))
    if #list == 1 and not picoboot.PIDS[list[1].pid] then
      local tty = usb.tty_of(list[1].path)
      if not tty then errors.raise("unsupported", port, "neither an RP2 BOOTSEL device nor a serial port") end
      require("mpctl.target").bootloader_via_repl(tty, log)
      return after_bootloader(port, list[1].path), list[1].serial
    end
    if #list == 0 then errors.raise("not_found", port, "no such USB device", { hint = "see `mpctl ports`" }) end
    if #list > 1 then errors.raise("usage", port, #list .. " devices match: " .. list_text(list), { hint = "name one by its bus path" }) end
    return list[1]
  elseif type(port) == "string" and port ~= "" then
    local at = require("mpctl.many.identity").usb_path(port)
    local app_id = serial_at(at)
    require("mpctl.target").bootloader_via_repl(port, log)
    return after_bootloader(port, at), app_id
  end
  local app_id
  local found = bootsel_present(board)
  if #found > 1 then
    errors.raise("usage", "usb", #found .. " " .. board.chip .. " boards are in BOOTSEL: " .. list_text(found),
      { hint = "name one with --port usb:BUS-PATH or usb:serial=SERIAL" })
  end
  if #found == 0 then
    local tty, info = find_app(board)
    if tty then
      app_id = serial_at(info and info.path)
      require("mpctl.target").bootloader_via_repl(tty, log)
      found = wait_bootsel(board, wait or 15, info and info.path)
    end
  end
  if #found == 0 then
    local secs = wait or 120
    log(string.format("no %s in BOOTSEL: %s. Waiting up to %d s ...", board.id, M.how_to_enter(board), secs))
    found = wait_bootsel(board, secs)
    if #found == 0 then
      errors.raise("timeout", "usb", "no " .. board.chip .. " BOOTSEL device appeared in " .. secs .. " s",
        { hint = M.how_to_enter(board) })
    end
  end
  return found[1], app_id
end

local function sim_query(port)
  local out = {}
  local q = type(port) == "string" and port:match("^sim://[%w_]+%?(.*)$")
  for k, v in (q or ""):gmatch("([^&=]+)=([^&]*)") do out[k] = v end
  return out
end

local function find_drive(board, opts, log, why)
  local found = drive.find { drive = opts.drive, board_id = board.drive_board_id }
  if #found == 0 then
    errors.raise("not_found", opts.drive or "drive", string.format("no %s drive (INFO_UF2.TXT with Board-ID: %s) %s%s",
      board.drive_board_id or "BOOTSEL", board.drive_board_id or "RPI-RP2", opts.drive and ("at " .. opts.drive) or
      "under /media, /run/media or /mnt", why and ("; " .. why) or ""),
      { hint = "mount the board's drive and give its folder with drive=PATH, or use method=picoboot" })
  end
  if #found > 1 then
    local names = {}
    for _, d in ipairs(found) do names[#names + 1] = d.path end
    errors.raise("usage", "drive", #found .. " BOOTSEL drives are mounted: " .. table.concat(names, ", "),
      { hint = "name one with drive=PATH" })
  end
  log(string.format("BOOTSEL drive %s (Board-ID %s, %s)", found[1].path, found[1].board_id, found[1].model or "?"))
  return found[1]
end

function M.connect(ctx)
  local board, log = ctx.board, function() end
  if ctx.log then log = function(line) ctx.log("info", "%s", line) end end
  local opts = {}
  for k, v in pairs(ctx.opts or {}) do opts[k] = v end
  local port = ctx.port
  if type(port) == "string" and port:match("^sim://") then
    -- the simulated Pico's drive=DIR is the drive's folder, unless drive= was given to us too
    opts.drive = opts.drive or sim_query(port).drive
    if require("mpctl.target").simulated(port) then port = nil end
  end
  local method = opts.method
  if method ~= nil and method ~= "picoboot" and method ~= "drive" then
    errors.raise("usage", "method", "method=" .. tostring(method) .. ": use picoboot or drive")
  end
  local dev, app_id = reach_bootsel(board, port, opts, log)
  local t = setmetatable({ family = "rp2", board = board, log = log, opts = opts, usb_path = dev.path,
    usb_info = dev, app_id = app_id, event = "rp2_flash" }, T)
  if method ~= "drive" then
    local ok, c = pcall(picoboot.open, { path = dev.path, vid = dev.vid, pid = dev.pid }, { log = log })
    if ok then
      t.c, t.method = c, "picoboot"
      -- exclusive + eject: the drive goes away, so nothing writes the flash behind PICOBOOT's back
      c:exclusive(2)
      c:exit_xip()
      log(string.format("%s in BOOTSEL (usb %04x:%04x at usb:%s, serial %s): PICOBOOT", board.chip, dev.vid, dev.pid,
        dev.path, dev.serial or "?"))
      return t
    end
    if method == "picoboot" or errors.is(c, "interrupted") then error(c, 0) end
    log("PICOBOOT not reachable (" .. tostring(type(c) == "table" and c.msg or c) .. "); using the BOOTSEL drive")
  end
  t.drive, t.method = find_drive(board, opts, log), "drive"
  return t
end

-- Firmware files, the board guess and the demo image live in mpctl.rp2.image (no device needed).
local image = require("mpctl.rp2.image")
M.guess_board, M.parts, M.demo_image, M.boot2_crc = image.guess_board, image.parts, image.demo_image, image.boot2_crc
M.RP2350_IMAGE_DEF = image.RP2350_IMAGE_DEF

-- id: the board's unique id when known (see rom_serial_is_board_id): an RP2040 found in BOOTSEL
-- has none until its MicroPython shows it (reset_to_app), so id is nil then, not the ROM's serial
-- every RP2040 shares (a station would take a second board for the first and skip it).
function T:identify()
  local info = self.usb_info or {}
  local id = self.app_id or (rom_serial_is_board_id(self.board) and info.serial or nil)
  return { chip = self.board.chip, flash_size = self.board.flash_size, flash_base = self.board.offset, id = id,
    usb = string.format("%04x:%04x", info.vid or 0, info.pid or 0), usb_serial = info.serial, path = self.usb_path,
    method = self.method,
    drive = self.drive and self.drive.path }
end

--- Parts inside the flash; a part read from a UF2 of another family refused (naming both).
function T:check_image(parts)
  local base, size = self.board.offset, self.board.flash_size
  for _, p in ipairs(parts) do
    if #p.data == 0 then errors.raise("refused", p.name or "image", "an empty part") end
    if p.offset < base or p.offset + #p.data > base + size then
      errors.raise("refused", p.name or "image", string.format("0x%08X..0x%08X is outside %s's flash (0x%08X, %d KiB)",
        p.offset, p.offset + #p.data, self.board.id, base, size // 1024), { hint = "nothing was written; check the file and address=" })
    end
    if p.family then
      local ok = false
      for _, f in ipairs(self.board.uf2_families or {}) do if f == p.family then ok = true end end
      if not ok then
        errors.raise("refused", p.name or "image", string.format("this image is for %s, but %s takes %s UF2s",
          uf2.name(p.family), self.board.id, uf2.name((self.board.uf2_families or {})[1])), { hint = "nothing was written" })
      end
    end
  end
end

local function need_picoboot(self, what)
  if not self.c then
    errors.raise("unsupported", self.drive and self.drive.path or "drive", what .. " needs PICOBOOT; the BOOTSEL drive " ..
      "can only take a UF2 (it cannot read or erase the flash)", { hint = "use method=picoboot (the default when the USB device can be opened)" })
  end
end

function T:read(addr, size, opts)
  need_picoboot(self, "reading the flash")
  opts = opts or {}
  local bar = opts.progress ~= false and require("mpctl.ui").progress(opts.label or "read", size) or nil
  local out, done = {}, 0
  while done < size do
    local n = math.min(READ_AHEAD * SECTOR, size - done)
    out[#out + 1] = self.c:read(addr + done, n)
    done = done + n
    if bar then bar:update(done) end
  end
  if bar then bar:finish() end
  return table.concat(out)
end

-- The sectors the parts touch, each with what the image puts in it.
local function sectors_of(parts)
  local map, list = {}, {}
  for _, p in ipairs(parts) do
    local a, e = p.offset, p.offset + #p.data
    local s = a - a % SECTOR
    while s < e do
      if not map[s] then map[s] = { addr = s, pieces = {} }; list[#list + 1] = map[s] end
      local lo, hi = math.max(a, s), math.min(e, s + SECTOR)
      table.insert(map[s].pieces, { at = lo - s, data = p.data:sub(lo - a + 1, hi - a) })
      s = s + SECTOR
    end
  end
  table.sort(list, function(x, y) return x.addr < y.addr end)
  return list
end

local function overlay(current, pieces)
  local out = current
  for _, pc in ipairs(pieces) do
    out = out:sub(1, pc.at) .. pc.data .. out:sub(pc.at + #pc.data + 1)
  end
  return out
end

local function resumable(self, e, s, index, total)
  if type(e) ~= "table" then e = errors.new { kind = "io", where = self.c and self.c.where, detail = tostring(e) } end
  e.offset = e.offset or s.addr
  e.sector, e.sectors = index, total
  e.hint = RESUME
  local why = errors.is(e, "not_found") and "the board went away" or "the write stopped"
  local text = tostring(e.msg or e.detail or e.kind)
  e.msg = string.format("%s: %s at sector %d of %d (0x%08X); flash known good up to 0x%08X; %s", text, why, index, total,
    s.addr, e.offset, RESUME)
  return e
end

function T:write(parts, opts)
  opts = opts or {}
  self:check_image(parts)
  if self.method == "drive" then return self:write_drive(parts, opts) end
  local c, t0 = self.c, time.now()
  local st0 = { out = c.stats.bytes_out, inb = c.stats.bytes_in }
  local raw = 0
  for _, p in ipairs(parts) do raw = raw + #p.data end
  local sectors = sectors_of(parts)
  local bar = opts.progress ~= false and require("mpctl.ui").progress(opts.label or "write", #sectors * SECTOR) or nil
  -- written: bytes of the image in the sectors written; sent: bytes programmed (whole pages)
  local written, sent, erased, skipped, programmed = 0, 0, 0, 0, {}
  -- What is on flash, read ahead in runs of up to READ_AHEAD contiguous sectors per READ (picotool
  -- reads in batches too: size/100 rounded up to a sector); fewer commands, same bytes.
  local ahead = {}
  local function current_of(i, s)
    if opts.erased then return string.rep("\255", SECTOR) end
    if not ahead[s.addr] then
      local n = 1
      while n < READ_AHEAD and sectors[i + n] and sectors[i + n].addr == s.addr + n * SECTOR do n = n + 1 end
      local data = c:read(s.addr, n * SECTOR)
      for k = 0, n - 1 do ahead[s.addr + k * SECTOR] = data:sub(k * SECTOR + 1, (k + 1) * SECTOR) end
    end
    local cur = ahead[s.addr]
    ahead[s.addr] = nil
    return cur
  end
  local retried = 0
  for i, s in ipairs(sectors) do
    local function one_sector()
      local current = current_of(i, s)
      local want = overlay(current, s.pieces)
      if want == current and not opts.erased then skipped = skipped + 1; return end
      c:exit_xip()
      c:erase(s.addr, SECTOR)
      erased = erased + 1
      -- program ANDs into erased (0xFF) NOR: pages that stay all 0xFF need no WRITE; the others go
      -- as one WRITE per run of consecutive pages (usually the whole sector in one command)
      local blank = string.rep("\255", PAGE)
      local pg = 0
      while pg < SECTOR do
        if want:sub(pg + 1, pg + PAGE) == blank then
          pg = pg + PAGE
        else
          local e = pg + PAGE
          while e < SECTOR and want:sub(e + 1, e + PAGE) ~= blank do e = e + PAGE end
          c:write(s.addr + pg, want:sub(pg + 1, e))
          sent = sent + (e - pg)
          pg = e
        end
      end
      for _, pc in ipairs(s.pieces) do written = written + #pc.data end
      programmed[#programmed + 1] = { addr = s.addr, data = want, index = i }
    end
    local ok, e = pcall(one_sector)
    -- A command the ROM refused (stall: its status read, the interface reset by picoboot) or that
    -- timed out is retried once for this sector, from a fresh read of it; a board that went away
    -- or Ctrl-C is not (nothing to retry with).
    if not ok and (errors.is(e, "protocol") or errors.is(e, "timeout")) then
      self.log(string.format("sector 0x%08X: %s; interface reset, writing the sector again", s.addr,
        tostring(type(e) == "table" and (e.detail or e.msg) or e)))
      retried = retried + 1
      ahead = {}
      ok, e = pcall(one_sector)
    end
    if not ok then
      if bar then bar:finish() end
      error(resumable(self, e, s, i, #sectors), 0)
    end
    if bar then bar:update(i * SECTOR) end
  end
  if bar then bar:finish() end
  local verified, verify_skipped = false, opts.verify == false
  if not verify_skipped then
    -- Everything written is read back (runs of contiguous sectors per READ, as above); the sectors
    -- skipped were read and compared equal before.
    local j = 1
    while j <= #programmed do
      local n = 1
      while n < READ_AHEAD and programmed[j + n] and programmed[j + n].addr == programmed[j].addr + n * SECTOR do n = n + 1 end
      local ok, data = pcall(c.read, c, programmed[j].addr, n * SECTOR)
      if not ok then error(resumable(self, data, programmed[j], programmed[j].index, #sectors), 0) end
      for k = 0, n - 1 do
        local w, back = programmed[j + k], data:sub(k * SECTOR + 1, (k + 1) * SECTOR)
        if back ~= w.data then
          local x = 1
          while back:byte(x) == w.data:byte(x) do x = x + 1 end
          errors.raise("failed", c.where, string.format("verify: flash differs from the image at 0x%08X", w.addr + x - 1),
            { offset = w.addr, hint = RESUME })
        end
      end
      j = j + n
    end
    verified = true
  end
  return { raw = raw, sent = sent, written = written, wire = (c.stats.bytes_out - st0.out) + (c.stats.bytes_in - st0.inb),
    seconds = time.now() - t0, verified = verified, verify_skipped = verify_skipped, verify_what = "read-back of the sectors written",
    sectors_erased = erased, sectors_skipped = skipped, sectors = #sectors, method = "picoboot", retried = retried,
    -- only the sectors the image touches are erased, and their bytes outside the image were read
    -- first and written back; nothing else is read back, so nothing is claimed about it
    outside = "skipped", outside_why = "PICOBOOT writes read back only the sectors written" }
end

--- The drive method: the parts as a UF2 of the board's family (the file's own family when it came
--- from a UF2), copied and fsync'ed; then the ROM writes it and reboots.
function T:write_drive(parts, opts)
  local t0 = time.now()
  local family = parts[1].family or (self.board.uf2_families or {})[1]
  local data = uf2.build(parts, { family = family })
  local raw = 0
  for _, p in ipairs(parts) do raw = raw + #p.data end
  local okc, path = pcall(drive.copy, self.drive.path, data)
  if not okc then
    if errors.is(path, "access") and not self.opts.drive then
      -- found under /media or /mnt, which recipes may only read (lua/mpctl/sandbox.lua)
      errors.raise("access", self.drive.path, "found the BOOTSEL drive here, but a recipe may write there only when told to",
        { hint = "run again with drive=" .. self.drive.path .. " (nothing was written)" })
    end
    error(path, 0)
  end
  self.log(string.format("copied %d bytes of UF2 (%d blocks, %s) to %s; waiting for the board to reboot", #data,
    #data // 512, uf2.name(family), path))
  -- The ROM erases and programs as the blocks arrive: at the flash's worst case (W25Q16JV: 4 KiB
  -- sector erase 400 ms max, page program 3 ms max) that is 28 ms per 256-byte block, so the wait
  -- is 30 s plus 30 ms per block (650 KB of firmware: about 110 s)
  local limit = opts.timeout or (30 + 0.03 * (#data // 512))
  if not drive.wait_gone(self.drive.path, limit) then
    errors.raise("timeout", self.drive.path, string.format("the drive is still there %d s after the copy: the boot ROM did not take the UF2", limit),
      { hint = "check that the file is for " .. self.board.chip .. "; unplug and replug the board in BOOTSEL and try again" })
  end
  self.rebooted = true
  return { raw = raw, sent = #data, written = raw, wire = #data, seconds = time.now() - t0, verified = false,
    verify_skipped = true, verify_what = "read-back of the flash",
    verify_why = "the BOOTSEL drive cannot be read back; the REPL after the reboot is the check",
    sectors = #sectors_of(parts), method = "drive", outside = "skipped",
    outside_why = "the BOOTSEL drive cannot be read back" }
end

function T:erase(addr, size)
  need_picoboot(self, "erasing")
  if addr % SECTOR ~= 0 or size % SECTOR ~= 0 then
    errors.raise("usage", self.c.where, string.format("erase 0x%08X+%d: not whole 4 KiB sectors", addr, size))
  end
  for a = addr, addr + size - 1, SECTOR do self.c:exit_xip(); self.c:erase(a, SECTOR) end
end

function T:erase_all()
  need_picoboot(self, "erasing")
  -- 64 KiB per command: each erase answers within picotool's 10 s ack timeout even on slow flash
  for a = self.board.offset, self.board.offset + self.board.flash_size - 1, 65536 do
    self.c:exit_xip(); self.c:erase(a, 65536)
  end
end

--- Reboots into the application (PICOBOOT) or waits for the reboot the drive copy started;
--- returns MicroPython's CDC port once it has enumerated.
function T:reset_to_app(opts)
  opts = opts or {}
  local where = self.c and self.c.where or ("usb:" .. tostring(self.usb_path))
  if self.c then
    local ok, e = pcall(self.c.reboot, self.c)
    -- the ROM may reset before its ack reaches us: a device gone after REBOOT is the reboot
    if not ok and not errors.is(e, "not_found") then error(e, 0) end
    self.c:close()
    self.c = nil
  end
  -- the BOOTSEL device leaves the bus first (after REBOOT's delay, or once the drive copy is
  -- done; the drive folder may go before the USB device does)
  local left = usb.wait({ path = self.usb_path, vid = self.usb_info.vid, pid = self.usb_info.pid }, 5, true)
  local deadline = time.now() + (opts.timeout or 15)
  while time.now() < deadline do
    local tty = find_app(self.board, self.usb_path)
    if tty then
      -- MicroPython's USB serial is the board's unique id (an RP2040's flash id): now it is known
      self.app_id = self.app_id or serial_at(self.usb_path)
      return tty
    end
    -- gone and back in BOOTSEL: the ROM found nothing to boot (it would have started the app).
    -- Only a BOOTSEL device at this board's path counts: another board of a many-boards run
    -- may still be in BOOTSEL elsewhere on the bus.
    if left and self:bootsel_again() then break end
    for _, u in ipairs(ids(self.board, "app")) do usb.wait({ vid = u.vid, pid = u.pid, path = self.usb_path, open = false }, 0.2) end
  end
  if self:bootsel_again() then
    errors.raise("failed", where, "the board came back in BOOTSEL, not as MicroPython: the boot ROM found no valid image",
      { hint = "check that the firmware is a MicroPython build for " .. self.board.id })
  end
  errors.raise("timeout", where, "MicroPython's USB serial port (2E8A:0005) did not appear after the reboot",
    { hint = "unplug and replug the board; check that the firmware is for " .. self.board.id })
end

-- A BOOTSEL device of this board's chip at its USB path (not opened: ids only).
function T:bootsel_again()
  for _, u in ipairs(ids(self.board, "bootsel")) do
    if #usb.list { vid = u.vid, pid = u.pid, path = self.usb_path, open = false } > 0 then return true end
  end
  return false
end

function T:summary(st)
  return { method = st.method or self.method, sectors_erased = st.sectors_erased, sectors_skipped = st.sectors_skipped }
end

function T:close()
  if self.c then
    -- give the drive back (NOT_EXCLUSIVE) when we leave without rebooting, as picotool does
    pcall(self.c.exclusive, self.c, 0)
    self.c:close()
    self.c = nil
  end
end
T.__close = T.close

return M
