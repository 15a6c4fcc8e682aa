-- mpctl.sim.esp.boot: the DTR/RTS auto-reset circuit of ESP dev boards.
--
-- DevKitC/NodeMCU-style boards wire two cross-coupled NPN transistors between the USB-UART's
-- DTR/RTS and the chip's IO0/EN (esptool docs `boot-mode-selection.rst`; anchors.md §3.1:
-- DTR -> IO0, RTS -> EN, both inverted; an asserted line is electrically LOW):
--     EN  is pulled low only while RTS is asserted and DTR is not,
--     IO0 is pulled low only while DTR is asserted and RTS is not,
-- so asserting both (esptool's "UnixTight" first step) changes nothing.
--
-- Boot decision (anchors §3.6): the chip leaves reset on EN's rising edge and latches its
-- strapping pins shortly after (the EN pin's RC delay on a real board). Download mode needs EN
-- to have been low for at least min_en_low (esp-pylib MINIMAL_EN_LOW_DELAY = 5 ms) and IO0 low
-- when the straps are latched; any other EN rising edge is a normal flash boot.
--
-- A slow EN circuit (en_delay): boards with a large EN capacitor (the common 10 uF) leave reset
-- only when the capacitor has charged, ~100 ms after the transistor lets go of EN; the straps
-- are latched then, so IO0 must still be held low at that moment (issue 12: esptool's first,
-- 50 ms, sequence fails on such boards and its 550 ms one works). EN pulled low again before
-- the rise is complete discharges the capacitor and cancels the boot.
--
-- Events come from port:events() ({kind, value, t} with monotonic timestamps taken when the
-- RFC 2217 control message arrived), so the decision does not depend on when the simulator
-- gets round to reading them.
local M = {}
M.__index = M

-- opts: strap_delay (s, default 0.010), min_en_low (s, default 0.005), en_delay (s, default 0)
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    dtr = false, rts = false,            -- asserted?
    en_low = false, io0_low = false,
    en_fell = nil, pending = nil,
    strap_delay = opts.strap_delay or 0.010,
    min_en_low = opts.min_en_low or 0.005,
    en_delay = opts.en_delay or 0,
    trace = {},                           -- {t, en_low, io0_low} for diagnostics/tests
  }, M)
end

local function levels(dtr, rts)
  return (rts and not dtr), (dtr and not rts)
end

-- Decide a pending boot if its latch time has passed by `now`.
function M:_decide(now)
  local p = self.pending
  if not p or now < p.latch then return nil end
  self.pending = nil
  local download = p.low_for >= self.min_en_low and self.io0_low
  return { mode = download and "download" or "flash", t = p.latch, low_for = p.low_for }
end

-- Feed one control event. Returns a list of actions: {kind="reset", t} when EN falls and
-- {kind="boot", mode="download"|"flash", t} once a boot is decided.
function M:feed(ev, actions)
  actions = actions or {}
  if ev.kind ~= "dtr" and ev.kind ~= "rts" then return actions end
  -- An edge after a pending latch time: the straps were latched with the old levels.
  local d = self:_decide(ev.t)
  if d then actions[#actions + 1] = { kind = "boot", mode = d.mode, t = d.t, low_for = d.low_for } end
  local v = ev.value
  if type(v) ~= "boolean" then v = (v ~= 0) end
  if ev.kind == "dtr" then self.dtr = v else self.rts = v end
  local en_low, io0_low = levels(self.dtr, self.rts)
  if en_low and not self.en_low then
    self.en_fell = ev.t
    self.pending = nil
    actions[#actions + 1] = { kind = "reset", t = ev.t }
  elseif not en_low and self.en_low then
    self.pending = { latch = ev.t + self.en_delay + self.strap_delay,
                     low_for = ev.t - (self.en_fell or ev.t) }
  end
  self.en_low, self.io0_low = en_low, io0_low
  self.trace[#self.trace + 1] = { t = ev.t, en_low = en_low, io0_low = io0_low }
  if #self.trace > 64 then table.remove(self.trace, 1) end
  return actions
end

-- Called when no more events are waiting: decides a boot whose latch time has passed.
function M:poll(now, actions)
  actions = actions or {}
  local d = self:_decide(now)
  if d then actions[#actions + 1] = { kind = "boot", mode = d.mode, t = d.t, low_for = d.low_for } end
  return actions
end

-- When the next decision is due (for the event loop's poll timeout), or nil.
function M:next_deadline()
  return self.pending and self.pending.latch or nil
end

-- ---- USB-Serial/JTAG (ESP32-C3, -S3, -C6 on 303A:1001) --------------------------------------
--
-- No transistors: the chip's USB-Serial/JTAG controller decodes the CDC-ACM line state itself
-- (ESP32-C3/S3/C6 TRM, "USB Serial/JTAG Controller", CDC-ACM chip reset; the CHIP_RST register
-- reports "chip reset detected from usb serial channel" for RTS). Modelled as:
--     RTS asserted with DTR not asserted holds the chip in reset; leaving that state releases it;
--     DTR asserted with RTS not asserted arms download mode; both released disarms it;
--     the boot after a release is a download boot if download mode was armed when reset began.
-- So esptool's USB-JTAG sequence (anchors §3.1: (0,0) . (DTR) . (DTR,RTS) . (RTS) . (0,0))
-- enters the ROM loader, a plain RTS pulse (hard reset) boots the app, and the bridge-circuit
-- sequences (RTS first, then DTR) boot the app: they do not work on these ports, as on hardware.
local Usb = {}
Usb.__index = Usb
M.Usb = Usb

function M.new_usb_jtag()
  return setmetatable({ dtr = false, rts = false, in_reset = false, armed = false,
    download = false, fell = nil, trace = {} }, Usb)
end

function Usb:feed(ev, actions)
  actions = actions or {}
  if ev.kind ~= "dtr" and ev.kind ~= "rts" then return actions end
  local v = ev.value
  if type(v) ~= "boolean" then v = (v ~= 0) end
  if ev.kind == "dtr" then self.dtr = v else self.rts = v end
  local reset = self.rts and not self.dtr
  if reset and not self.in_reset then
    self.in_reset, self.download, self.fell = true, self.armed, ev.t
    actions[#actions + 1] = { kind = "reset", t = ev.t }
  elseif not reset and self.in_reset then
    self.in_reset = false
    actions[#actions + 1] = { kind = "boot", mode = self.download and "download" or "flash", t = ev.t,
      low_for = ev.t - (self.fell or ev.t) }
  end
  if self.dtr and not self.rts then self.armed = true
  elseif not self.dtr and not self.rts then self.armed = false end
  self.trace[#self.trace + 1] = { t = ev.t, dtr = self.dtr, rts = self.rts }
  if #self.trace > 64 then table.remove(self.trace, 1) end
  return actions
end

function Usb:poll(_now, actions) return actions or {} end
function Usb:next_deadline() return nil end

return M
