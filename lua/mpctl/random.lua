--[[ mpctl.random: the one seeded generator, for test data, generated images and fuzzing.

    local g = random.new(seed)   xorshift32 (Marsaglia, "Xorshift RNGs", 2003: shifts 13, 17, 5)
    g() or g:u32() -> 0..2^32-1  g:below(n) -> 0..n-1   g:int(lo, hi) -> lo..hi   g:float() -> [0, 1)
    g:chance(p) -> bool          g:bytes(n) -> string   g:pick(list) -> element

The same seed gives the same sequence on every Lua build and machine (math.random's algorithm is
not part of Lua's contract), so a failing test or a fuzz finding is reproduced from its seed. A
seed of 0 (a fixed point of xorshift) is replaced by 0x9E3779B9, as esp/imagegen.lua always did.
]]
local M = {}

local Gen = {}
Gen.__index = Gen

function Gen:u32()
  local s = self.s
  s = s ~ ((s << 13) & 0xFFFFFFFF)
  s = s ~ (s >> 17)
  s = s ~ ((s << 5) & 0xFFFFFFFF)
  self.s = s
  return s
end

Gen.__call = Gen.u32

function Gen:below(n)
  return self:u32() % n
end

function Gen:int(lo, hi)
  return lo + self:u32() % (hi - lo + 1)
end

function Gen:float()
  return self:u32() / 4294967296
end

function Gen:chance(p)
  return self:float() < p
end

function Gen:bytes(n)
  local t = {}
  for i = 1, n // 4 do t[i] = string.pack("<I4", self:u32()) end
  local rest = n % 4
  if rest > 0 then t[#t + 1] = string.pack("<I4", self:u32()):sub(1, rest) end
  return table.concat(t)
end

function Gen:pick(list)
  return list[1 + self:u32() % #list]
end

function M.new(seed)
  local s = math.tointeger(seed or 1)
  if not s then error("random.new: the seed must be an integer, got " .. tostring(seed), 2) end
  s = s & 0xFFFFFFFF
  if s == 0 then s = 0x9E3779B9 end
  return setmetatable({ s = s }, Gen)
end

return M
