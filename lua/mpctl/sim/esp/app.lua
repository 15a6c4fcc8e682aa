-- mpctl.sim.esp.app: the application a simulated ESP board boots into: the real MicroPython
-- (the WebAssembly build, mpctl.sim.micropython) behind the board's UART.
--
-- MicroPython on the ESP32 port reads its REPL input from a ring buffer the UART interrupt fills
-- (stdin_ringbuf_array[260], micropython ports/esp32/mphalport.c), which the REPL empties only
-- while it waits for input; bytes landing in a full buffer are lost, Ctrl-C bypasses it. That
-- buffer and the "is the REPL waiting" state are mpctl.sim.board.stdin (shared with the simulated
-- Pyboard's USB CDC port); every hand-over is traced as "app rx N at T" with the simulator's clock.
local time = require("mpctl.time")
local inject = require("mpctl.sim.board.inject")
local files = require("mpctl.sim.board.files")
local stdin = require("mpctl.sim.board.stdin")

local M = {}
local A = {}
A.__index = A

-- dev provides: o (options), chip, log, send_text, stats, line_ok.
function M.start(dev, banner_board)
  if dev.o.app == "none" then return nil end
  local ok, mp = pcall(require, "mpctl.sim.micropython")
  if not ok then
    dev:send_text("\r\nMicroPython (simulator: mpctl.sim.micropython missing)\r\n")
    return nil
  end
  local sok, proc = pcall(mp.spawn, { heapsize = dev.o.heapsize, node = dev.o.node })
  if not sok then
    dev:send_text("\r\n" .. tostring(proc) .. "\r\n")
    dev.mode = "dead"
    return nil
  end
  dev:log("app started")
  local self = setmetatable({
    dev = dev, mod = mp, proc = proc, banner_board = banner_board,
    banner_seen = false, buf = "",
  }, A)
  self.rxbuf = stdin.new { cap = dev.o.rx_fifo, name = "app rx",
    log = function(...) dev:log(...) end,
    deliver = function(s)
      pcall(proc.port.write, proc.port, s, 5)
      dev.stats.app_rx = (dev.stats.app_rx or 0) + #s
    end,
    -- the UART interrupt raises KeyboardInterrupt at once (mp_sched_keyboard_interrupt), once the
    -- REPL runs; before that Ctrl-C is an ordinary byte
    interrupt = function(now)
      if not self.inj:ready() then return false end
      self.rxbuf:deliver("\3", now)
    end }
  local mac = string.char(table.unpack(dev.mac))
  local code = inject.setup_code({ led = dev.o.led, temp = dev.o.temp, i2c = 0x48, uid = { bytes = mac },
    freq = dev.chip.cpu_mhz * 1000000 }, M.extra_modules(dev.chip)) .. files.restore_code(dev.files)
  if dev.files then dev:log("app files restored: %d, %d bytes", #dev.files, files.size(dev.files)) end
  self.inj = inject.new(code, function(s) pcall(proc.port.write, proc.port, s, 5) end,
    function(ev) self:event(ev) end, function(...) dev:log(...) end)
  return self
end

-- The chip's own module where MicroPython has one with a temperature reading: esp32
-- (mcu_temperature() on S2/S3/C3/C6 in degrees C, raw_temperature() on the ESP32 in degrees F;
-- micropython docs/library/esp32.rst).
function M.extra_modules(chip)
  if chip.key == "esp8266" then return {} end
  if chip.key == "esp32" then
    return { esp32 = "def raw_temperature():\n    return 128\n" }
  end
  return { esp32 = "def mcu_temperature():\n    return 38\n" }
end

-- An event from the virtual hardware (board/machine.py): traced; reset and bootloader act.
function A:event(ev)
  local dev = self.dev
  dev:log("board: %s", ev)
  dev.stats.board_events = (dev.stats.board_events or 0) + 1
  -- the reboot waits until the REPL is idle again, so the files can be read out first
  if ev == "reset" then
    self.pending_reset = "flash"
  elseif ev == "bootloader" then
    self.pending_reset = "download"
  end
end

-- Stops the process; first, if its REPL is idle, reads its files out so the next start of the
-- app on this board has them (as a real board keeps its filesystem in flash across resets).
-- Returns the files, or nil when they could not be read (they are lost then, and the trace says).
function A:stop()
  local kept
  local rx = self.rxbuf
  if self.inj:ready() and rx.reading and rx.fifo_n == 0 and rx.repl ~= "paste" then
    local why
    kept, why = files.read(self.proc.port, rx.repl, 10)
    if kept then
      self.dev:log("app files kept: %d, %d bytes", #kept, files.size(kept))
    else
      self.dev:log("app files lost: %s", why)
    end
  else
    self.dev:log("app files lost: the REPL was busy at the reset")
  end
  self.mod.stop(self.proc)
  return kept
end

function A:port() return self.proc.port end

-- ---- input: the stdin ring buffer (mpctl.sim.board.stdin) -----------------------------------

-- Bytes that landed in the UART at `now`.
function A:rx(data, now)
  local lost = self.rxbuf:put(data, now)
  if lost > 0 then self.dev.stats.rx_overrun = (self.dev.stats.rx_overrun or 0) + lost end
end

-- Hands buffered bytes to MicroPython while its REPL waits for input.
function A:drain(now) self.rxbuf:drain(now) end

-- ---- output ----------------------------------------------------------------------------------

-- Bytes from the MicroPython process: its own banner is replaced by an ESP32-like one.
function A:output(s)
  local was_ready = self.inj:ready()
  s = self.inj:output(s)
  if not self.inj:ready() then
    -- the banner is shown while the board modules are set up; the REPL takes no input yet
    if s ~= "" then self:show(s) end
    return
  end
  if not was_ready then
    self.rxbuf.repl, self.rxbuf.reading = "friendly", true
    self:drain(time.now())
  end
  if s == "" then return end
  if self.pending_reset then
    -- what the REPL prints after machine.reset() never reaches the line of a resetting board
    self.rxbuf:note_output(s)
    if self.rxbuf.reading then
      self.dev:reboot_after_output(self.pending_reset, "sw")
      self.pending_reset = nil
    end
    return
  end
  self:show(s)
  self.rxbuf:note_output(s)
end

function A:show(s)
  if not self.banner_seen then
    self.buf = self.buf .. s
    local i = self.buf:find(">>> ", 1, true)
    if not i then return end
    local ver = self.buf:match("MicroPython (v[%w%.%-]+ on [%d%-]+)") or "v1.27.0 on 2025-12-10"
    local rest = self.buf:sub(i)
    self.banner_seen, self.buf = true, ""
    s = "MicroPython " .. ver .. "; " .. self.banner_board .. "\r\n" ..
      "Type \"help()\" for more information.\r\n" .. rest
  end
  self.dev:send_text(s)
end

-- Reads the process; returns false when it has ended (MicroPython's soft reset ends it).
function A:pump(now)
  local ok, s = pcall(self.proc.port.read, self.proc.port, 65536, 0)
  if not ok or (s == "" and self.proc.port:is_eof()) then return false end
  if s ~= "" then
    self:output(s)
    self:drain(now)
  end
  return true
end

return M
