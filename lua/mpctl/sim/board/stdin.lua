--[[ mpctl.sim.board.stdin: the receive buffer in front of a simulated board's MicroPython REPL,
and whether that REPL is waiting for input.

MicroPython reads its REPL input from a ring buffer that an interrupt fills (the UART's on the
ESP32, `stdin_ringbuf_array[260]` in micropython ports/esp32/mphalport.c; the USB CDC OUT
endpoint's on the stm32 port, `rx_user_buf[MICROPY_HW_USB_CDC_RX_DATA_SIZE]`, 1024 by default,
ports/stm32/usbd_cdc_interface.h + mpconfigboard_common.h). The REPL takes bytes out of it only
while it waits for input: at a prompt, while a line or a raw-REPL command is typed, in raw-paste.
While code runs nothing is taken. The interrupt character never enters the buffer: the interrupt
handler raises KeyboardInterrupt itself (`mp_sched_keyboard_interrupt`).

The WebAssembly MicroPython behind a simulated board would read (and buffer) anything at once,
so the buffer and the "is the REPL waiting" state are modelled here from what the REPL prints:
  raw REPL: waiting after "raw REPL; CTRL-B to exit\r\n>" and after a result's "\x04>";
            busy from the Ctrl-D that ends a command;
  friendly: waiting after ">>> " or "... " (or "=== " in paste mode); busy from the Enter that
            ends a line;
  raw-paste ("R\x01" reply): waiting (its window protocol does the flow control).

  local rx = stdin.new { cap = 1023, name = "cdc rx", log = function(fmt, ...) end,
                         deliver = function(s, now) ... end,   -- bytes the REPL takes
                         interrupt = function(now) ... end }   -- Ctrl-C; false: an ordinary byte
  rx:put(data, now)      bytes that reached the board: to the REPL, into the buffer, or lost
  rx:free()              room left in the buffer
  rx:drain(now)          hands buffered bytes over while the REPL waits
  rx:output(s, now)      what the REPL printed: updates the waiting state, then drains
  rx:note_output(s)      the same without handing anything over
  rx.reading, rx.repl    the state ("friendly" | "raw" | "paste")

Every hand-over is traced as "<name> N at T" with the simulator's clock, every loss as
"<name> overrun: N bytes lost (buffer of CAP full)", so a test reads rate and loss from outside.
]]
local time = require("mpctl.time")

local M = {}
local S = {}
S.__index = S

local RAW_PROMPT = "raw REPL; CTRL-B to exit\r\n>"

function M.new(o)
  return setmetatable({
    cap = o.cap, deliver_fn = o.deliver, interrupt_fn = o.interrupt,
    log = o.log or function() end, name = o.name or "rx",
    fifo = {}, fifo_n = 0, tail = "", reading = false, repl = "friendly",
    taken = 0, lost = 0,
  }, S)
end

function S:free() return self.cap - self.fifo_n end

-- What a byte taken by the REPL does to its state.
function S:note_input(c)
  if self.repl == "raw" then
    if c == "\4" then self.reading = false end
  elseif self.repl == "friendly" then
    if c == "\r" then self.reading = false end
  end
end

function S:deliver(s, now)
  if s == "" then return end
  self.taken = self.taken + #s
  self.deliver_fn(s, now)
  self.log("%s %d at %.6f", self.name, #s, now or time.now())
end

-- Bytes that reached the board at `now`: Ctrl-C to the interrupt handler, the rest straight to the
-- REPL while it waits and nothing is queued, else into the buffer; beyond its size they are lost.
-- Returns the number of bytes lost.
function S:put(data, now)
  local out, lost = {}, 0
  for i = 1, #data do
    local c = data:sub(i, i)
    local taken = false
    if c == "\3" and self.interrupt_fn then
      self:deliver(table.concat(out), now)
      out = {}
      -- false: no interrupt handler yet (the board still boots), the byte is an ordinary one
      taken = self.interrupt_fn(now) ~= false
    end
    if not taken then
      if self.reading and self.fifo_n == 0 then
        out[#out + 1] = c
        self:note_input(c)
      elseif self.fifo_n < self.cap then
        self.fifo[#self.fifo + 1] = c
        self.fifo_n = self.fifo_n + 1
      else
        lost = lost + 1
      end
    end
  end
  self:deliver(table.concat(out), now)
  if lost > 0 then
    self.lost = self.lost + lost
    self.log("%s overrun: %d bytes lost (buffer of %d full)", self.name, lost, self.cap)
  end
  return lost
end

-- Hands buffered bytes to MicroPython while its REPL waits for input.
function S:drain(now)
  if self.fifo_n == 0 or not self.reading then return end
  local i = 1
  while i <= self.fifo_n and self.reading do
    self:note_input(self.fifo[i])
    i = i + 1
  end
  local out = table.concat(self.fifo, "", 1, i - 1)
  self.fifo = table.move(self.fifo, i, self.fifo_n, 1, {})
  self.fifo_n = #self.fifo
  self:deliver(out, now)
end

-- Forgets what is buffered (a reset of the board).
function S:clear()
  self.fifo, self.fifo_n, self.tail, self.reading, self.repl = {}, 0, "", false, "friendly"
end

-- True when pat occurs in t ending after position from (in the part not seen before).
local function fresh(t, pat, from)
  local i = math.max(1, from - #pat + 2)
  return t:find(pat, i, true) ~= nil
end

-- What the REPL printed: updates the waiting state, then hands over what the buffer holds.
function S:output(s, now)
  if s == "" then return end
  self:note_output(s)
  self:drain(now or time.now())
end

-- The waiting state after what the REPL printed (nothing handed over).
function S:note_output(s)
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

return M
