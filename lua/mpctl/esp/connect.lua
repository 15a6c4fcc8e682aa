-- Connecting to the ESP ROM loader, part of mpctl.esp: reset into the bootloader and SYNC, trying
-- each reset sequence of the mode (the one that worked last time on this port first, remembered in
-- $XDG_STATE_HOME/mpctl/esp_reset.json), read the ROM's boot line to tell "app started" from
-- "waiting for download", say in one message why nothing answered, then detect the chip, start the
-- stub and change baud, falling back one baud step (or to a late stub upload) when the link does not
-- carry the faster rate. Chip:reconnect starts it all again from reset on the same port.
-- Sources: esptool `loader.py` (connect, _connect_attempt, sync, run_stub, change_baud),
-- `reset.py`; esptool-js `lib/esploader.js` (baud fallback); anchors.md §3.1, §3.6, §1.3.
-- Installed into mpctl.esp's module and Chip class, as flash.lua is; returns connect(port, opts).
local command = require("mpctl.esp.command")
local chips = require("mpctl.esp.chips")
local reset = require("mpctl.esp.reset")
local stubmod = require("mpctl.esp.stub")
local time = require("mpctl.time")
local errors = require("mpctl.errors")

return function(M, Chip, default_log)

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

  return connect_any_baud
end
