--[[ mpctl.sim.esp: simulated ESP32 / ESP32-S3 / ESP32-C3 / ESP8266 dev boards.

    mpctl sim esp32 --listen rfc2217://127.0.0.1:0 [k=v ...]   (prints the address it listens on)
    --port "sim://esp32?flash_file=board.bin&timing=off"      (same simulator behind sim://)

What is simulated (options in docs/simulators.md):
  * the DTR/RTS auto-reset circuit (boot.lua) driven by the RFC 2217 control events of the port;
  * the ROM serial bootloader (rom.lua) and, after a stub upload, the flasher stub (stub.lua);
  * a SPI NOR flash (flash.lua) with datasheet erase/program times, kept in a file if asked;
  * a UART wire: output paced at baud/10 bytes per second, input accounted the same way, garbage
    when host and chip disagree on the baud rate or the USB-UART bridge cannot do the rate;
  * seeded fault injection (drop/corrupt bytes of frames, reply delay, reset mid-write);
  * after a normal boot of a valid app image: an ESP32-like boot log and MicroPython banner,
    then the real MicroPython REPL (WebAssembly build, see mpctl.sim.micropython).
]]
local serial = require("mpctl.serial")
local slip = require("mpctl.slip")
local time = require("mpctl.time")
local hash = require("mpctl.hash")
local zlib = require("mpctl.zlib")
local fs = require("mpctl.fs")

local chips = require("mpctl.sim.esp.chips")
local flashmod = require("mpctl.sim.esp.flash")
local bootmod = require("mpctl.sim.esp.boot")
local rom = require("mpctl.sim.esp.rom")
local stub = require("mpctl.sim.esp.stub")

local M = {}
local Dev = {}
Dev.__index = Dev

-- ---- options --------------------------------------------------------------------------------

local function num(v, what, default)
  if v == nil or v == "" then return default end
  if type(v) == "number" then return v end
  local n = tonumber(v)
  if not n then error(string.format("sim esp: option %s=%s is not a number", what, tostring(v)), 0) end
  return n
end

local function bool(v, default)
  if v == nil or v == "" then return default end
  if v == true or v == false then return v end
  local s = tostring(v):lower()
  if s == "1" or s == "on" or s == "true" or s == "yes" then return true end
  if s == "0" or s == "off" or s == "false" or s == "no" then return false end
  error("sim esp: expected on/off, got '" .. s .. "'", 0)
end

local KNOWN = {
  chip = 1, flash_size = 1, size = 1, flash_file = 1, file = 1, timing = 1, wire = 1, seed = 1,
  drop = 1, corrupt = 1, delay = 1, reset_at = 1, max_baud = 1, baud = 1, boot = 1,
  strap_delay = 1, min_en_low = 1, mac = 1, app = 1, trace = 1, heapsize = 1, node = 1,
  boot_delay = 1, en_delay = 1, usb = 1,
}

-- USB full-speed bulk: at most 19 packets of 64 bytes per 1 ms frame (USB 2.0 spec §5.8.4,
-- table 5-9), the ceiling of a USB-Serial/JTAG or USB-OTG CDC port whatever "baud" is set.
M.USB_FS_BYTES_PER_S = 19 * 64 * 1000

local USB_MODES = { none = "none", no = "none", jtag = "jtag", ["usb-jtag"] = "jtag",
  usb_jtag = "jtag", otg = "otg", ["usb-otg"] = "otg", usb_otg = "otg" }

function M.parse_opts(o)
  o = o or {}
  for k in pairs(o) do
    if type(k) == "string" and not KNOWN[k] then
      error("sim esp: unknown option '" .. k .. "' (see docs/simulators.md)", 0)
    end
  end
  local timing = tostring(o.timing or "typ"):lower()
  if timing == "on" or timing == "1" or timing == "true" then timing = "typ" end
  if timing == "0" or timing == "false" or timing == "no" then timing = "off" end
  if timing ~= "typ" and timing ~= "max" and timing ~= "off" then
    error("sim esp: timing= wants on, typ, max or off, got '" .. timing .. "'", 0)
  end
  local p = {
    chip = chips.get(o.chip),
    flash_size = o.flash_size or o.size or "4MB",
    flash_file = o.flash_file or o.file,
    timing = timing,
    wire = bool(o.wire, timing ~= "off"),
    seed = math.floor(num(o.seed, "seed", 1)),
    drop = num(o.drop, "drop", 0),
    corrupt = num(o.corrupt, "corrupt", 0),
    delay = num(o.delay, "delay", 0) / 1000,
    reset_at = o.reset_at and math.floor(num(o.reset_at, "reset_at")) or nil,
    max_baud = num(o.max_baud, "max_baud", nil),
    baud = num(o.baud, "baud", 115200),
    boot = tostring(o.boot or "auto"),
    -- EN's RC delay (10 kOhm pull-up, 0.1-1 uF on DevKitC-style boards: 1-10 ms) before the
    -- straps latch; the upper end also keeps separately sent DTR/RTS changes together.
    strap_delay = num(o.strap_delay, "strap_delay", 10) / 1000,
    min_en_low = num(o.min_en_low, "min_en_low", 5) / 1000,
    mac = o.mac,
    app = tostring(o.app or "micropython"),
    trace = o.trace,
    heapsize = o.heapsize, node = o.node,
    boot_delay = num(o.boot_delay, "boot_delay", timing ~= "off" and 300 or 0) / 1000,
    -- EN's rise after the reset transistor lets go: 0 on DevKitC-style boards, ~100 ms with
    -- the common 10 uF EN capacitor (issue 12).
    en_delay = num(o.en_delay, "en_delay", 0) / 1000,
    usb = USB_MODES[tostring(o.usb or "none"):lower()],
  }
  if not p.usb then error("sim esp: usb= wants none, jtag or otg, got '" .. tostring(o.usb) .. "'", 0) end
  if p.usb == "jtag" and not p.chip.usb_jtag then
    error("sim esp: " .. p.chip.name .. " has no USB-Serial/JTAG (usb=jtag: esp32c3, esp32s3, esp32c6)", 0)
  end
  if p.usb == "otg" and not p.chip.usb_otg then
    error("sim esp: " .. p.chip.name .. " has no ROM USB-OTG CDC (usb=otg: esp32s2, esp32s3)", 0)
  end
  if p.boot ~= "auto" and p.boot ~= "download" and p.boot ~= "flash" then
    error("sim esp: boot= wants auto, download or flash", 0)
  end
  return p
end

-- ---- deterministic random numbers (xorshift32), so a seed reproduces a fault pattern --------

local function rng_new(seed)
  local s = (seed ~ 0x9E3779B9) & 0xFFFFFFFF
  if s == 0 then s = 0x12345678 end
  local r = {}
  function r.next()
    s = s ~ ((s << 13) & 0xFFFFFFFF)
    s = s ~ (s >> 17)
    s = s ~ ((s << 5) & 0xFFFFFFFF)
    return s
  end
  function r.float() return r.next() / 4294967296 end
  function r.int(n) return r.next() % n end
  return r
end

local function parse_mac(s, chip, seed)
  if s then
    local b = {}
    for x in tostring(s):gmatch("%x%x") do b[#b + 1] = tonumber(x, 16) end
    if #b ~= 6 then error("sim esp: mac= wants aa:bb:cc:dd:ee:ff", 0) end
    return b
  end
  local r = rng_new(seed + 7)
  return { chip.oui[1], chip.oui[2], chip.oui[3], r.int(256), r.int(256), r.int(256) }
end

-- ---- device ---------------------------------------------------------------------------------

function M.new(opts)
  local o = M.parse_opts(opts)
  local chip = o.chip
  local mac = parse_mac(o.mac, chip, o.seed)
  local self = setmetatable({
    o = o, chip = chip, mac = mac, hash = hash, zlib = zlib,
    flash = flashmod.new { size = o.flash_size, file = o.flash_file, timing = o.timing, fs = fs },
    rng = rng_new(o.seed),
    host_baud = o.baud, usb = o.usb,
    stats = { frames_in = 0, frames_out = 0, bytes_in = 0, bytes_out = 0, flash_data_bytes = 0,
              commands = {}, garbled_in = 0, dropped = 0, corrupted = 0, resets = 0, boots = {} },
    reset_fired = false,
    trace_file = nil,
  }, Dev)
  if o.trace then self.trace_file = assert(io.open(o.trace, "a")) end
  self:power_off()
  return self
end

function Dev:log(fmt, ...)
  if self.trace_file then
    self.trace_file:write(string.format("%.6f ", time.now()), string.format(fmt, ...), "\n")
    self.trace_file:flush()
  end
end

-- Everything volatile goes back to power-on state (flash stays).
function Dev:power_off()
  self.mode = "off"          -- off | download | stub | app | dead
  self.stub = false
  self.regs = {}
  for k, v in pairs(self.chip.registers(self.mac)) do self.regs[k] = v end
  if self.usb == "otg" then self.regs[self.chip.usb_otg.reg] = self.chip.usb_otg.value end
  self.ld = { attached = false, flash_limit = nil, write = nil, mem = nil, ram = {}, reading = nil }
  self.baud_fixed = nil      -- set by CHANGE_BAUDRATE; nil = auto (follows the host)
  self.uart_baud = self.chip.boot_baud
  self.out = {}
  self.out_head = 1
  self.inq = {}
  self.in_head = 1
  self.cpu_free = 0
  self.flash_free = 0
  self.in_free = 0
  self.wire_free = 0
  self.decoder = slip.decoder()
  self:stop_app()
end

-- The baud rate the chip's UART runs at now.
function Dev:chip_baud()
  if self.mode == "download" and not self.baud_fixed then return self.host_baud end
  return self.baud_fixed or self.uart_baud
end

-- Bytes per second on the wire from the chip (out) or to it (in): baud/10 on a UART (8N1),
-- the USB full-speed ceiling on a native USB port (the baud rate means nothing there).
function Dev:wire_rate(dir)
  if self.usb ~= "none" then return M.USB_FS_BYTES_PER_S end
  if dir == "in" then return self.host_baud / 10 end
  return self:chip_baud() / 10
end

-- Host and chip agree, and the bridge can do the host's rate (always, on native USB).
function Dev:line_ok()
  if self.usb ~= "none" then return true end
  if self.o.max_baud and self.host_baud > self.o.max_baud then return false end
  return math.abs(self:chip_baud() - self.host_baud) <= self.host_baud * 0.03
end

-- The ROM measures the host's rate from the first SYNC frame and keeps it (serial-protocol.rst:
-- "the sync packets can be sent at any baud rate, and the UART peripheral will detect this").
function Dev:autobaud()
  if not self.baud_fixed then
    self.baud_fixed = self.host_baud
    self:log("autobaud: %d", self.host_baud)
  end
end

function Dev:now() return self.clock or time.now() end

function Dev:busy(cost)
  local t = math.max(self.cpu_free, self:now())
  if self.o.timing ~= "off" then t = t + cost end
  self.cpu_free = t
  return t
end

-- Wait until background flash writes are done before the next step.
function Dev:after_flash(fn)
  self.cpu_free = math.max(self.cpu_free, self.flash_free, self:now())
  fn()
end

-- Stub data blocks: ACK once the previous block's write has finished, then write this one.
function Dev:background_write(cost, ack)
  local t = math.max(self.cpu_free, self.flash_free, self:now())
  self.cpu_free = t
  self.flash_free = t + ((self.o.timing ~= "off") and cost or 0)
  ack()
end

function Dev:persist()
  local ok, err = pcall(self.flash.save, self.flash)
  if not ok then io.stderr:write("sim esp: saving flash: ", tostring(err), "\n") end
end

-- ---- output ---------------------------------------------------------------------------------

function Dev:enqueue(item)
  item.at = math.max(item.at or 0, self.cpu_free, self:now())
  self.out[#self.out + 1] = item
end

function Dev:fault_frame(payload, dir)
  local o = self.o
  if o.drop > 0 and #payload > 0 and self.rng.float() < o.drop then
    local i = self.rng.int(#payload) + 1
    payload = payload:sub(1, i - 1) .. payload:sub(i + 1)
    self.stats.dropped = self.stats.dropped + 1
    self:log("fault: dropped byte %d of %s frame", i, dir)
  end
  if o.corrupt > 0 and #payload > 0 and self.rng.float() < o.corrupt then
    local i = self.rng.int(#payload) + 1
    local b = payload:byte(i) ~ (self.rng.int(255) + 1)
    payload = payload:sub(1, i - 1) .. string.char(b) .. payload:sub(i + 1)
    self.stats.corrupted = self.stats.corrupted + 1
    self:log("fault: corrupted byte %d of %s frame", i, dir)
  end
  return payload
end

function Dev:send_frame(payload)
  payload = self:fault_frame(payload, "out")
  self.stats.frames_out = self.stats.frames_out + 1
  self:enqueue { data = slip.encode(payload), at = self:now() + self.o.delay }
end

function Dev:send_text(s)
  self:enqueue { data = s }
end

function Dev:status_bytes(code)
  local long = not self.stub and self.chip.rom_status_len == 4
  if code then return string.char(1, code) .. (long and "\0\0" or "") end
  return long and "\0\0\0\0" or "\0\0"
end

function Dev:respond(op, value, data, code)
  local body = data .. self:status_bytes(code)
  self:log("reply op=0x%02X value=0x%08X len=%d%s", op, value, #body,
    code and string.format(" ERROR 0x%02X", code) or "")
  self:send_frame(string.pack("<BBHI4", 1, op, #body, value & 0xFFFFFFFF) .. body)
end

-- An opcode this loader does not have. The ROM answers "invalid message" (status 1, 0x05) in a
-- reply whose op field does not match the request (that is how esptool and esptool-js tell
-- UnsupportedCommandError from a failed command) and repeats it (anchors §3.1: ~8 times).
function Dev:unsupported(cmd)
  self.stats.unsupported = (self.stats.unsupported or 0) + 1
  if self.stub then return self:respond(cmd.op, 0, "", 0xFF) end
  for _ = 1, 8 do self:respond(0x00, 0, "", 0x05) end
end

function Dev:change_chip_baud(new)
  self:enqueue { baud = new }
end

function Dev:reboot_after_output(mode, cause)
  self:enqueue { reboot = mode, cause = cause }
end

-- Writes what is due; returns the time of the next output step (or nil).
function Dev:pump(port)
  local now = time.now()
  while self.out_head <= #self.out do
    local e = self.out[self.out_head]
    if e.at > now then return e.at end
    if e.baud then
      self.baud_fixed = e.baud
      self:log("chip baud -> %d", e.baud)
      self.out_head = self.out_head + 1
    elseif e.reboot then
      self.out_head = self.out_head + 1
      self:boot(e.reboot, e.cause)
      return self:pump(port)
    elseif e.fn then
      self.out_head = self.out_head + 1
      e.fn()
    else
      local rate = self:wire_rate("out")
      if self.o.wire and self.wire_free > now then return self.wire_free end
      local pos = e.pos or 1
      local n = #e.data - pos + 1
      if self.o.wire then n = math.min(n, math.max(16, math.floor(rate * 0.004))) end
      local piece = e.data:sub(pos, pos + n - 1)
      if not self:line_ok() then
        -- Host and chip disagree on the rate: what arrives is noise of about the same length.
        local g = {}
        for i = 1, #piece do g[i] = string.char(self.rng.int(256)) end
        piece = table.concat(g)
      end
      local wok, werr = pcall(port.write, port, piece, 30)
      if not wok then
        -- The client went away mid-output (it closed the port while the board talked).
        self:log("write failed: %s", tostring(werr))
        self.hung_up = true
        return nil
      end
      self.stats.bytes_out = self.stats.bytes_out + #piece
      if self.o.wire then self.wire_free = math.max(self.wire_free, now) + #piece / rate end
      if pos + n > #e.data then self.out_head = self.out_head + 1 else e.pos = pos + n end
      if self.o.wire then now = time.now() end
    end
  end
  self.out, self.out_head = {}, 1
  return nil
end

-- ---- boot -----------------------------------------------------------------------------------

-- Header check of the app at the chip's boot offset (anchors §3.1 image header): magic 0xE9,
-- 1..16 segments, flash mode 0..3, and on ESP32-and-later the chip id of the extended header.
function Dev:image_ok()
  local off = self.chip.boot_offset
  local h = self.flash:read(off, 24)
  if h:byte(1) ~= 0xE9 then return false, string.unpack("<I4", h) end
  local nseg, mode = h:byte(2), h:byte(3)
  if nseg < 1 or nseg > 16 or mode > 3 then return false, string.unpack("<I4", h) end
  if self.chip.image_chip_id then
    local id = string.unpack("<I2", h, 13)
    if id ~= self.chip.image_chip_id then return false, string.unpack("<I4", h) end
  end
  return true
end

local BANNER_BOARD = {
  esp32 = "Generic ESP32 module with ESP32", esp32s3 = "Generic ESP32S3 module with ESP32S3",
  esp32c3 = "ESP32C3 module with ESP32C3", esp8266 = "ESP module with ESP8266",
  esp32s2 = "Generic ESP32S2 module with ESP32S2", esp32c6 = "Generic ESP32C6 module with ESP32C6",
}

-- Reset released: the ROM starts, prints its boot log at the chip's boot baud rate, and either
-- waits for the host (download) or boots the app from flash.
function Dev:boot(mode, cause)
  self:power_off()
  self.stats.boots[#self.stats.boots + 1] = mode
  self:log("boot %s (%s)", mode, cause or "poweron")
  self.uart_baud = self.chip.boot_baud
  self:send_text(chips.boot_log(self.chip, mode == "download", cause))
  if mode == "download" then
    -- The loader listens (and auto-bauds) once the log is out.
    self.mode = "booting"
    self:enqueue { fn = function() self.mode = "download" end }
    return
  end
  local ok, word = self:image_ok()
  if not ok then
    self.mode = "dead"
    -- What an ESP32 with erased or foreign flash prints before it boot-loops.
    local line = string.format("invalid header: 0x%08x\r\n", word or 0xFFFFFFFF)
    self:send_text(line .. line .. line)
    return
  end
  self.mode = "app"
  if self.chip.key ~= "esp8266" then
    self:send_text("configsip: 0, SPIWP:0xee\r\nclk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00," ..
      "hd_drv:0x00,wp_drv:0x00\r\nmode:DIO, clock div:2\r\nentry 0x400805b0\r\n")
  end
  -- MicroPython's UART REPL runs at 115200 on every ESP port.
  self:enqueue { fn = function() self.uart_baud = 115200 end }
  self.cpu_free = self:now() + self.o.boot_delay
  self:enqueue { fn = function() self:start_app() end }
end

function Dev:start_stub()
  self.stub = true
  self.mode = "stub"
  self.ld.attached = true
  self:log("stub running")
  self:send_frame("OHAI")
end

function Dev:reset_point(addr, n)
  local r = self.o.reset_at
  if r and not self.reset_fired and addr <= r and r < addr + n then
    self.reset_fired = true
    return r - addr
  end
  return nil
end

-- reset_at=: the board loses power mid-write (as a USB re-enumeration would do) and comes back
-- with a normal boot.
function Dev:power_glitch()
  self.stats.resets = self.stats.resets + 1
  self:log("fault: reset mid-write")
  self:persist()
  self:boot("flash", "poweron")
end

-- ---- the MicroPython app --------------------------------------------------------------------

function Dev:start_app()
  if self.o.app == "none" then return end
  local ok, mp = pcall(require, "mpctl.sim.micropython")
  if not ok then
    self:send_text("\r\nMicroPython (simulator: mpctl.sim.micropython missing)\r\n")
    return
  end
  local sok, app = pcall(mp.spawn, { heapsize = self.o.heapsize, node = self.o.node })
  if not sok then
    self:send_text("\r\n" .. tostring(app) .. "\r\n")
    self.mode = "dead"
    return
  end
  self.app = { mod = mp, dev = app, banner_seen = false, buf = "" }
  self:log("app started")
end

function Dev:stop_app()
  if self.app then
    self.app.mod.stop(self.app.dev)
    self.app = nil
  end
end

-- Bytes from the MicroPython process: its own banner is replaced by an ESP32-like one.
function Dev:app_output(s)
  local a = self.app
  if not a.banner_seen then
    a.buf = a.buf .. s
    local i = a.buf:find(">>> ", 1, true)
    if not i then return end
    local ver = a.buf:match("MicroPython (v[%w%.%-]+ on [%d%-]+)") or "v1.27.0 on 2025-12-10"
    local rest = a.buf:sub(i)
    a.banner_seen, a.buf = true, ""
    s = "MicroPython " .. ver .. "; " .. BANNER_BOARD[self.chip.key] .. "\r\n" ..
      "Type \"help()\" for more information.\r\n" .. rest
  end
  self:send_text(s)
end

function Dev:app_pump()
  local a = self.app
  if not a then return end
  local ok, s = pcall(a.dev.port.read, a.dev.port, 65536, 0)
  if not ok or (s == "" and a.dev.port:is_eof()) then
    -- MicroPython's soft reset ends the process: start a new one (a fresh banner follows).
    self:stop_app()
    self:start_app()
    return
  end
  if s ~= "" then self:app_output(s) end
end

-- ---- input ----------------------------------------------------------------------------------

function Dev:handle(payload)
  if self.ld.reading and stub.on_ack(self, payload) then return end
  if #payload < 8 then return end
  local dir, op, len, chk = string.unpack("<BBHI4", payload)
  if dir ~= 0 then return end
  local cmd = { op = op, chk = chk, data = payload:sub(9) }
  self.stats.commands[op] = (self.stats.commands[op] or 0) + 1
  self:log("cmd op=0x%02X len=%d%s", op, #cmd.data, self.stub and " (stub)" or "")
  if len ~= #cmd.data then
    return self:respond(op, 0, "", self.stub and 0xC0 or 0x05)
  end
  local h
  if self.stub then
    h = stub.handlers[op] or (op ~= rom.OP.READ_FLASH_SLOW and rom.handlers[op])
  else
    h = rom.handlers[op]
  end
  if not h then return self:unsupported(cmd) end
  local ok, err = pcall(h, self, cmd)
  if not ok then
    -- A request the model cannot carry out (e.g. an address past the flash): fail the command
    -- as the chip would, not the whole session.
    self:log("cmd op=0x%02X failed: %s", op, tostring(err))
    self:respond(op, 0, "", self.stub and 0xC4 or 0x06)
  end
end

function Dev:on_data(data, now)
  self.last_rx = now
  self.stats.bytes_in = self.stats.bytes_in + #data
  if self.mode == "app" then
    if self.app and self:line_ok() then pcall(self.app.dev.port.write, self.app.dev.port, data, 5) end
    return
  end
  if self.mode ~= "download" and self.mode ~= "stub" then return end
  if not self:line_ok() then
    self.stats.garbled_in = self.stats.garbled_in + #data
    self.decoder:reset()
    return
  end
  -- Input wire: the last byte is in the chip's UART only after #data byte times.
  if self.o.wire then
    self.in_free = math.max(self.in_free, now) + #data / self:wire_rate("in")
  else
    self.in_free = now
  end
  local frames = self.decoder:feed(data)
  for _, f in ipairs(frames) do
    self.stats.frames_in = self.stats.frames_in + 1
    self.inq[#self.inq + 1] = { payload = self:fault_frame(f, "in"), ready = self.in_free }
  end
end

function Dev:process()
  while self.in_head <= #self.inq do
    local now = time.now()
    local f = self.inq[self.in_head]
    if f.ready > now or self.cpu_free > now then return math.max(f.ready, self.cpu_free) end
    self.in_head = self.in_head + 1
    if self.mode == "download" or self.mode == "stub" then self:handle(f.payload) end
  end
  self.inq, self.in_head = {}, 1
  return nil
end

function Dev:on_event(ev, actions)
  if ev.kind == "baud" then
    self.host_baud = ev.value
    self:log("host baud -> %d", ev.value)
    return
  end
  self.circuit:feed(ev, actions)
end

function Dev:apply(actions)
  for _, a in ipairs(actions) do
    if a.kind == "reset" then
      self:log("EN low")
      self:power_off()
    elseif a.kind == "boot" then
      self:log("EN released after %.1f ms -> %s", (a.low_for or 0) * 1000, a.mode)
      self:boot(a.mode, "poweron")
    end
  end
end

-- ---- event loop -----------------------------------------------------------------------------

local function is_rfc2217(port)
  local ok, caps = pcall(port.caps, port)
  return ok and type(caps) == "table" and caps.kind == "rfc2217-server"
end

-- Serves one connected port until the client hangs up.
function Dev:run(port)
  self.hung_up = false
  if self.usb == "jtag" then
    self.circuit = bootmod.new_usb_jtag()
  else
    -- the bridge's transistors, or (usb=otg) the ROM's USB CDC emulating them
    self.circuit = bootmod.new { strap_delay = self.o.strap_delay, min_en_low = self.o.min_en_low,
      en_delay = self.o.en_delay }
  end
  self.host_baud = self.o.baud
  local mode = self.o.boot
  local rfc = is_rfc2217(port)
  if mode == "auto" then mode = rfc and "flash" or "download" end
  local rx_pos, pending_ev, early = 0, {}, ""
  if rfc then
    -- Power on once the client has set its line up (an RFC 2217 client sends its baud rate
    -- right after connecting), so the boot log meets the rate the host really listens at.
    local deadline = time.now() + 0.2
    while time.now() < deadline do
      early = early .. port:read(1 << 20, 0.02)
      local ok, evs = pcall(port.events, port)
      local seen = false
      if ok then
        for _, e in ipairs(evs) do
          if e.kind == "baud" and (e.pos or 0) == 0 then self.host_baud = e.value; seen = true
          else pending_ev[#pending_ev + 1] = e end
        end
      end
      if seen or early ~= "" or port:is_eof() then break end
    end
  end
  self:boot(mode, "poweron")
  while true do
    local now = time.now()
    -- control events, in stream order relative to the data they arrived with
    local ok, evs = pcall(port.events, port)
    if ok then for _, e in ipairs(evs) do pending_ev[#pending_ev + 1] = e end end
    local data = early .. port:read(1 << 20, 0)
    early = ""
    local start = 1
    while #pending_ev > 0 and (pending_ev[1].pos or 0) <= rx_pos + (#data - start + 1) do
      local e = table.remove(pending_ev, 1)
      local cut = math.max(0, (e.pos or 0) - rx_pos)
      if cut > 0 then
        self:on_data(data:sub(start, start + cut - 1), now)
        start, rx_pos = start + cut, rx_pos + cut
      end
      local actions = {}
      self:on_event(e, actions)
      self:apply(actions)
    end
    if start <= #data then
      self:on_data(data:sub(start), now)
      rx_pos = rx_pos + #data - start + 1
    end
    self:apply(self.circuit:poll(time.now()))
    self:app_pump()
    local t1 = self:process()
    local t2 = self:pump(port)
    if self.hung_up or port:is_eof() then break end
    -- A write burst that ended without FLASH_END (ROM sessions): keep the file current.
    if self.flash.dirty and self.in_head > #self.inq and time.now() - (self.last_rx or 0) > 0.5 then
      self:persist()
    end
    local wake = math.huge
    for _, t in ipairs { t1 or math.huge, t2 or math.huge, self.circuit:next_deadline() or math.huge } do
      if t < wake then wake = t end
    end
    local timeout = math.min(math.max(wake - time.now(), 0), 0.25)
    local objs = { port }
    if self.app then objs[2] = self.app.dev.port end
    if timeout > 0 then serial.poll(objs, timeout) end
  end
  self:log("client hung up")
  self:stop_app()
  self:persist()
end

function Dev:close()
  self:stop_app()
  self:persist()
  if self.trace_file then self.trace_file:close() self.trace_file = nil end
end

M.Dev = Dev

-- ---- serving --------------------------------------------------------------------------------

local function is_listener(t)
  return tostring(t):match("^mpctl%.listener") ~= nil
end

local function address(l)
  if l.path then return l.path end
  local url = l.url or "socket://127.0.0.1:0"
  if l.port then url = url:gsub(":%d+$", ":" .. l.port) end
  return url
end

function M.serve(target, opts)
  local dev = M.new(opts)
  if not is_listener(target) then
    local ok, err = pcall(dev.run, dev, target)
    dev:close()
    if not ok then error(err, 0) end
    return 0
  end
  io.stdout:write(address(target), "\n")
  io.stdout:flush()
  while true do
    local port = target:accept(1)
    if port then
      local ok, err = pcall(dev.run, dev, port)
      pcall(port.close, port)
      if not ok then io.stderr:write("sim esp: ", tostring(err), "\n") end
      dev:persist()
    elseif target.path then
      time.sleep(0.2)
    end
  end
end

-- Per-chip entry points (mpctl.sim.esp32 etc.).
function M.for_chip(key)
  return {
    serve = function(target, opts)
      opts = opts or {}
      opts.chip = opts.chip or key
      return M.serve(target, opts)
    end,
    new = function(opts)
      opts = opts or {}
      opts.chip = opts.chip or key
      return M.new(opts)
    end,
  }
end

return M
