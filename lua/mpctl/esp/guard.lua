-- mpctl.esp.guard: prove that a write changed nothing outside the flash it was meant to write.
--
-- Why: the loader's BEGIN commands carry no checksum (anchors.md §3.1: only the _DATA payloads
-- are checksummed), so a byte damaged on the wire can move a write elsewhere (wrong offset) or
-- make the loader erase more than asked (wrong size: the ROM erases the whole announced region
-- before answering; a stub erases ahead as data comes). The MD5 that verifies the image covers
-- only the image, so it cannot see either (issue 8: a run ended "MD5 matches" with 2.8 MB after
-- the image erased).
--
-- How: before the first byte is written, SPI_FLASH_MD5 of every block of flash outside the
-- written sectors (asked twice: MD5 requests carry no checksum either, so an answer counts when
-- two agree); after the write, the same MD5s again (a differing answer is asked again until two
-- agree); any block whose MD5 moved is named. The
-- MD5 runs on the chip, so the wire carries one 32-byte command and a 16/32-byte answer per block
-- whatever its size; what it costs is the chip's flash read time, three times the size of the
-- rest of the flash (measured in bench/esp_flash.lua). The sector on each side of every written region
-- is its own block, so the usual damage — an erase running past an edge — is named to the
-- sector; the rest goes in 256 KiB blocks (a damaged range is named to that size).
--
-- The unit written is the 4 KiB sector: flash erases whole sectors, so the bytes between the end
-- of an image and the end of its last sector become 0xFF (esptool does the same); they count as
-- written.
local hash = require("mpctl.hash")
local time = require("mpctl.time")

local M = {}
local Guard = {}
Guard.__index = Guard

M.SECTOR = 0x1000
M.BLOCK = 0x40000

local function round_down(x) return x - x % M.SECTOR end
local function round_up(x) return x + (-x) % M.SECTOR end

-- Sector-rounded, merged spans of the regions {{offset, size}, ...}.
function M.spans(regions)
  local s = {}
  for _, r in ipairs(regions) do
    if r[2] > 0 then s[#s + 1] = { round_down(r[1]), round_up(r[1] + r[2]) } end
  end
  table.sort(s, function(a, b) return a[1] < b[1] end)
  local out = {}
  for _, x in ipairs(s) do
    local last = out[#out]
    if last and x[1] <= last[2] then last[2] = math.max(last[2], x[2])
    else out[#out + 1] = { x[1], x[2] } end
  end
  return out
end

-- Blocks {from, to} (to exclusive) covering [0, size) minus the spans.
function M.blocks(spans, size)
  local blocks, pos = {}, 0
  local function gap(a, b)
    if b - a <= 2 * M.SECTOR then
      for x = a, b - 1, M.SECTOR do blocks[#blocks + 1] = { x, math.min(x + M.SECTOR, b) } end
      return
    end
    blocks[#blocks + 1] = { a, a + M.SECTOR } -- the sector next to the region before
    local x = a + M.SECTOR
    while x < b - M.SECTOR do
      local nxt = math.min(x - x % M.BLOCK + M.BLOCK, b - M.SECTOR)
      blocks[#blocks + 1] = { x, nxt }
      x = nxt
    end
    blocks[#blocks + 1] = { b - M.SECTOR, b } -- the sector next to the region after
  end
  for _, sp in ipairs(spans) do
    if sp[1] > pos then gap(pos, math.min(sp[1], size)) end
    pos = math.max(pos, sp[2])
  end
  if pos < size then gap(pos, size) end
  return blocks
end

-- A guard for a write of `regions` on `chip` (an mpctl.esp Chip). Nothing is read until arm().
function M.new(chip, regions)
  local g = setmetatable({ chip = chip, armed = false, seconds = 0 }, Guard)
  g.spans = M.spans(regions)
  if not chip:can_md5() then
    g.skip = chip.secure_download and "Secure Download Mode allows no MD5"
      or string.format("the %s ROM loader has no MD5 (the stub has)", chip.chip.name)
  elseif not chip.flash_size then
    g.skip = "flash size unknown"
  else
    g.blocks = M.blocks(g.spans, chip.flash_size)
  end
  return g
end

-- An MD5 request carries no checksum either: a damaged address or size gives the MD5 of another
-- range, which would read as a change. So an answer counts once two asks agree. An MD5 reply
-- names no range either: after a command timed out, its late reply is read as the answer to the
-- next MD5 ask, and the late replies of two asks of one block agree with each other (a false
-- "changed" for the next block, seen in the fault matrix with 400 ms stalls). So two asks agree
-- only when no command timed out before or between them without the line having gone quiet since
-- (Conn:settle waits out late replies; it costs a second, and only after a timeout).
local function settle(chip)
  local conn = chip.conn
  if conn:unsettled() then conn:settle(math.max(1, conn:t(3))) end
end

local function agreed_md5(chip, from, to)
  local seen = {}
  for _ = 1, 6 do
    settle(chip)
    local h = chip:md5(from, to - from)
    if chip.conn:unsettled() then
      seen = {} -- a timeout during the ask: this answer and the ones before it may be late ones
    else
      seen[h] = (seen[h] or 0) + 1
      if seen[h] >= 2 then return h end
    end
  end
  chip:raise("protocol", nil, "the MD5 of flash 0x%X-0x%X came back different on every ask: the link is too "
    .. "noisy to check the flash; try a lower baud", from, to - 1)
end

-- MD5 of every block outside the regions, before anything is written. Idempotent.
function Guard:arm()
  if self.armed or self.skip then return end
  local t0 = time.now()
  for _, b in ipairs(self.blocks) do b.before = agreed_md5(self.chip, b[1], b[2]) end
  self.armed = true
  self.seconds = self.seconds + time.now() - t0
end

local blank_md5 = {}
local function md5_blank(n)
  if not blank_md5[n] then blank_md5[n] = hash.hex(hash.md5(string.rep("\255", n))) end
  return blank_md5[n]
end

-- MD5 the blocks again. Returns the changed ranges {{from, to, blank = bool}, ...} (adjacent
-- ones merged; empty when nothing changed), or nil and why it could not check.
function Guard:check()
  if self.skip then return nil, self.skip end
  if not self.armed then return nil, "nothing was written" end
  local t0 = time.now()
  local changed = {}
  for _, b in ipairs(self.blocks) do
    settle(self.chip)
    local now = self.chip:md5(b[1], b[2] - b[1])
    -- a differing answer (or one that came with a timeout): a damaged or late reply, or a change?
    if now ~= b.before or self.chip.conn:unsettled() then now = agreed_md5(self.chip, b[1], b[2]) end
    if now ~= b.before then
      local blank = now == md5_blank(b[2] - b[1])
      local last = changed[#changed]
      if last and last.to == b[1] and last.blank == blank then last.to = b[2]
      else changed[#changed + 1] = { from = b[1], to = b[2], blank = blank } end
    end
  end
  self.seconds = self.seconds + time.now() - t0
  return changed
end

-- "0x181000-0x181FFF (now erased), 0x200000-0x23FFFF"
function M.describe(changed)
  local parts = {}
  for _, c in ipairs(changed) do
    parts[#parts + 1] = string.format("0x%X-0x%X%s", c.from, c.to - 1, c.blank and " (now erased)" or "")
  end
  return table.concat(parts, ", ")
end

-- What to say about the outside after a failed write: status ("unchanged" | "changed" |
-- "unknown"), one sentence, and the changed ranges. Never raises (the chip may be gone).
function Guard:verdict()
  if self.skip then
    return "unknown", "Whether flash outside the image changed is unknown: " .. self.skip .. "."
  end
  if not self.armed then
    return "unchanged", "Nothing was written yet, so nothing outside the image changed."
  end
  local ok, changed, why = pcall(self.check, self)
  if not ok then
    return "unknown", "Whether flash outside the image changed is unknown: the loader did not answer the "
      .. "check (" .. tostring(changed.detail or changed) .. ")."
  end
  if not changed then return "unknown", "Whether flash outside the image changed is unknown: " .. why .. "." end
  if #changed == 0 then
    return "unchanged", "Nothing outside the image's sectors changed (MD5 of the rest of the flash before and after)."
  end
  return "changed", "Flash outside the image changed too: " .. M.describe(changed) .. ".", changed
end

M.Guard = Guard
return M
