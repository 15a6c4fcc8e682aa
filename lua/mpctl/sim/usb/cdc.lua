--[[ mpctl.sim.usb.cdc: MicroPython's stm32 USB CDC port (F055:9800, "Pyboard Virtual Comm Port"),
as a device model for mpctl.sim.usb.host, with the real MicroPython (the WebAssembly build from npm,
as mpctl.sim.micropython runs it) behind /dev/ttyACM0 (ttyACM1, ... when it comes back in the same run:
host:tty_minor says why).

The USB side is the CDC ACM descriptor set (USB CDC 1.2 / PSTN: communication interface class 2
subclass 2 protocol 1 with header, call management, ACM and union functional descriptors and an
interrupt endpoint; data interface class 0x0A with two bulk endpoints). The bytes of the serial
stream do not travel as bulk URBs: like the kernel's cdc_acm driver, umockdev puts a tty node in
front of the interface (a pty), and this model pumps bytes between that pty and MicroPython, at the
speed and with the buffers of the real port:

  * host -> board: what the host writes to the tty waits in the host driver's write buffer (Linux
    cdc-acm: ACM_NW = 16 URBs of 20 x wMaxPacketSize = 20 KiB; beyond it the host's write blocks)
    and crosses the bus at 486 KiB/s in 64-byte packets (USB full-speed CDC OUT measured on an
    STM32WB55 running MicroPython with tools/test_serial.py: 485.78 KiB/s, micropython PR#15909;
    anchors.md section 2.4). A packet lands in the receive ring (`usbd_cdc_receive`,
    ports/stm32/usbd_cdc_interface.c: `rx_user_buf[MICROPY_HW_USB_CDC_RX_DATA_SIZE]`, 1024 by
    default, holding 1023 bytes as the ring leaves one slot free). The REPL empties it only while
    it waits for input (mpctl.sim.board.stdin). When it is full, MicroPython's default drops the
    rest of the packet ("overflow, we just discard the rest of the chars"): flow control on the
    OUT endpoint is off unless the program asks `pyb.USB_VCP().init(flow=pyb.USB_VCP.RTS)` (micropython
    commit 67689bf). With `cdc_flow=rts` the model does what that option does: once fewer than 65
    bytes are free the endpoint is not re-armed, the host's packets are NAKed and wait (back-pressure,
    nothing lost) until the REPL has read some (`usbd_cdc_rx_check_resume`).
  * Ctrl-C never enters the ring: `usbd_cdc_receive` calls `mp_sched_keyboard_interrupt()` for the
    interrupt character. The WebAssembly build cannot be interrupted while it runs code (its REPL
    reads stdin only between runs), so when the REPL is still busy 50 ms after a Ctrl-C the model
    does what the interrupt would have shown: it restarts the interpreter, prints the
    KeyboardInterrupt traceback and the prompt of the mode it was in (friendly or raw). The
    restarted interpreter has lost its globals and its in-memory files (traced).
  * board -> host: what MicroPython prints goes through the 1024-byte transmit buffer
    (MICROPY_HW_USB_CDC_TX_DATA_SIZE) at 506 KiB/s (USB full-speed CDC IN on the same STM32WB55:
    506.22 KiB/s, micropython PR#15909); while the buffer is full the interpreter is not read, as the
    firmware waits for room.
  * timing=off: no rate on either direction (the buffers stay).
  * trace=FILE: "host sent N at T" (the host wrote N bytes to the tty), "usb out N at T" (N bytes
    crossed the bus into the board), "cdc rx N at T" (N bytes handed to MicroPython), "cdc rx overrun: N bytes lost ...", "cdc tx N at T", interrupts and
    restarts, with the simulator's own clock, so a test checks the pacing from outside.

machine.bootloader() / pyb.bootloader(): the WebAssembly build has no bootloader to jump to, so the
model watches what the client sends for that call (raw REPL or friendly) and, when it is executed,
drops off the bus and hands over to on_bootloader() (the ROM DFU model), as the firmware would.
Ids: micropython ports/stm32/mpconfigboard_common.h (F055:9800), anchors.md section 3.5.

  cdc.new { serial=, log=fn, node=, heapsize=, on_bootloader=fn, timing="on"|"off", trace=PATH,
            cdc_flow="none"|"rts", cdc_rx=1024, rate_out=B/s, rate_in=B/s }
  cdc.check(opts)   refuses bad cdc_flow / cdc_rx / trace before a board is built
]]
local device = require("mpctl.sim.usb.device")
local stdin = require("mpctl.sim.board.stdin")
local time = require("mpctl.time")

local M = {}
M.__index = M

local pack = string.pack

local RATE_OUT = 486 * 1024      -- host -> board, bytes/s (PR#15909: 485.78 KiB/s)
local RATE_IN = 506 * 1024       -- board -> host, bytes/s (PR#15909: 506.22 KiB/s)
local PACKET = 64                -- CDC_DATA_FS_MAX_PACKET_SIZE
local HOST_BUF = 16 * 20 * 64    -- Linux cdc-acm: ACM_NW write URBs of writesize = 20 x wMaxPacketSize
local TX_BUF = 1024              -- MICROPY_HW_USB_CDC_TX_DATA_SIZE
local INTERRUPT_GRACE = 0.05     -- s a Ctrl-C waits for the code to end by itself
local RAW_PROMPT = "raw REPL; CTRL-B to exit\r\n>"
local INTERRUPTED = "Traceback (most recent call last):\r\n  File \"<stdin>\", line 1, in <module>\r\nKeyboardInterrupt: \r\n"

local function cdc_functional()
  return pack("<BBBI2", 5, 0x24, 0x00, 0x0110) -- header, bcdCDC 1.10
    .. pack("<BBBBB", 5, 0x24, 0x01, 0x00, 0x01) -- call management: data interface 1
    .. pack("<BBBB", 4, 0x24, 0x02, 0x02) -- ACM: line coding and serial state
    .. pack("<BBBBB", 5, 0x24, 0x06, 0x00, 0x01) -- union: master 0, slave 1
end

--- Refuses bad options before a board is built (a board plugged later, after a DFU leave, would
--- fail in the middle of the run): cdc_flow, cdc_rx, a trace file that cannot be written.
function M.check(opts)
  local errors = require("mpctl.errors")
  if opts.cdc_flow and opts.cdc_flow ~= "none" and opts.cdc_flow ~= "rts" then
    errors.raise("usage", "sim cdc", "cdc_flow=" .. tostring(opts.cdc_flow) .. " is not a flow mode",
      { hint = "use cdc_flow=none (MicroPython's default: a full ring drops bytes) or cdc_flow=rts (NAK: the host waits)" })
  end
  local rx = opts.cdc_rx and tonumber(opts.cdc_rx)
  if opts.cdc_rx and not (rx and rx >= 2 and rx == math.floor(rx)) then
    -- MicroPython: "This must be 2 or greater, and a power of 2" (mpconfigboard_common.h)
    errors.raise("usage", "sim cdc", "cdc_rx=" .. tostring(opts.cdc_rx) .. " is not a buffer size",
      { hint = "give the receive ring's size in bytes, 2 or more (MicroPython's default is 1024)" })
  end
  if opts.trace then
    local f, err = io.open(opts.trace, "a")
    if not f then
      errors.raise("io", opts.trace, "cannot open the trace file: " .. tostring(err),
        { hint = "give trace= a path in a folder you can write to" })
    end
    f:close()
  end
end

function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ opts = opts, log = opts.log or function() end, seen = "" }, M)
  -- vid/pid/bcd_device/product/control_name/data_name: another port's identity (the simulated
  -- Pico's MicroPython, 2E8A:0005: mpctl.sim.rp2.board); the Pyboard's by default
  self.usb = device.new {
    vid = opts.vid or 0xF055, pid = opts.pid or 0x9800, bcd_device = opts.bcd_device or 0x0200,
    class = 0xEF, subclass = 2, protocol = 1,
    manufacturer = "MicroPython", product = opts.product or "Pyboard Virtual Comm Port in FS Mode",
    serial = opts.serial or "3276345E3233",
    configs = { { attributes = 0x80, max_power = 250, interfaces = {
      { class = 2, subclass = 2, protocol = 1, name = opts.control_name or "Pyboard CDC control", extra = cdc_functional(),
        endpoints = { { address = 0x83, attributes = 3, max_packet = 8, interval = 255 } } },
      { class = 0x0A, subclass = 0, protocol = 0, name = opts.data_name or "Pyboard CDC data",
        endpoints = { { address = 0x01, attributes = 2, max_packet = 64 }, { address = 0x81, attributes = 2, max_packet = 64 } } },
    } } },
  }
  -- the port's speed and buffers (see the header)
  self.paced = opts.timing ~= "off" and opts.timing ~= false
  -- another board's measured rates (bytes/s) may replace the STM32 ones
  self.rate_out, self.rate_in = tonumber(opts.rate_out) or RATE_OUT, tonumber(opts.rate_in) or RATE_IN
  self.hold = opts.cdc_flow == "rts"
  self.hq, self.txq, self.in_t, self.out_t = "", "", 0, 0
  M.check(opts)
  return self
end

-- Line coding requests from an ACM driver (SET_LINE_CODING 0x20, GET 0x21, SET_CONTROL_LINE_STATE 0x22).
function M:control(setup, data)
  local _, req, _, _, length = string.unpack("<BBI2I2I2", setup)
  if req == 0x20 then self.coding = data; return "ok" end
  if req == 0x21 then return "ok", (self.coding or pack("<I4BBB", 115200, 0, 0, 8)):sub(1, length) end
  if req == 0x22 then return "ok" end
  return "stall"
end

-- trace=FILE: one line per event, stamped with the simulator's clock (appended: a board that goes
-- to its bootloader and comes back writes on).
function M:trace(fmt, ...)
  if not self.opts.trace then return end
  if not self.trace_f then self.trace_f = assert(io.open(self.opts.trace, "a")) end
  self.trace_f:write(string.format("%.6f ", time.now()), string.format(fmt, ...), "\n")
  self.trace_f:flush()
end

function M:spawn()
  local mp = require("mpctl.sim.micropython")
  self.mp = mp.spawn { node = self.opts.node, heapsize = self.opts.heapsize }
  local size = tonumber(self.opts.cdc_rx) or 1024
  self.rx = stdin.new { cap = size - 1, name = "cdc rx",
    log = function(...) self:trace(...) end,
    deliver = function(s) self:to_mp(s) end,
    interrupt = function(now) self:interrupt(now) end }
  self.booted = false
  self:trace("MicroPython started")
end

function M:on_plug(host, slot)
  local p = slot.syspath
  -- ttyACM0 the first time; a board back after its bootloader gets the next one (host:tty_minor)
  local name, minor = host:tty_minor("ttyACM")
  self.tty_name = name
  self.tty_syspath = p .. "/1-" .. slot.port .. ":1.0/tty/" .. name
  host:add_child(table.concat({
    "P: " .. (p:gsub("^/sys", "")) .. "/1-" .. slot.port .. ":1.0",
    "E: SUBSYSTEM=usb", "E: DEVTYPE=usb_interface", "E: DRIVER=cdc_acm",
    "A: bInterfaceNumber=00\\n", "A: bInterfaceClass=02\\n", "A: bInterfaceSubClass=02\\n",
    "A: bInterfaceProtocol=01\\n", "A: interface=" .. (self.opts.control_name or "Pyboard CDC control") .. "\\n", "", }, "\n"))
  host:add_child(table.concat({
    "P: " .. (self.tty_syspath:gsub("^/sys", "")), "N: " .. name, "L: device=../../../1-" .. slot.port .. ":1.0",
    "E: SUBSYSTEM=tty", "E: DEVNAME=/dev/" .. name, "E: MAJOR=166", "E: MINOR=" .. minor, "", }, "\n"))
  local serial = require("mpctl.serial")
  local master, slave = host:dev_fd("/dev/" .. name)
  self.tty = serial.wrap_fd(master, name .. " (pty master)")
  if slave >= 0 then self.hold_fd = serial.wrap_fd(slave, name .. " (held slave)") end
  self:spawn()
  self.log("MicroPython runs behind /dev/" .. name)
end

function M:on_unplug(host)
  if self.mp then require("mpctl.sim.micropython").stop(self.mp); self.mp = nil end
  if self.tty then pcall(self.tty.close, self.tty); self.tty = nil end
  if self.hold_fd then pcall(self.hold_fd.close, self.hold_fd); self.hold_fd = nil end
  self.tty_syspath = nil -- host:unplug removes the interface and the tty (children first)
  if self.trace_f then self.trace_f:close(); self.trace_f = nil end
end

local BOOTLOADER_CALL = "bootloader()"

-- Bytes the REPL takes; notices machine.bootloader() being run.
function M:to_mp(s)
  pcall(self.mp.port.write, self.mp.port, s, 5)
  self.seen = (self.seen .. s):sub(-256)
  -- executed: the raw REPL runs on Ctrl-D, the friendly one on Enter
  if self.seen:find(BOOTLOADER_CALL, 1, true) and (s:find("\4", 1, true) or s:find("\r", 1, true)) then
    self.bootloader = true
  end
end

-- Ctrl-C reached the board (usbd_cdc_receive -> mp_sched_keyboard_interrupt).
function M:interrupt(now)
  if not self.booted and not self.restarting then return false end -- no REPL yet: an ordinary byte
  if self.rx.reading or self.restarting then
    pcall(self.mp.port.write, self.mp.port, "\3", 5)  -- the REPL takes it (clears the line)
  elseif not self.intr_at then
    self.intr_at = now
    self:trace("cdc: Ctrl-C while code runs")
  end
end

-- The REPL still runs code INTERRUPT_GRACE after a Ctrl-C: the WebAssembly build cannot stop it, so
-- the interpreter is restarted and the client sees what an interrupted run prints, in the REPL mode
-- it was in. The restarted interpreter's banner (and raw-REPL entry) are not shown.
function M:restart_interrupted()
  local mode = self.rx.repl
  self:trace("cdc: KeyboardInterrupt: interpreter restarted (the WebAssembly build cannot be "
    .. "interrupted while it runs code); its globals and in-memory files are lost")
  require("mpctl.sim.micropython").stop(self.mp)
  local fifo, fifo_n = self.rx.fifo, self.rx.fifo_n
  self:spawn()
  -- what was waiting in the ring stays there for the REPL to read after the interrupt
  self.rx.fifo, self.rx.fifo_n = fifo, fifo_n
  self.restarting = { mode = mode, want = ">>> ", buf = "" }
end

-- Output of the interpreter while it restarts: hidden until its prompt, then the interrupted
-- run's traceback and the prompt of the old mode.
function M:restart_output(s, now)
  local r = self.restarting
  r.buf = (r.buf .. s):sub(-64)
  if not r.buf:find(r.want, 1, true) then return end
  if r.mode ~= "friendly" and r.want == ">>> " then
    r.want, r.buf = RAW_PROMPT, ""
    pcall(self.mp.port.write, self.mp.port, "\1", 5)
    return
  end
  self.restarting = nil
  local text
  if r.mode == "friendly" then
    text = INTERRUPTED .. ">>> "
  else
    self.rx.repl = "raw"
    text = "\4" .. INTERRUPTED .. "\4>"
  end
  self.txq = self.txq .. text
  self.rx:output(text, now)
  self.booted = true
end

-- Host -> board: the tty into the host driver's buffer, then across the bus into the ring.
function M:host_to_board(now)
  -- the pty hands out ~4 KiB per read: read until the driver's buffer is full or nothing is left
  while #self.hq < HOST_BUF do
    local ok, s = pcall(self.tty.read, self.tty, HOST_BUF - #self.hq, 0)
    if not ok or s == "" then break end
    if self.hq == "" then self.in_t = math.max(self.in_t, now) end
    self.hq = self.hq .. s
    self:trace("host sent %d at %.6f", #s, now)
  end
  if self.hq == "" then return end
  local budget = #self.hq
  if self.paced then budget = math.min(budget, math.floor((now - self.in_t) * self.rate_out)) end
  local moved, pos = 0, 1
  if not self.hold then
    -- every packet is taken; what finds the ring full is dropped (one call: nothing drains the
    -- ring between the packets of one step)
    self.rx:put(self.hq:sub(1, budget), now)
    pos, moved = budget + 1, budget
  end
  while moved < budget and pos <= #self.hq do
    -- cdc_flow=rts: the OUT endpoint is re-armed only with a packet's room (plus one) free
    if self.rx:free() < PACKET + 1 then break end
    local n = math.min(PACKET, budget - moved, #self.hq - pos + 1)
    self.rx:put(self.hq:sub(pos, pos + n - 1), now)
    pos, moved = pos + n, moved + n
  end
  self.hq = self.hq:sub(pos)
  if moved > 0 then self:trace("usb out %d at %.6f", moved, now) end
  if self.paced then
    self.in_t = self.in_t + moved / self.rate_out
    -- an idle or NAKed bus banks no time
    if self.hq == "" or moved < budget then self.in_t = math.max(self.in_t, now) end
  end
end

-- Board -> host: the interpreter's output into the transmit buffer, then across the bus to the tty.
-- Returns false when the interpreter has ended.
function M:board_to_host(now)
  if self.paced and self.out_t < now - 0.002 then self.out_t = now - 0.002 end
  -- the firmware refills the buffer as the bus empties it: alternate until the bus has used this
  -- step's time or the interpreter has nothing more
  while true do
    local room = TX_BUF - #self.txq
    if room > 0 then
      local ok, s = pcall(self.mp.port.read, self.mp.port, room, 0)
      if not ok or (s == "" and self.mp.port:is_eof()) then return false end
      if s ~= "" then
        if self.restarting then
          self:restart_output(s, now)
        else
          self.txq = self.txq .. s
          self.rx:output(s, now)
          if self.rx.reading then self.booted = true end
        end
      end
    end
    local n = #self.txq
    if self.paced then n = math.min(n, math.floor((now - self.out_t) * self.rate_in)) end
    if n <= 0 then return true end
    pcall(self.tty.write, self.tty, self.txq:sub(1, n), 5)
    self.txq = self.txq:sub(n + 1)
    if self.paced then self.out_t = self.out_t + n / self.rate_in end
    self:trace("cdc tx %d at %.6f", n, now)
  end
end

-- Moves bytes both ways without blocking, at the port's rates.
function M:pump()
  if not self.mp or self.gone then return end
  local now = time.now()
  self:host_to_board(now)
  if not self:board_to_host(now) then
    -- MicroPython's soft reset ends the process: start a fresh one, as the board reboots
    self:trace("cdc: MicroPython ended (soft reset): restarted")
    require("mpctl.sim.micropython").stop(self.mp)
    local fifo, fifo_n = self.rx.fifo, self.rx.fifo_n
    self:spawn()
    self.rx.fifo, self.rx.fifo_n = fifo, fifo_n
    self.intr_at, self.restarting = nil, nil
    return
  end
  if self.intr_at then
    if self.rx.reading then
      self.intr_at = nil -- the code ended by itself
    elseif now - self.intr_at >= INTERRUPT_GRACE then
      self.intr_at = nil
      self:restart_interrupted()
    end
  end
end

function M:tick()
  if self.bootloader and self.opts.on_bootloader then
    self.bootloader = nil
    self.log("machine.bootloader(): back to the " .. (self.opts.bootloader_name or "ROM DFU bootloader"))
    return { unplug = true, replace = self.opts.on_bootloader() }
  end
end

return M
