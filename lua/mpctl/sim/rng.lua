-- mpctl.sim.rng: the simulators' own seeded generator (xorshift32, Marsaglia 2003), so a seed
-- reproduces a fault pattern or a MAC address. Separate from the client's generators on purpose:
-- simulators keep their own code (docs/simulators.md).
local M = {}

local MASK = 0xFFFFFFFF

-- Mixes several integers into one 32-bit seed (splitmix-style finaliser), so independent streams
-- (e.g. one per direction and frame number) do not overlap.
function M.mix(...)
  local h = 0x9E3779B9
  for _, v in ipairs { ... } do
    h = (h ~ (math.floor(v) & MASK)) & MASK
    h = (h * 0x85EBCA6B) & MASK
    h = h ~ (h >> 13)
    h = (h * 0xC2B2AE35) & MASK
    h = h ~ (h >> 16)
  end
  return h
end

function M.new(seed)
  local s = ((seed or 1) ~ 0x9E3779B9) & MASK
  if s == 0 then s = 0x12345678 end
  local r = {}
  function r.next()
    s = s ~ ((s << 13) & MASK)
    s = s ~ (s >> 17)
    s = s ~ ((s << 5) & MASK)
    return s
  end
  function r.float() return r.next() / 4294967296 end
  function r.int(n) return r.next() % n end
  return r
end

return M
