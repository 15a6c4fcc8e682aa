--[[ mpctl.esp.target: the ESP32-family / ESP8266 driver of the target interface (mpctl.target).

It adapts mpctl.esp's Chip (ROM loader or flasher stub over the serial bootloader) through its
public methods: esp.connect, chip:check_parts, chip:write, chip:read_flash, chip:erase_region,
chip:erase_all, chip:hard_reset. The interface is documented in lua/mpctl/target.lua.

    local t <close> = require("mpctl.esp.target").connect{ board = b, port = "sim://esp32", opts = { baud = 921600 } }

ESP facts: flash is addressed from 0 (flash_base 0), the device id is the factory MAC (eFuse),
the REPL appears on the same serial port after a hard reset (EN pulse with IO0 high).
]]
local esp = require("mpctl.esp")
local target = require("mpctl.target")

local D = { family = "esp" }

local T = {}
T.__index = T

-- A generated, valid app image for the board's chip (firmware=demo: no download needed).
function D.demo_image(board)
  return require("mpctl.esp.imagegen").generate { chip = board.chip }
end

local function num(v) return v ~= nil and tonumber(v) or nil end

-- Connect options from the board file, overridden by what the person gave (reset=, baud=, stub=).
local function connect_opts(board, url, opts, log)
  local o = esp.board_opts(board, url)
  if opts.reset ~= nil and opts.reset ~= "" then o.reset = opts.reset end
  o.baud = num(opts.baud) or o.baud
  if opts.stub == false or opts.stub == "no" then o.stub = "no"
  elseif type(opts.stub) == "string" and opts.stub ~= "" and opts.stub ~= "yes" then o.stub = opts.stub end
  o.flash_size = opts.flash_size or o.flash_size
  o.log = log
  o.trace = opts.trace
  return o
end

function D.connect(ctx)
  local board = ctx.board
  local opts = ctx.opts or {}
  local port, owned = ctx.port, false
  if type(port) == "string" then
    port = require("mpctl.serial").open(port, { baud = esp.ROM_BAUD })
    owned = true
  end
  local self = setmetatable({ family = "esp", board = board, port = port, owned = owned, event = "esp_flash",
    where = tostring(port.name or ctx.port), log = ctx.log or function() end, app_baud = esp.ROM_BAUD }, T)
  local co = connect_opts(board, port.name, opts, ctx.log)
  self.reset_mode = co.reset
  local ok, chip = pcall(esp.connect, port, co)
  if not ok then
    if owned then pcall(port.close, port) end
    error(chip, 0)
  end
  self.chip = chip
  self.baud = port:baud()
  self.log("info", "%s, MAC %s, %s flash, %s at %d baud (reset: %s)", chip.name, chip.mac or "?",
    esp.chips.size_name(chip.flash_size), chip.stub and "stub" or "ROM loader", self.baud, chip.reset_used or "?")
  if chip.baud_note then self.log("warn", "%s", chip.baud_note) end
  return self
end

function T:identify()
  local c = self.chip
  return { chip = c.name, flash_size = c.flash_size, flash_base = 0, id = c.mac, mac = c.mac,
    stub = c.stub and true or false, reset = c.reset_used, baud = self.baud, baud_note = c.baud_note }
end

-- Refuse a wrong image before anything is erased: a bundle built for another chip, parts that
-- overlap or overflow the flash, an app image for another chip, a damaged header.
function T:check_image(parts)
  local c = self.chip
  for _, p in ipairs(parts) do
    if p.chip and esp.chips.get(p.chip) ~= esp.chips.get(c.key) then
      local name = p.name or string.format("part at 0x%X", p.offset)
      target.error("refused", self.where, string.format("%s is built for %s, but board %s is %s (found %s); " ..
        "nothing was written", name, p.chip, self.board.id, self.board.chip, c.name))
    end
  end
  local ok, err = pcall(c.check_parts, c, parts)
  if not ok then
    local why = type(err) == "table" and (err.detail or err.msg) or tostring(err):gsub("^esp on [^:]*: ", "")
    target.error("refused", self.where, tostring(why) .. "; nothing was written")
  end
end

function T:read(addr, size, opts)
  opts = opts or {}
  return self.chip:read_flash(addr, size, { label = opts.label or string.format("read 0x%X", addr),
    progress = opts.progress })
end

-- How far a write got, for the error of an interrupted or failed write: mpctl.esp's Chip writes
-- run by run (write_run, one contiguous span of sectors that differ), so the first address not
-- yet acknowledged is the current run's start plus the bytes acknowledged in it.
local function track_runs(self)
  local chip = self.chip
  local orig = chip.write_run
  chip.write_run = function(c, addr, chunk, st)
    self.reached = addr
    local d0, up = st.done, st.update
    if type(d0) == "number" and type(up) == "function" then
      st.update = function(x)
        self.reached = addr + math.floor(st.done - d0)
        return up(x)
      end
    end
    local failure = orig(c, addr, chunk, st)
    st.update = up
    if not failure then self.reached = addr + #chunk end
    -- a failed block during Ctrl-C is the interrupt: stop here, not after liveness probes and retries
    local intr = failure and target.interrupted(failure.msg, self.where)
    if intr then error(intr, 0) end
    return failure
  end
  return function() chip.write_run = nil end -- back to the method
end

function T:write(parts, opts)
  opts = opts or {}
  local verify = opts.verify ~= false
  local c = self.chip
  local sorted = {}
  for i, p in ipairs(parts) do sorted[i] = p end
  table.sort(sorted, function(a, b) return a.offset < b.offset end)
  local total = { raw = 0, sent = 0, wire = 0, written = 0, retries = 0, seconds = 0, verified = verify }
  local untrack = track_runs(self)
  for _, p in ipairs(sorted) do
    self.reached = p.offset
    local label = (opts.label or "write") .. (#sorted > 1 and (" " .. (p.name or string.format("0x%X", p.offset))) or "")
    local ok, st = pcall(c.write, c, p.offset, p.data, { verify = verify, erased = opts.erased, label = label })
    if not ok then
      untrack()
      error(target.resumable(target.interrupted(st, self.where) or st, self.reached, self.where), 0)
    end
    for _, k in ipairs { "raw", "sent", "wire", "written", "retries", "seconds" } do total[k] = total[k] + (st[k] or 0) end
    total.verified = total.verified and st.verified
  end
  untrack()
  if not verify then
    total.verify_skipped, total.verify_why = true, "verify=no"
  elseif not total.verified then
    -- Secure Download Mode and loaders without SPI_FLASH_MD5 cannot be asked what they hold.
    total.verify_skipped, total.verify_why = true, c.secure_download and "Secure Download Mode allows no MD5"
      or string.format("the %s %s cannot compute an MD5", c.name, c.stub and "stub" or "ROM loader")
  end
  return total
end

function T:erase(addr, size) return self.chip:erase_region(addr, size) end
function T:erase_all() return self.chip:erase_all() end

-- Leave the loader and boot the app; the port goes back to the ROM's 115200, where MicroPython's
-- REPL talks. The REPL appears on this same port.
function T:reset_to_app()
  self.chip:hard_reset(self.reset_mode == "usb-jtag" or self.reset_mode == "usb_jtag")
  self.port:set_baud(self.app_baud)
  self.in_app = true
  return self.port
end

-- Family fields of the flash event (bench/esp_flash.lua reads connect_seconds, wire_total, baud).
function T:summary()
  local c = self.chip
  return { mac = c.mac, wire_total = c.conn.tx, connect_seconds = c.t_connected - c.t_start, baud = self.baud,
    stub = c.stub_path ~= nil }
end

function T:close()
  if self.closed then return end
  self.closed = true
  -- A port left at the loader's fast rate would greet the next user (the REPL) with garbage.
  if not self.in_app and self.port then pcall(self.port.set_baud, self.port, self.app_baud) end
  if self.owned then pcall(self.port.close, self.port) end
end
T.__close = T.close

return D
