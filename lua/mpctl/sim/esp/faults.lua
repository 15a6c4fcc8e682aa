-- mpctl.sim.esp.faults: seeded fault injection on the SLIP frames of the ESP loader protocol.
--
-- Knobs (docs/simulators.md "Faults"): per-frame probabilities drop (one byte lost), corrupt (one
-- byte changed), stall (the frame held back stall_ms), reset (the board loses power while
-- handling it: a received write frame is written only in part, a reply is cut short; the board
-- then boots from flash); fault_dir = rx (frames the board receives), tx (frames it sends) or
-- both; fault_skip = frames left alone at the start of each direction; seed.
--
-- Determinism: every decision is a function of (seed, direction, frame number in that
-- direction) only, through a generator seeded per frame (mpctl.sim.rng.mix). So a client that
-- sends the same frames meets the same faults, whatever the timing, the interleaving of the two
-- directions, or the noise drawn for a baud mismatch.
local rng = require("mpctl.sim.rng")

local M = {}
local F = {}
F.__index = F

local DIR_ID = { rx = 1, tx = 2 }

-- o: parsed options; log(fmt, ...) writes the trace; stats: counters (dropped, corrupted,
-- stalled, fault_resets)
function M.new(o, log, stats)
  return setmetatable({ o = o, log = log, stats = stats, n = { rx = 0, tx = 0 } }, F)
end

function F:active()
  local o = self.o
  return o.drop > 0 or o.corrupt > 0 or o.stall > 0 or o.reset > 0
end

-- Applies the faults due to this frame. Returns the (maybe damaged) payload and a table of
-- effects: { stall = seconds or nil, reset = fraction in [0,1) or nil } — reset: the board
-- glitches after that fraction of the frame's work (rx) or of the frame's bytes (tx).
function F:frame(payload, dir)
  self.n[dir] = self.n[dir] + 1
  local n = self.n[dir]
  local o = self.o
  local fx = {}
  if not o.fault_dir[dir] or n <= o.fault_skip or #payload == 0 or not self:active() then
    return payload, fx
  end
  local r = rng.new(rng.mix(o.seed, DIR_ID[dir], n))
  -- one draw per kind, always in this order, so enabling one kind does not shift the others
  local d_drop, d_corrupt, d_stall, d_reset = r.float(), r.float(), r.float(), r.float()
  local pos_drop, pos_corrupt, xor = r.int(#payload) + 1, r.int(#payload) + 1, r.int(255) + 1
  local frac = r.float()
  if d_drop < o.drop then
    payload = payload:sub(1, pos_drop - 1) .. payload:sub(pos_drop + 1)
    self.stats.dropped = self.stats.dropped + 1
    self.log("fault: dropped byte %d of %s frame %d", pos_drop, dir, n)
  end
  if d_corrupt < o.corrupt and #payload > 0 then
    local i = math.min(pos_corrupt, #payload)
    payload = payload:sub(1, i - 1) .. string.char(payload:byte(i) ~ xor) .. payload:sub(i + 1)
    self.stats.corrupted = self.stats.corrupted + 1
    self.log("fault: corrupted byte %d of %s frame %d", i, dir, n)
  end
  if d_stall < o.stall then
    fx.stall = o.stall_ms
    self.stats.stalled = self.stats.stalled + 1
    self.log("fault: stalled %s frame %d by %.0f ms", dir, n, o.stall_ms * 1000)
  end
  if d_reset < o.reset then
    fx.reset = frac
    self.stats.fault_resets = self.stats.fault_resets + 1
    self.log("fault: reset during %s frame %d (at %.0f%%)", dir, n, frac * 100)
  end
  return payload, fx
end

return M
