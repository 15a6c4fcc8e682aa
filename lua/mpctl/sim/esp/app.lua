-- mpctl.sim.esp.app: the application a simulated ESP board boots into: the real MicroPython
-- (the WebAssembly build, mpctl.sim.micropython) behind the board's UART.
--
-- MicroPython on the ESP32 port reads its REPL input from a ring buffer the UART interrupt fills
-- (stdin_ringbuf_array[260], micropython ports/esp32/mphalport.c). The REPL takes bytes out of it
-- only while it waits for input: at a prompt, while a line or a raw-REPL command is being
-- typed, in raw-paste. While code runs (or the board is still booting) nothing is taken, and
-- bytes that land in a full buffer are lost, as on a board whose code does not read fast
-- enough. Ctrl-C is taken by the interrupt handler itself (it never enters the buffer).
--
-- The WebAssembly process would read (and buffer) anything at once, so the buffer and the
-- "is the REPL waiting for input" state are modelled here from what the REPL prints:
--   raw REPL: waiting after "raw REPL; CTRL-B to exit\r\n>" and after a result's "\x04>";
--             busy from the Ctrl-D that ends a command;
--   friendly: waiting after ">>> " or "... "; busy from the Enter that ends a line;
--   raw-paste ("R\x01" reply): waiting (its window protocol does the flow control).
-- Every byte handed to MicroPython is logged to the trace ("app rx N") with the time it was
-- taken, so a test can check the line rate from the simulator's own clock.
local time = require("mpctl.time")

local M = {}
local A = {}
A.__index = A

local RAW_PROMPT = "raw REPL; CTRL-B to exit\r\n>"

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
  return setmetatable({
    dev = dev, mod = mp, proc = proc, banner_board = banner_board,
    banner_seen = false, buf = "", tail = "",
    fifo = {}, fifo_n = 0, cap = dev.o.rx_fifo,
    reading = false, repl = "friendly",
  }, A)
end

function A:stop()
  self.mod.stop(self.proc)
end

function A:port() return self.proc.port end

-- ---- input: the stdin ring buffer ------------------------------------------------------------

-- Bytes that landed in the UART at `now`: straight to the REPL while it waits for input and
-- nothing is queued, else into the buffer; beyond its size they are lost.
function A:rx(data, now)
  local out, lost = {}, 0
  for i = 1, #data do
    local c = data:sub(i, i)
    if c == "\3" then
      -- the UART interrupt raises KeyboardInterrupt at once (mp_sched_keyboard_interrupt)
      out[#out + 1] = c
    elseif self.reading and self.fifo_n == 0 then
      out[#out + 1] = c
      self:note_input(c)
    elseif self.fifo_n < self.cap then
      self.fifo[#self.fifo + 1] = c
      self.fifo_n = self.fifo_n + 1
    else
      lost = lost + 1
    end
  end
  if #out > 0 then self:deliver(table.concat(out), now) end
  if lost > 0 then
    self.dev.stats.rx_overrun = (self.dev.stats.rx_overrun or 0) + lost
    self.dev:log("app rx overrun: %d bytes lost (buffer of %d full)", lost, self.cap)
  end
end

-- Hands buffered bytes to MicroPython while its REPL waits for input.
function A:drain(now)
  if self.fifo_n == 0 or not self.reading then return end
  local out, i = {}, 1
  while i <= self.fifo_n and self.reading do
    local c = self.fifo[i]
    out[#out + 1] = c
    self:note_input(c)
    i = i + 1
  end
  local rest = {}
  for k = i, self.fifo_n do rest[#rest + 1] = self.fifo[k] end
  self.fifo, self.fifo_n = rest, #rest
  self:deliver(table.concat(out), now)
end

function A:deliver(s, now)
  local ok = pcall(self.proc.port.write, self.proc.port, s, 5)
  if ok then
    self.dev.stats.app_rx = (self.dev.stats.app_rx or 0) + #s
    self.dev:log("app rx %d at %.6f", #s, now or time.now())
  end
end

-- What a byte taken by the REPL does to its state.
function A:note_input(c)
  if self.repl == "raw" then
    if c == "\4" then self.reading = false end
  elseif self.repl == "friendly" then
    if c == "\r" then self.reading = false end
  end
end

-- ---- output ----------------------------------------------------------------------------------

-- True when pat occurs in t ending after position from (in the part not seen before).
local function fresh(t, pat, from)
  local i = math.max(1, from - #pat + 2)
  return t:find(pat, i, true) ~= nil
end

function A:note_output(s)
  local t = self.tail .. s
  local from = #self.tail
  if fresh(t, RAW_PROMPT, from) then self.repl, self.reading = "raw", true end
  if self.repl == "raw" and fresh(t, "R\1", from) then self.repl, self.reading = "paste", true end
  if (self.repl == "raw" or self.repl == "paste") and fresh(t, "\4>", from) then
    self.repl, self.reading = "raw", true
  end
  local last = t:sub(-4)
  if last == ">>> " or last == "... " or last == "=== " then self.repl, self.reading = "friendly", true end
  self.tail = t:sub(-32)
end

-- Bytes from the MicroPython process: its own banner is replaced by an ESP32-like one.
function A:output(s)
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
  self:note_output(s)
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
