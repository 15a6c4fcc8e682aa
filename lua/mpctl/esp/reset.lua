-- Reset sequences for ESP boards driven through DTR/RTS.
-- Devkit wiring: DTR -> IO0, RTS -> EN, through a transistor pair; "true" = asserted = line low.
-- Timings and orders from esp-pylib `esp_pylib/serial_reset.py` (wrapped by esptool v5
-- `reset.py`) and esptool-js `lib/reset.js`; anchors.md §3.1.
local time = require("mpctl.time")

local M = {}

M.DEFAULT_DELAY = 0.05 -- esptool DEFAULT_RESET_DELAY
M.EXTRA_DELAY = 0.55   -- esptool retries with reset_delay + 0.5 for slow boards

-- Each set_rts re-writes DTR: Windows usbser.sys only forwards SET_CONTROL_LINE_STATE on a DTR
-- write (esptool reset.py _setRTS). Harmless elsewhere.
local function set_dtr(port, v) port:set_dtr(v) end
local function set_rts(port, v, dtr) port:set_rts(v); port:set_dtr(dtr) end

-- Classic: one line at a time (works with every backend).
function M.classic(port, delay)
  delay = delay or M.DEFAULT_DELAY
  set_dtr(port, false); set_rts(port, true, false) -- EN low (chip in reset), IO0 high
  time.sleep(0.1)
  set_dtr(port, true); set_rts(port, false, true)  -- IO0 low, EN high: chip samples IO0 = boot mode
  time.sleep(delay)
  set_dtr(port, false)                             -- IO0 released
end

-- "Unix tight": both lines in one TIOCMSET so the auto-reset transistors never see the
-- intermediate (1,1) state that some circuits turn into a glitch.
function M.tight(port, delay)
  delay = delay or M.DEFAULT_DELAY
  port:set_signals { dtr = false, rts = false }
  port:set_signals { dtr = true, rts = true }
  port:set_signals { dtr = false, rts = true } -- IO0 high, EN low
  time.sleep(0.1)
  port:set_signals { dtr = true, rts = false } -- IO0 low, EN high
  time.sleep(delay)
  port:set_signals { dtr = false, rts = false }
  port:set_dtr(false) -- some environments need DTR written alone to release IO0
end

-- USB-Serial/JTAG peripheral (303A:1001): the lines are virtual and decoded by the chip.
function M.usb_jtag(port)
  port:set_rts(false); port:set_dtr(false) -- idle
  time.sleep(0.1)
  port:set_dtr(true); port:set_rts(false)  -- IO0 low
  time.sleep(0.1)
  port:set_rts(true); port:set_dtr(false); port:set_rts(true) -- reset, IO0 still latched low
  time.sleep(0.1)
  port:set_dtr(false); port:set_rts(false)
end

-- Hard reset into the application: EN pulse with IO0 released (esptool HardReset).
function M.hard(port, usb)
  port:set_dtr(false)
  port:set_rts(true)
  time.sleep(usb and 0.2 or 0.1)
  port:set_rts(false); port:set_dtr(false)
end

-- The strategies tried, in order, across connection attempts for one reset mode. esptool
-- (`_construct_reset_strategy_sequence`) tries tight 50 ms, tight 550 ms, classic 50 ms, classic
-- 550 ms; mpctl tries both wirings at the short delay first, as most boards that fail one
-- wiring need the other rather than a longer wait, and goes to the longer hold of a wiring at
-- once when the boot line shows the app started (Chip:sync_loop in mpctl.esp.connect).
function M.sequence(mode)
  if mode == "none" or mode == "no" then
    return { { name = "no reset", fn = function() end } }
  elseif mode == "usb-jtag" or mode == "usb_jtag" then
    return { { name = "usb-jtag", fn = M.usb_jtag } }
  elseif mode == "classic" or mode == nil or mode == "default" then
    local tight50 = { name = "classic (atomic DTR+RTS, 50 ms)", fn = function(p) M.tight(p, M.DEFAULT_DELAY) end }
    local line50 = { name = "classic (one line at a time, 50 ms)", fn = function(p) M.classic(p, M.DEFAULT_DELAY) end }
    local tight550 = { name = "classic (atomic DTR+RTS, 550 ms)", fn = function(p) M.tight(p, M.EXTRA_DELAY) end }
    local line550 = { name = "classic (one line at a time, 550 ms)", fn = function(p) M.classic(p, M.EXTRA_DELAY) end }
    -- `longer`: the same wiring with IO0 held longer, tried at once when the boot line after the
    -- short hold says the app started (a slow EN circuit latched IO0 after it was released).
    tight50.longer, line50.longer = tight550, line550
    return { tight50, line50, tight550, line550 }
  end
  error("unknown reset mode '" .. tostring(mode) .. "' (expected classic, usb-jtag or none)", 0)
end

return M
