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
-- Events come from port:events() ({kind, value, t} with monotonic timestamps taken when the
-- RFC 2217 control message arrived), so the decision does not depend on when the simulator
-- gets round to reading them.
local M = {}
M.__index = M

-- opts: strap_delay (s, default 0.010), min_en_low (s, default 0.005), t (start time)
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    dtr = false, rts = false,            -- asserted?
    en_low = false, io0_low = false,
    en_fell = nil, pending = nil,
    strap_delay = opts.strap_delay or 0.010,
    min_en_low = opts.min_en_low or 0.005,
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
    self.pending = { latch = ev.t + self.strap_delay, low_for = ev.t - (self.en_fell or ev.t) }
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

return M
