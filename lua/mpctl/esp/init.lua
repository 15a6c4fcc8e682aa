-- mpctl.esp: talk to the ESP ROM serial loader and the flasher stub.
--
--   local chip = esp.connect(port, {reset="classic", baud=921600, stub=nil|"no"|PATH})
--   chip.name, chip.mac, chip.flash_size, chip.stub
--   chip:check_image(data, offset)           -- refuse wrong chip / oversize / corrupt, before erasing
--   chip:check_parts(parts)                  -- same for {{offset=, data=, name=}, ...} (bundles)
--   chip:write(offset, data, opts)           -- skip identical blocks, deflate, MD5 verify (flash.lua)
--        opts: diff (true), verify (true), compress (true), level (12), erased, label
--        -> {raw=, sent=, wire=, written=, retries=, rounds=, seconds=, verified=, md5=,
--            outside = "unchanged"|"not written"|"skipped", reconnects=}
--        with verify, flash outside the image's sectors is proven unchanged (mpctl.esp.guard)
--   chip:write_parts(parts, opts)            -- several writes, one outside check, summed stats
--   chip:read_flash(offset, size) / chip:erase_all() / chip:erase_region(offset, size)
--   chip:md5(offset, size) -> hex / chip:read_reg(addr) / chip:write_reg(addr, value)
--   chip:hard_reset([usb])
-- connect opts: reset ("classic" | "usb-jtag" | "none"), baud, stub (nil = find one, "no", PATH),
-- chip (expected key), attempts, flash_size (fallback), early_baud (false = esptool order), log, trace,
-- timeout_scale (multiplies reply timeouts).
-- Errors are mpctl.errors objects: kind, where (the port), detail, hint; a failed write adds
-- offset (first address not known good) and outside ("unchanged" | "changed" | "unknown").
--
-- Protocol facts: esptool `loader.py`, `targets/*.py`, `cmds.py`; esptool-js `lib/esploader.js`
-- (anchors.md §3.1). The session order follows what esptool does (§3.1 "Typical session").
local command = require("mpctl.esp.command")
local chips = require("mpctl.esp.chips")
local reset = require("mpctl.esp.reset")
local image = require("mpctl.esp.image")
local time = require("mpctl.time")
local errors = require("mpctl.errors")

local OP = command.OP
local M = { chips = chips, command = command, reset = reset, image = image }

M.ROM_BAUD = 115200   -- ESP_ROM_BAUD: the ROM auto-bauds from SYNC at this rate
M.RAM_BLOCK = 0x1800  -- ESP_RAM_BLOCK
M.ROM_BLOCK = 0x400   -- FLASH_WRITE_SIZE (ROM)
M.STUB_BLOCK = 0x4000 -- FLASH_WRITE_SIZE (stub)

local Chip = {}
Chip.__index = Chip
M.Chip = Chip

local function default_log(level, fmt, ...)
  local ok, ui = pcall(require, "mpctl.ui")
  if ok and ui.log then ui.log(level, fmt, ...) end
end

function Chip:log(level, fmt, ...) self.logf(level, fmt, ...) end

-- Raise a structured error (mpctl.errors) of `kind` with extra fields (offset, hint, outside...).
-- The text keeps the form "esp on PORT: what happened".
function Chip:raise(kind, extra, fmt, ...)
  local detail = string.format(fmt, ...)
  local t = { kind = kind, where = self.port.name or "port", detail = detail,
    msg = string.format("esp on %s: %s", self.port.name or "port", detail) }
  for k, v in pairs(extra or {}) do t[k] = v end
  error(errors.new(t), 0)
end

function Chip:fail(fmt, ...) self:raise("failed", nil, fmt, ...) end

function Chip:read_reg(addr, timeout) return self.conn:read_reg(addr, timeout) end
function Chip:write_reg(addr, value, mask) return self.conn:write_reg(addr, value, mask) end

-- GET_SECURITY_INFO (S2 and later ROMs, stubs): 20 bytes <I flags, B crypt_cnt, 7B key purposes,
-- I chip_id, I api_version>; the S2 ROM answers only the first 12. Returns a table or nil.
function Chip:security_info()
  local conn = self.conn
  conn:send(OP.GET_SECURITY_INFO, "")
  local resp = conn:response(OP.GET_SECURITY_INFO, 1)
  if not resp then return nil end
  local d = resp.data
  if #d >= 2 and #d < 14 and d:byte(1) ~= 0 then
    if d:byte(2) == command.ROM_INVALID_RECV_MSG then conn:drain() end
    return nil
  end
  local info = {}
  if #d >= 22 and d:byte(21) == 0 then
    info.flags, info.crypt_cnt = string.unpack("<I4B", d)
    info.chip_id, info.api = string.unpack("<I4I4", d, 13)
  elseif #d >= 14 and d:byte(13) == 0 then
    info.flags, info.crypt_cnt = string.unpack("<I4B", d) -- ESP32-S2: no chip id
  else
    return nil
  end
  info.secure_download = (info.flags & 4) ~= 0 -- SECURE_DOWNLOAD_ENABLE (esptool parse_security_flags)
  return info
end

function Chip:detect()
  local sec = self:security_info()
  self.security = sec
  if sec and sec.chip_id then
    local c = chips.by_image_id[sec.chip_id]
    if not c then self:raise("unsupported", nil, "unknown chip id %d from GET_SECURITY_INFO", sec.chip_id) end
    return c
  end
  -- Replies carry no checksum: a damaged value word reads as an unknown magic, so ask again.
  local ok, magic
  for _ = 1, 3 do
    ok, magic = pcall(self.read_reg, self, chips.CHIP_DETECT_MAGIC_REG)
    if ok and chips.by_magic[magic] then return chips.by_magic[magic] end
    self.conn:drain(0.05)
  end
  if ok then
    if sec then return chips.by_key.esp32s2 end
    self:raise("unsupported", nil, "unknown chip magic 0x%08X at 0x40001000", magic)
  end
  if sec then return chips.by_key.esp32s2 end -- S2 in secure download mode refuses READ_REG
  self:raise(errors.kind(magic) == "internal" and "protocol" or errors.kind(magic), nil,
    "chip detection failed: %s", tostring(magic))
end

local function mac_string(b) return (b:gsub(".", function(c) return string.format("%02x:", c:byte()) end):sub(1, -2)) end

function Chip:read_mac()
  local c = self.chip
  if c.mac == "esp32" then
    -- esptool ESP32ROM.read_mac: big-endian pack(efuse word 2, word 1), drop the 2 CRC bytes
    local w1, w2 = self:read_reg(c.efuse_base + 4), self:read_reg(c.efuse_base + 8)
    return mac_string(string.pack(">I4I4", w2, w1):sub(3, 8))
  elseif c.mac == "word_pair" then
    local mac0 = self:read_reg(c.mac_reg)
    local mac1 = self:read_reg(c.mac_reg + 4) & 0xFFFF
    return mac_string(string.pack(">I2I4", mac1, mac0))
  else -- ESP8266 OTP words 0, 1, 3 with the two Espressif OUIs as fallback (targets/esp8266.py)
    local mac0, mac1 = self:read_reg(c.efuse_base), self:read_reg(c.efuse_base + 4)
    local mac3 = self:read_reg(c.efuse_base + 12)
    local oui
    if mac3 ~= 0 then oui = string.char((mac3 >> 16) & 0xFF, (mac3 >> 8) & 0xFF, mac3 & 0xFF)
    elseif ((mac1 >> 16) & 0xFF) == 0 then oui = "\x18\xFE\x34"
    elseif ((mac1 >> 16) & 0xFF) == 1 then oui = "\xAC\xD0\x74"
    else return "unknown OUI" end
    return mac_string(oui .. string.char((mac1 >> 8) & 0xFF, mac1 & 0xFF, (mac0 >> 24) & 0xFF))
  end
end

-- ESP32 ROM computes baud from a drifting 8 MHz clock; esptool sends a corrected value
-- (targets/esp32.py change_baud / get_rom_cal_crystal_freq). Registers that read 0 (no such
-- model) leave the value unchanged.
function Chip:rom_baud_value(baud)
  local q = self.chip.rtc_cali
  if self.stub or not (self.chip.rom.crystal_quirk and q) then return baud end
  local ok, cali = pcall(self.read_reg, self, q.reg)
  local ok2, ck8m = pcall(self.read_reg, self, self.chip.efuse_base + 16)
  if not (ok and ok2) then return baud end
  -- integer arithmetic throughout, as esptool's `//`, so the value sent is the same to the baud
  local freq = ((cali >> q.shift) & q.mask) * 15625 * (ck8m & 0xFF) // 40
  if freq < 20000000 or freq > 50000000 then return baud end
  local valid = freq > 33000000 and 40000000 or 26000000
  return baud * freq // valid
end

-- Returns true on success, false if we stayed at the old baud with the link intact, or raises
-- the marker "mpctl.esp.lost_baud" when the chip switched but the link does not work.
function Chip:change_baud(new)
  local port, old = self.port, self.port:baud()
  if new == old then return true end
  if not self.stub and not self.chip.rom.change_baud then
    self:log("info", "%s ROM cannot change baud rate; staying at %d", self.chip.name, old)
    return false
  end
  -- Ask the adapter first: once the chip has switched, a host that cannot follow loses it.
  local ok, err = pcall(port.set_baud, port, new)
  if not ok then
    pcall(port.set_baud, port, old)
    self:log("warn", "adapter refused %d baud (%s), staying at %d", new, tostring(err):gsub("^.-: ", ""), old)
    self.baud_note = string.format("adapter refused %d, stayed at %d", new, old)
    return false
  end
  port:set_baud(old)
  local arg2 = self.stub and old or 0 -- stub wants the current rate; ROM takes 0
  local payload = self.conn:try(OP.CHANGE_BAUDRATE, string.pack("<I4I4", self:rom_baud_value(new), arg2))
  if not payload then
    -- The command may have arrived and only its answer got lost: ask at both rates.
    port:flush_input()
    if pcall(self.read_reg, self, chips.CHIP_DETECT_MAGIC_REG, 0.5) then
      self:log("warn", "chip did not acknowledge a change to %d baud, staying at %d", new, old)
      return false
    end
  end
  port:set_baud(new)
  time.sleep(0.05) -- loader.py: get rid of garbage sent during the baud rate change
  port:flush_input()
  for _ = 1, 3 do
    local okr = pcall(self.read_reg, self, chips.CHIP_DETECT_MAGIC_REG, 0.5)
    if okr then return true end
    port:flush_input()
  end
  port:set_baud(old)
  self.baud_note = string.format("no answer at %d, back to %d", new, old)
  errors.raise("protocol", port.name, "no answer after changing to " .. new .. " baud", { retry = "lost_baud" })
end

-- One upload of the stub to RAM and the wait for its OHAI greeting (loader.py run_stub).
-- Returns true, or nil and why. Nothing is retried here: a MEM_DATA resent with the same
-- sequence number after a lost answer is refused by the ROM (0x05) when the first one arrived.
function Chip:upload_stub_once(stub, greeting_timeout)
  local conn = self.conn
  for _, seg in ipairs { { stub.text, stub.text_start }, { stub.data, stub.data_start } } do
    local bytes, addr = seg[1], seg[2]
    if bytes and #bytes > 0 then
      local blocks = (#bytes + M.RAM_BLOCK - 1) // M.RAM_BLOCK
      local ok, _, msg = conn:try(OP.MEM_BEGIN, string.pack("<I4I4I4I4", #bytes, blocks, M.RAM_BLOCK, addr))
      if ok == nil then return nil, msg end
      for seq = 0, blocks - 1 do
        local part = bytes:sub(seq * M.RAM_BLOCK + 1, (seq + 1) * M.RAM_BLOCK)
        ok, _, msg = conn:try(OP.MEM_DATA, nil, { raw = command.data_packet(OP.MEM_DATA, seq, part) })
        if ok == nil then return nil, string.format("block %d/%d at 0x%X: %s", seq + 1, blocks, addr, msg) end
      end
    end
  end
  conn:send(OP.MEM_END, string.pack("<I4I4", stub.entry == 0 and 1 or 0, stub.entry))
  -- The ROM may or may not answer MEM_END before jumping (esptool ignores its errors).
  local deadline = time.now() + conn:t(greeting_timeout or 3)
  while time.now() < deadline do
    local frame, kind = conn:read_frame(math.max(0.01, deadline - time.now()))
    if frame == "OHAI" then
      self.stub = true
      return true
    end
    if not frame and kind ~= "garbled" then break end
  end
  return nil, "no OHAI greeting from the stub"
end

-- Upload the stub; a damaged or late answer restarts the upload from MEM_BEGIN, which the ROM
-- accepts at any time. A stub that started but whose OHAI got lost answers SYNC with value 0.
function Chip:run_stub(stub, greeting_timeout)
  local why
  for attempt = 1, 3 do
    local ok
    ok, why = self:upload_stub_once(stub, greeting_timeout)
    if ok then return true end
    self.conn:drain(0.05)
    self.port:flush_input()
    local v = self.conn:sync(self.conn:t(0.3))
    if v == 0 then
      self.stub = true
      return true
    end
    if v == nil then break end -- neither ROM nor stub answers: the caller reconnects from reset
    self.conn.retries = self.conn.retries + 1
    self:log("verbose", "stub upload: %s; starting again from MEM_BEGIN (attempt %d/3)", why, attempt + 1)
  end
  return false, why
end

-- Which loader answers now: "stub", "rom" or nil (nothing well-formed: the chip reset into its
-- app, or the link is lost). The stub answers SYNC with value 0, the ROM with its own value.
function Chip:probe()
  for _ = 1, 2 do
    self.conn:drain(0.02)
    self.port:flush_input()
    local v = self.conn:sync(self.conn:t(0.3))
    if v == 0 then return "stub" end
    if v then return "rom" end
  end
  return nil
end

-- SPI flash JEDEC id through the SPI user-command registers (loader.py run_spiflash_command,
-- flash_id): RDID 0x9F, 24 bits read back from W0.
function Chip:flash_id()
  local s = self.chip.spi
  local base = s.base
  local USR_COMMAND, USR_MISO = 1 << 31, 1 << 28
  local old_usr, old_usr2 = self:read_reg(base + s.usr), self:read_reg(base + s.usr2)
  local read_bits = 24
  if s.miso_dlen then
    self:write_reg(base + s.miso_dlen, read_bits - 1)
  else
    self:write_reg(base + s.usr1, (read_bits - 1) << 8) -- ESP8266: MISO bit length at bit 8
  end
  self:write_reg(base + s.usr, USR_COMMAND | USR_MISO)
  self:write_reg(base + s.usr2, (7 << 28) | 0x9F)
  self:write_reg(base + s.w0, 0)
  self:write_reg(base, 1 << 18) -- SPI_CMD_USR
  local done = false
  for _ = 1, 10 do
    if (self:read_reg(base) & (1 << 18)) == 0 then done = true break end
  end
  if not done then self:fail("SPI flash command RDID did not complete") end
  local id = self:read_reg(base + s.w0) & 0xFFFFFF
  self:write_reg(base + s.usr, old_usr)
  self:write_reg(base + s.usr2, old_usr2)
  return id
end

function Chip:attach_flash(opts)
  local rom8266 = self.chip.key == "esp8266" and not self.stub
  if rom8266 then
    -- The ESP8266 ROM has no SPI_ATTACH: an empty FLASH_BEGIN attaches the flash before the
    -- RDID below (esptool ESP8266ROM.flash_spi_attach sends flash_begin(0, 0)); it erases nothing.
    self.conn:command(OP.FLASH_BEGIN, string.pack("<I4I4I4I4", 0, 0, M.ROM_BLOCK, 0))
  else
    local arg = string.pack("<I4", 0)
    if not self.stub then arg = arg .. "\0\0\0\0" end -- ROM takes 4 more zero bytes (flash_spi_attach)
    self.conn:command(OP.SPI_ATTACH, arg)
  end
  local ok, id = pcall(self.flash_id, self)
  local size = ok and chips.flash_size_from_id(id) or nil
  self.flash_jedec = ok and id or nil
  if not size then
    size = opts.flash_size or 4 * 1024 * 1024
    self:log("warn", "could not detect the flash size (%s); assuming %s", ok and string.format("id 0x%06X", id)
      or tostring(id), chips.size_name(size))
  end
  self.flash_size = size
  if not rom8266 then
    -- the ROM assumes 2 MB and refuses to erase past it until told the real size
    self.conn:command(OP.SPI_SET_PARAMS, string.pack("<I4I4I4I4I4I4", 0, size, 0x10000, 0x1000, 0x100, 0xFFFF))
  end
end

-- The generic board file for a chip ("esp32s3" -> "ESP32_GENERIC_S3"), or nil.
function M.board_for_chip(key)
  local ok, all = pcall(function() return require("mpctl.board").all() end)
  local best
  for _, b in ipairs(ok and all or {}) do
    if b.family == "esp" and chips.get(b.chip) == chips.get(key) then
      if not best or (b.id:find("GENERIC", 1, true) and not best.id:find("GENERIC", 1, true))
          or (#b.id < #best.id and b.id:find("GENERIC", 1, true)) then
        best = b
      end
    end
  end
  return best and best.id or nil
end

-- Connection settings a board file implies: its chip, reset mode (the adapter's own when the
-- board lists one for the port's USB id, e.g. USB-Serial/JTAG) and its first flash size.
function M.board_opts(board, port_path)
  local o = { chip = board.chip, reset = board.reset, baud = board.max_baud or board.baud }
  local okl, ports = pcall(function() return require("mpctl.serial").list() end)
  for _, p in ipairs(okl and ports or {}) do
    if p.path == port_path and p.vid then
      for _, u in ipairs(board.usb or {}) do
        if u.vid == p.vid and u.pid == p.pid and u.reset then o.reset = u.reset end
      end
    end
  end
  local n, unit = tostring(board.flash_sizes and board.flash_sizes[1] or ""):upper():match("^(%d+)([KM])B$")
  o.flash_size = n and tonumber(n) * (unit == "M" and 1048576 or 1024) or nil
  return o
end

-- Make sure the loader we think we talk to is there: the stub may have rebooted into the ROM
-- (a damaged FLASH_DEFL_END whose "stay" flag read 0) or the chip into its app. The ROM answers
-- SYNC differently from the stub, so one SYNC tells; anything but the expected loader means a
-- reconnect (reset, stub upload, baud) rather than waiting out command timeouts.
function Chip:ensure_loader(why)
  local who = self:probe()
  if who == (self.stub and "stub" or "rom") then return false end
  self:reconnect(string.format("%s, and %s", why, who == nil and "the loader does not answer"
    or (who == "rom" and "the ROM answers instead of the stub" or "the stub answers instead of the ROM")))
  return true
end

-- SPI_FLASH_MD5 of a flash region as lowercase hex. ROM answers 32 hex chars, stub 16 raw bytes.
function Chip:md5(addr, size)
  if not self:can_md5() then return nil end
  local timeout = math.max(3, 8 * size / 1e6) -- MD5_TIMEOUT_PER_MB
  local function ask()
    local payload = self.conn:command(OP.SPI_FLASH_MD5, string.pack("<I4I4I4I4", addr, size, 0, 0),
      { resp_len = self.stub and 16 or 32, timeout = timeout, retries = 1 })
    if self.stub then return command.hex(payload) end
    if not payload:match("^%x+$") then
      self.conn:raise(OP.SPI_FLASH_MD5, "short", "SPI_FLASH_MD5: the ROM's answer is not hex")
    end
    return payload:lower()
  end
  local ok, res = pcall(ask)
  if ok then return res end
  local kind = errors.kind(res)
  if kind == "interrupted" or kind == "internal" then error(res, 0) end
  -- Two failed tries: before waiting out more timeouts, check who is answering.
  self:ensure_loader(string.format("MD5 of 0x%X+%d failed (%s)", addr, size, res.detail or tostring(res)))
  return ask()
end

function Chip:check_image(data, offset)
  local info, warnings = image.check(data, self.chip, offset or self.chip.bootloader_offset, self.flash_size)
  for _, w in ipairs(warnings) do self:log("warn", "%s", w) end
  return info
end

-- Several files at their offsets (an ESP-IDF bundle: bootloader, partition table, app...).
-- Every image among them is checked for the chip; overlaps and overflow are refused.
function Chip:check_parts(parts)
  local sorted = {}
  for i, p in ipairs(parts) do sorted[i] = p end
  table.sort(sorted, function(a, b) return a.offset < b.offset end)
  for i, p in ipairs(sorted) do
    local name = p.name or string.format("part at 0x%X", p.offset)
    local nxt = sorted[i + 1]
    if nxt and p.offset + #p.data > nxt.offset then
      self:fail("%s (0x%X+%d) overlaps %s at 0x%X", name, p.offset, #p.data, nxt.name or "the next part", nxt.offset)
    end
    if self.flash_size and p.offset + #p.data > self.flash_size then
      self:fail("%s ends at 0x%X, past the end of the %s flash", name, p.offset + #p.data,
        chips.size_name(self.flash_size))
    end
    if p.offset == self.chip.bootloader_offset then
      local ok, err = pcall(self.check_image, self, p.data, p.offset)
      if not ok then self:fail("%s: %s", name, err) end
    elseif p.data:byte(1) == image.MAGIC and self.chip.image_id then
      local ok, info = pcall(image.parse, p.data, self.chip)
      if not ok then self:fail("%s: %s", name, info) end
      if info.chip_id ~= self.chip.image_id then
        local other = chips.by_image_id[info.chip_id]
        self:fail("%s is built for %s, not %s", name, other and other.name or ("chip id " .. info.chip_id), self.chip.name)
      end
    end
  end
end

-- Leave the loader: EN pulse with IO0 high, so the chip boots the app.
function Chip:hard_reset(usb)
  reset.hard(self.port, usb or self.usb)
  self.stub = false
end

-- Reset, SYNC, chip detection, stub and baud, with the per-port memory of what worked (connect.lua).
local connect = require("mpctl.esp.connect")(M, Chip, default_log)

function M.connect(port, opts)
  return connect(port, opts or {})
end

require("mpctl.esp.flash")(M, Chip)

return M
