-- mpctl.esp.guard against late MD5 replies. An MD5 reply names no range, so the reply to an ask
-- that timed out, arriving later, reads as the answer to the next ask. The fault matrix met this
-- with 400 ms stalls (a false "flash outside the image changed"); here it is made to happen at
-- every possible ask, deterministically, on a model of the wire.
local test = require("mpctl.test")
local hash = require("mpctl.hash")
local guard = require("mpctl.esp.guard")

local SIZE = 0x100000

-- A chip whose wire delivers replies late from ask number `late_at` on: that ask times out (the
-- command layer retries it), both its replies stay in flight, and every later ask reads the
-- oldest reply in flight until the line is allowed to go quiet (settle).
local function lagging_chip(flash, late_at)
  local chip = { flash = flash, flash_size = SIZE, chip = { name = "ESP32" }, asks = 0, settles = 0 }
  local inflight = {}
  local conn = { timeouts = 0, settled = 0 }
  function conn.unsettled(c) return c.timeouts ~= c.settled end
  function conn.settle(c)
    inflight = {}
    c.settled = c.timeouts
    chip.settles = chip.settles + 1
  end
  function conn.t(_, s) return s * 0.1 end
  chip.conn = conn
  function chip.can_md5() return true end
  function chip.raise(_, kind, _, fmt, ...) error(kind .. ": " .. string.format(fmt, ...), 0) end
  function chip.md5(self, addr, size)
    self.asks = self.asks + 1
    local truth = hash.hex(hash.md5(self.flash:sub(addr + 1, addr + size)))
    if self.asks == late_at then
      conn.timeouts = conn.timeouts + 1
      inflight[#inflight + 1] = truth -- the reply to the ask that timed out
      inflight[#inflight + 1] = truth -- and to its retry
    end
    if #inflight == 0 then return truth end
    inflight[#inflight + 1] = truth
    return table.remove(inflight, 1)
  end
  return chip
end

local function pattern(seed)
  local parts = {}
  for i = 0, SIZE // 4096 - 1 do parts[#parts + 1] = string.rep(string.pack("<I4", seed * 65536 + i), 1024) end
  return table.concat(parts)
end

test("a late MD5 reply at any ask never reads as a change outside the image", function()
  local flash = pattern(1)
  local regions = { { 0x1000, 48 * 1024 + 300 } }
  local nblocks = #guard.blocks(guard.spans(regions), SIZE)
  local falsely_changed = 0
  for late_at = 1, 3 * nblocks do
    local chip = lagging_chip(flash, late_at)
    local g = guard.new(chip, regions)
    g:arm()
    local changed = g:check()
    test.ok(changed ~= nil, "checked")
    if #changed > 0 then falsely_changed = falsely_changed + 1 end
    test.eq(#changed, 0, "late reply at ask " .. late_at .. ": " .. guard.describe(changed))
  end
  test.eq(falsely_changed, 0)
end)

test("a real change outside the image is still named when replies come late", function()
  local regions = { { 0x1000, 48 * 1024 + 300 } }
  for late_at = 1, 40, 3 do
    local chip = lagging_chip(pattern(2), late_at)
    local g = guard.new(chip, regions)
    g:arm()
    -- the last sector erased behind the guard's back
    chip.flash = chip.flash:sub(1, SIZE - 4096) .. string.rep("\255", 4096)
    local changed = g:check()
    test.eq(guard.describe(changed), "0xFF000-0xFFFFF (now erased)", "late reply at ask " .. late_at)
  end
end)

test("without a timeout the guard waits for nothing", function()
  local chip = lagging_chip(pattern(3), math.huge)
  local g = guard.new(chip, { { 0, 0x10000 } })
  g:arm()
  test.eq(#g:check(), 0)
  test.eq(chip.settles, 0, "no settle without a timeout")
end)
