-- mpctl.sim.esp.device: one simulated ESP board: its power state, boot, the loader's framing
-- (SLIP frames in, replies out) and the glue between the parts that do the work:
--   chips.lua (what each chip answers), boot.lua (reset circuits), rom.lua and stub.lua (the
--   command sets), flash.lua (the NOR chip), wire.lua (the UART both ways), faults.lua
--   (seeded faults), app.lua (MicroPython after a normal boot).
-- session.lua serves a connected port with it.
local slip = require("mpctl.slip")
local time = require("mpctl.time")
local hash = require("mpctl.hash")
local zlib = require("mpctl.zlib")
local fs = require("mpctl.fs")

local chips = require("mpctl.sim.esp.chips")
local options = require("mpctl.sim.esp.options")
local flashmod = require("mpctl.sim.esp.flash")
local rom = require("mpctl.sim.esp.rom")
local stub = require("mpctl.sim.esp.stub")
local wiremod = require("mpctl.sim.esp.wire")
local faultmod = require("mpctl.sim.esp.faults")
local appmod = require("mpctl.sim.esp.app")
local rng = require("mpctl.sim.rng")

local M = {}
local Dev = {}
Dev.__index = Dev
M.Dev = Dev

-- USB full-speed bulk: at most 19 packets of 64 bytes per 1 ms frame (USB 2.0 spec §5.8.4,
-- table 5-9), the ceiling of a USB-Serial/JTAG or USB-OTG CDC port whatever "baud" is set.
M.USB_FS_BYTES_PER_S = 19 * 64 * 1000

local BANNER_BOARD = {
  esp32 = "Generic ESP32 module with ESP32", esp32s3 = "Generic ESP32S3 module with ESP32S3",
  esp32c3 = "ESP32C3 module with ESP32C3", esp8266 = "ESP module with ESP8266",
  esp32s2 = "Generic ESP32S2 module with ESP32S2", esp32c6 = "Generic ESP32C6 module with ESP32C6",
}

function M.new(opts)
  local o = options.parse(opts)
  local self = setmetatable({
    o = o, chip = o.chip, mac = options.mac(o.mac, o.chip, o.seed), hash = hash, zlib = zlib,
    flash = flashmod.new { size = o.flash_size, file = o.flash_file, timing = o.timing, fs = fs },
    noise_rng = rng.new(o.seed + 11),
    host_baud = o.baud, usb = o.usb,
    stats = { frames_in = 0, frames_out = 0, bytes_in = 0, bytes_out = 0, flash_data_bytes = 0,
              commands = {}, garbled_in = 0, dropped = 0, corrupted = 0, stalled = 0,
              fault_resets = 0, resets = 0, boots = {} },
    reset_fired = false,
    trace_file = nil,
  }, Dev)
  if o.trace then self.trace_file = assert(io.open(o.trace, "a")) end
  self.faults = faultmod.new(o, function(...) self:log(...) end, self.stats)
  self.wire = wiremod.new(self, o.wire)
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
  self.mode = "off"          -- off | booting | download | stub | app | dead
  self.stub = false
  self.regs = {}
  for k, v in pairs(self.chip.registers(self.mac)) do self.regs[k] = v end
  if self.usb == "otg" then self.regs[self.chip.usb_otg.reg] = self.chip.usb_otg.value end
  self.ld = { attached = false, flash_limit = nil, write = nil, mem = nil, ram = {}, reading = nil }
  self.baud_fixed = nil      -- set by CHANGE_BAUDRATE; nil = auto (follows the host)
  self.uart_baud = self.chip.boot_baud
  self.wire:clear()
  self.inq, self.in_head = {}, 1
  self.cpu_free, self.flash_free = 0, 0
  self.glitch = nil
  self.decoder = slip.decoder()
  self:stop_app()
end

-- ---- the line -------------------------------------------------------------------------------

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

-- What a receiver at the wrong rate makes of n bytes.
function Dev:noise(n)
  local g = {}
  for i = 1, n do g[i] = string.char(self.noise_rng.int(256)) end
  return table.concat(g)
end

-- The ROM measures the host's rate from the first SYNC frame and keeps it (serial-protocol.rst:
-- "the sync packets can be sent at any baud rate, and the UART peripheral will detect this").
function Dev:autobaud()
  if not self.baud_fixed then
    self.baud_fixed = self.host_baud
    self:log("autobaud: %d", self.host_baud)
  end
end

-- ---- time the chip is busy ------------------------------------------------------------------

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
  self.wire:enqueue(item, math.max(self.cpu_free, self:now()))
end

function Dev:send_frame(payload)
  local fx
  payload, fx = self.faults:frame(payload, "tx")
  self.stats.frames_out = self.stats.frames_out + 1
  local data = slip.encode(payload)
  local item = { data = data, at = self:now() + self.o.delay + (fx.stall or 0) }
  if fx.reset then
    -- power lost part-way through this reply: what was out is out, then a boot from flash
    item.cut = math.max(1, math.floor(#data * fx.reset))
    item.on_cut = function() self:power_glitch("reset fault while replying") end
  end
  self:enqueue(item)
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

-- Where a write of n bytes at addr is cut by a power loss (reset_at=, or a reset fault on the
-- frame being handled), or nil.
function Dev:reset_point(addr, n)
  if self.glitch then
    local cut = math.floor(n * self.glitch)
    self.glitch = nil
    self.glitch_used = true
    return cut
  end
  local r = self.o.reset_at
  if r and not self.reset_fired and addr <= r and r < addr + n then
    self.reset_fired = true
    return r - addr
  end
  return nil
end

-- The board loses power (reset_at=, a reset fault; as a USB re-enumeration would do) and comes
-- back with a normal boot.
function Dev:power_glitch(why)
  self.stats.resets = self.stats.resets + 1
  self:log("fault: %s", why or "reset mid-write")
  self:persist()
  self:boot("flash", "poweron")
end

-- ---- the MicroPython app --------------------------------------------------------------------

function Dev:start_app()
  self.app = appmod.start(self, BANNER_BOARD[self.chip.key])
end

function Dev:stop_app()
  if self.app then
    self.app:stop()
    self.app = nil
  end
end

function Dev:app_pump(now)
  if not self.app then return end
  if not self.app:pump(now) then
    -- MicroPython's soft reset ends the process: start a new one (a fresh banner follows).
    self:stop_app()
    self:start_app()
  end
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

-- Bytes from the host at `now`: onto the line (they land one byte time after another).
function Dev:on_data(data, now)
  self.last_rx = now
  self.stats.bytes_in = self.stats.bytes_in + #data
  if not self:line_ok() then
    -- Host and chip disagree on the rate: the chip's UART sees framing errors, nothing usable.
    self.stats.garbled_in = self.stats.garbled_in + #data
    self.decoder:reset()
    return
  end
  if self.mode == "app" then self:log("host sent %d at %.6f", #data, now) end
  self.wire:arrive(data, now)
end

-- Bytes that have landed in the chip's UART by now go to whoever reads it: the loader's SLIP
-- decoder (the ROM and the stub read the UART as fast as it fills), or MicroPython's buffer.
function Dev:deliver(now)
  local data, landed = self.wire:land(now)
  if data == "" then return end
  if self.mode == "app" then
    if self.app then self.app:rx(data, now) end
    return
  end
  if self.mode ~= "download" and self.mode ~= "stub" then return end
  for _, f in ipairs(self.decoder:feed(data)) do
    self.stats.frames_in = self.stats.frames_in + 1
    local payload, fx = self.faults:frame(f, "rx")
    self.inq[#self.inq + 1] = { payload = payload, ready = (landed or now) + (fx.stall or 0), reset = fx.reset }
  end
end

function Dev:process()
  while self.in_head <= #self.inq do
    local now = time.now()
    local f = self.inq[self.in_head]
    if f.ready > now or self.cpu_free > now then return math.max(f.ready, self.cpu_free) end
    self.in_head = self.in_head + 1
    if self.mode == "download" or self.mode == "stub" then
      if f.reset then
        -- a reset fault on this frame: a write it carries gets that far, then the power goes
        self.glitch, self.glitch_used = f.reset, false
        self:handle(f.payload)
        self.glitch = nil
        if not self.glitch_used then self:power_glitch("reset fault on a received frame") end
        return self:process()
      end
      self:handle(f.payload)
    end
  end
  self.inq, self.in_head = {}, 1
  return nil
end

function Dev:close()
  self:stop_app()
  self:persist()
  if self.trace_file then self.trace_file:close() self.trace_file = nil end
end

return M
