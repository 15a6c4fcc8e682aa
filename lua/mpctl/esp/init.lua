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
local stubmod = require("mpctl.esp.stub")
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

local function any_bytes(port, wait)
  local ok, s = pcall(port.read, port, 8192, wait)
  return ok and s or ""
end

-- After a reset the ROM prints its boot line (anchors.md §3.6; esptool reads it to diagnose a
-- failed connect): "boot:0x3 (DOWNLOAD_BOOT(...))" + "waiting for download" when IO0 was low at
-- the latch, "boot:0x13 (SPI_FAST_FLASH_BOOT)" when the app starts (S2/S3/C3/C6: "DOWNLOAD(USB/
-- UART0)" / "SPI_FAST_FLASH_BOOT"). Reads for up to `wait` seconds, stopping at the verdict:
-- "download", "app", or nil (nothing readable: an ESP8266 prints at 74880, or nothing came).
function Chip:read_boot_line(wait)
  local deadline = time.now() + wait
  local text = ""
  while true do
    local left = deadline - time.now()
    if left <= 0 then break end
    text = text .. any_bytes(self.port, math.min(0.02, left))
    if text:find("DOWNLOAD", 1, true) or text:find("waiting for download", 1, true) then return text, "download" end
    if text:find("FLASH_BOOT", 1, true) then return text, "app" end
  end
  return text, nil
end

-- Where connect remembers, per port, the reset sequence that reached the loader (issue 12):
-- $XDG_STATE_HOME/mpctl/esp_reset.json (opts.memory = another file, or false for none).
local function memory_file(opts, port)
  if opts.memory == false then return nil end
  if type(opts.memory) == "string" then return opts.memory end
  -- simulated boards come and go with every test: not remembered unless a file is named
  if tostring(port.name or ""):match("^sim:") then return nil end
  local ok, dir = pcall(function() return require("mpctl.fs").xdg("state") end)
  return ok and dir and (dir .. "/esp_reset.json") or nil
end

-- A port's identity: USB id and serial number when the OS lists them (the same board on another
-- /dev/ttyUSBn), else the port's name or URL.
local function port_key(port)
  local name = port.name or "port"
  local ok, list = pcall(function() return require("mpctl.serial").list() end)
  for _, p in ipairs(ok and list or {}) do
    if p.path == name and p.vid then
      return string.format("usb:%04x:%04x:%s", p.vid, p.pid or 0, p.serial or name)
    end
  end
  return name
end

local function read_memory(path)
  if not path then return {} end
  local okr, text = pcall(function() return require("mpctl.fs").read(path) end)
  if not okr or not text then return {} end
  local okj, t = pcall(require("mpctl.ui").json_decode, text)
  return okj and type(t) == "table" and t or {}
end

local function write_memory(path, key, name)
  if not path then return end
  pcall(function()
    local fs = require("mpctl.fs")
    local t = read_memory(path)
    if t[key] and t[key].reset == name then return end
    t[key] = { reset = name, at = os.time() }
    -- keep the 64 most recent ports
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    if #keys > 64 then
      table.sort(keys, function(a, b) return (tonumber(t[a].at) or 0) > (tonumber(t[b].at) or 0) end)
      for n = 65, #keys do t[keys[n]] = nil end
    end
    fs.mkdir(fs.dirname(path), { parents = true })
    fs.write(path .. ".tmp", require("mpctl.ui").json_encode(t))
    fs.rename(path .. ".tmp", path)
  end)
end

-- Reset into the bootloader and SYNC; tries every strategy of the reset mode in turn, the one
-- that worked last time on this port first. After each reset the boot line decides at once: the
-- app started (IO0 released before a slow EN let the chip out of reset) -> the same wiring with a
-- longer IO0 hold right away, no SYNC wasted on a chip that runs its app.
function Chip:sync_loop(opts)
  local seq = reset.sequence(opts.reset)
  local attempts = opts.attempts or (#seq == 1 and 3 or 2 * #seq)
  local mem_path = memory_file(opts, self.port)
  local key = port_key(self.port)
  local remembered = read_memory(mem_path)[key]
  if remembered then
    for k, st in ipairs(seq) do
      if st.name == remembered.reset and k > 1 then
        table.remove(seq, k)
        table.insert(seq, 1, st)
        break
      end
    end
  end
  local tried, bootlog = {}, ""
  local seen_bytes, verdicts = 0, { download = 0, app = 0, none = 0 }
  local function try_sync(strat)
    for _ = 1, 5 do
      self.port:flush_input()
      local value = self.conn:sync(0.1)
      if value then return value end
      time.sleep(0.05)
    end
  end
  local function reset_and_read(strat)
    tried[strat.name] = true
    local before = any_bytes(self.port, 0) -- a boot log already waiting says how the chip started
    bootlog = bootlog .. before
    seen_bytes = seen_bytes + #before
    self.port:flush_input()
    strat.fn(self.port)
    local text, verdict = self:read_boot_line(0.3)
    bootlog = bootlog .. text
    seen_bytes = seen_bytes + #text
    verdicts[verdict or "none"] = verdicts[verdict or "none"] + 1
    return verdict
  end
  for i = 1, attempts do
    local strat = seq[(i - 1) % #seq + 1]
    local verdict = reset_and_read(strat)
    if verdict == "app" and strat.longer then
      self:log("verbose", "the app started after %s: IO0 was released too early; holding it longer", strat.name)
      strat = strat.longer
      verdict = reset_and_read(strat)
    end
    if verdict ~= "app" then
      local value = try_sync(strat)
      if value then
        self.reset_used = strat.name
        self.sync_attempts = i
        write_memory(mem_path, key, strat.name)
        return value
      end
    end
    self:log("verbose", "no sync after %s reset (attempt %d/%d)", strat.name, i, attempts)
  end
  local names = {}
  for k in pairs(tried) do names[#names + 1] = k end
  table.sort(names)
  -- One message that says why (issue 12): nothing at all, unreadable bytes, the app every time,
  -- or a loader that waits but does not answer.
  local hint = ""
  local boot = bootlog:match("boot:(0x%x+)")
  if seen_bytes == 0 then
    hint = " Nothing at all came back after any reset: a wrong port, a charge-only USB cable, or a board "
      .. "without power."
  elseif verdicts.download > 0 then
    hint = " The chip said it waits for download but did not answer SYNC: another program may be reading "
      .. "the port, or the adapter's TX/RX do not reach the chip."
  elseif boot and verdicts.app > 0 then
    hint = string.format(" The chip printed a normal boot log (boot:%s): it started its app instead of the "
      .. "bootloader, so IO0 was not low at reset, every time, even with IO0 held 550 ms.", boot)
  elseif verdicts.none > 0 then
    hint = " The chip printed something unreadable after reset: its boot log at another baud rate (74880 "
      .. "on an ESP8266 is normal) or noise on the line."
  end
  local manual = (opts.reset == "none" or opts.reset == "no")
    and "With reset=none the board must already wait in its bootloader: hold BOOT (IO0), tap RESET (EN), "
      .. "release BOOT, then run again."
    or "If the board has no auto-reset circuit, hold BOOT (IO0), tap RESET (EN), release BOOT and run "
      .. "again with reset=none."
  self:raise("timeout", { hint = manual }, "no answer to SYNC after %d attempts (reset modes tried: %s).%s Check that "
    .. "this is the board's port, that the USB cable carries data (not a charge-only cable) and that no other "
    .. "program holds the port. %s", attempts, table.concat(names, "; "), hint, manual)
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

local function connect_once(port, opts)
  local self = setmetatable({
    port = port, logf = opts.log or default_log, stub = false,
    conn = command.new(port, { trace = opts.trace, timeout_scale = opts.timeout_scale }),
    opts = opts,
    t_start = time.now(),
  }, Chip)
  if port:baud() ~= M.ROM_BAUD then port:set_baud(M.ROM_BAUD) end
  local value = self:sync_loop(opts)
  local stub_running = value == 0 -- the stub answers SYNC with value 0 (sync_stub_detected)
  local c = self:detect()
  if opts.chip and chips.get(opts.chip) and chips.get(opts.chip) ~= c then
    local id = M.board_for_chip(c.key)
    local hint = id and string.format("use --board %s", id) or ("no board file for " .. c.name .. " yet")
    self:raise("refused", { hint = hint, found = c.key, board = id }, "expected %s (board file) but found %s: %s",
      chips.get(opts.chip).name, c.name, hint)
  end
  self.chip, self.name, self.key = c, c.name, c.key
  self.conn.status_len = c.status_len
  self.secure_download = self.security and self.security.secure_download or false
  if not self.secure_download then self.mac = self:read_mac() end
  local want_stub = opts.stub ~= "no" and opts.stub ~= false and not self.secure_download
  local target = opts.baud or M.ROM_BAUD
  if opts.reset == "usb-jtag" or opts.reset == "usb_jtag" then
    -- USB-Serial/JTAG ignores the line coding; changing it only risks the timeouts seen with
    -- esptool-js on S3 (anchors.md §1.3), so the link stays as it is.
    target = port:baud()
  end
  local stub
  if want_stub and not stub_running then
    local explicit = type(opts.stub) == "string" and opts.stub or nil
    local err
    stub, err = stubmod.load(c.key, explicit)
    if not stub and explicit then
      self:raise("not_found", { hint = "pass stub=PATH to a stub JSON, or stub=no" }, "%s", err)
    elseif not stub then
      -- Issue 13: a missing stub is no reason to refuse. The ROM writes 1 KiB blocks with a
      -- round trip each and erases up front (slower), and still verifies by MD5 where it can.
      self.stub_missing = err
      self:log("warn", "%s: flashing with the ROM loader (slower%s); set MPCTL_STUB_DIR to a folder of "
        .. "<chip>.json stubs (or MPCTL_NODE_MODULES to a node_modules holding esptool-js) to use the stub",
        stubmod.short_reason(c.key), c.rom.md5 and ", still verified by MD5" or "; this ROM cannot verify")
    end
  end
  if stub_running then
    self.stub = true
  elseif stub then
    self.stub_path = stub.path
    -- Upload the stub at the target rate when the ROM can change baud: ~9 KB at 115200 costs
    -- ~0.8 s, at 921600 ~0.1 s. If the stub does not greet us at that rate, redo it the
    -- esptool way (stub at 115200, then change).
    local early = opts.early_baud ~= false and target ~= M.ROM_BAUD and c.rom.change_baud
    if early then early = self:change_baud(target) end
    -- The stub greets within milliseconds; after an early baud change a silent stub most likely
    -- reset the UART to the ROM rate, so do not wait esptool's full 3 s for it.
    local started, why = self:run_stub(stub, early and 1 or 3)
    if not started then
      if early then errors.raise("protocol", port.name, "stub silent after an early baud change", { retry = "late_baud" }) end
      self:raise("protocol", { hint = "run again; if it keeps failing use stub=no (ROM loader)" },
        "flasher stub did not start (%s)", tostring(why))
    end
  end
  if port:baud() ~= target then self:change_baud(target) end
  self.conn.status_len = self.stub and 2 or c.status_len
  self:attach_flash(opts)
  self.t_connected = time.now()
  return self
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

M.BAUD_LADDER = { 3000000, 2000000, 1500000, 921600, 460800, 230400, 115200 }

local function next_lower(baud)
  for _, b in ipairs(M.BAUD_LADDER) do
    if b < baud then return b end
  end
  return M.ROM_BAUD
end
M.next_lower = next_lower

local function connect_any_baud(port, opts)
  local notes = {}
  for _ = 1, 8 do
    local ok, res = pcall(connect_once, port, opts)
    if ok then
      if #notes > 0 then res.baud_note = table.concat(notes, "; ") end
      return res
    end
    local retry = errors.is_error(res) and res.retry or nil
    if retry ~= "lost_baud" and retry ~= "late_baud" then error(res, 0) end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.early_baud = false
    if retry == "lost_baud" then
      -- The chip switched but nothing useful came back: the adapter (or cable) cannot carry
      -- that rate. Reconnect from reset one step lower (esptool-js falls back to 115200).
      local want = opts.baud or M.ROM_BAUD
      o.baud = next_lower(want)
      notes[#notes + 1] = string.format("no answer at %d baud, using %d", want, o.baud)
      default_log("warn", "no answer after changing to %d baud; reconnecting at %d", want, o.baud)
    else
      default_log("verbose", "stub silent after an early baud change; uploading it at %d", M.ROM_BAUD)
    end
    opts = o
  end
  errors.raise("protocol", port.name, "could not find a working baud rate")
end

function M.connect(port, opts)
  return connect_any_baud(port, opts or {})
end

-- Connect again from reset on the same port (the stub rebooted, or the board reset mid-write),
-- keeping this object, its byte counters and the options it was connected with.
function Chip:reconnect(why)
  self:log("warn", "%s; reconnecting", why)
  local old = self.conn
  local fresh = connect_any_baud(self.port, self.opts)
  for k, v in pairs(fresh) do self[k] = v end
  self.conn.tx, self.conn.rx = self.conn.tx + old.tx, self.conn.rx + old.rx
  self.conn.retries = self.conn.retries + old.retries
  self.reconnects = (self.reconnects or 0) + 1
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

require("mpctl.esp.flash")(M, Chip)

return M
