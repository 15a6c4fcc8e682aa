-- mpctl.sim.esp.flash: a SPI NOR flash chip as the simulated ESP boards carry it.
--
-- NOR semantics: erase sets whole 4 KiB sectors (or 64 KiB blocks) to 0xFF; programming can
-- only clear bits (new = old AND data), so writing without erasing first corrupts data the way
-- real flash does. Every operation returns the time the chip would be busy, in seconds.
--
-- Times (anchors.md §2.1, Winbond W25Q-JV datasheet figures as quoted there):
--   4 KiB sector erase 45 ms typ / 400 ms max, 64 KiB block erase 150 ms typ / 2000 ms max,
--   256 B page program 0.4 ms typ (0.8 ms on some W25Q64JV tables) / 3 ms max,
--   chip erase 40 s typ / 200 s max for 128 Mbit, i.e. 2.5 s / 12.5 s per MiB (scaled, derived).
-- Reading (MD5, READ_FLASH) is modelled at 10 MB/s: 40 MHz DIO is 10 MB/s raw (derived).
--
-- State lives in memory as a table of 4 KiB sector strings (nil = erased) and, with a file,
-- is loaded at start and written back by save() (the simulator calls it after write bursts
-- and on close), so a board keeps its firmware across runs.
local M = {}
M.__index = M

local SECTOR = 4096
local BLOCK = 65536
local PAGE = 256
local ERASED = string.rep("\255", SECTOR)

M.SECTOR, M.BLOCK, M.PAGE = SECTOR, BLOCK, PAGE

local PROFILES = {
  typ = { sector = 0.045, block = 0.150, page = 0.0004, chip_per_mib = 2.5, read_bps = 10e6 },
  max = { sector = 0.400, block = 2.000, page = 0.003, chip_per_mib = 12.5, read_bps = 10e6 },
  off = { sector = 0, block = 0, page = 0, chip_per_mib = 0, read_bps = math.huge },
}

local function parse_size(v)
  if type(v) == "number" then return math.floor(v) end
  local s = tostring(v or "4MB"):upper()
  local n, unit = s:match("^(%d+)%s*([KM]?)I?B?$")
  if not n then
    local hex = s:match("^0X(%x+)$")
    if hex then return tonumber(hex, 16) end
    error("sim esp: bad flash size '" .. tostring(v) .. "' (use e.g. 4MB, 2MB, 512KB)", 0)
  end
  n = tonumber(n)
  if unit == "M" then n = n * 1024 * 1024 elseif unit == "K" then n = n * 1024 end
  return n
end
M.parse_size = parse_size

-- opts: size (bytes or "4MB"), file (path or nil), timing ("typ"|"max"|"off"), fs (mpctl.fs)
function M.new(opts)
  local size = parse_size(opts.size)
  if size < BLOCK or size % BLOCK ~= 0 then
    error(string.format("sim esp: flash size %d is not a multiple of 64 KiB", size), 0)
  end
  local self = setmetatable({
    size = size, nsectors = size // SECTOR, sectors = {},
    t = PROFILES[opts.timing or "typ"] or PROFILES.typ,
    file = opts.file, fs = opts.fs, dirty = false,
    stats = { erased_sectors = 0, programmed_bytes = 0, busy = 0 },
  }, M)
  if self.file and self.fs and self.fs.exists(self.file) then
    self:load(self.fs.read(self.file))
  end
  return self
end

function M:load(data)
  for i = 0, self.nsectors - 1 do
    local s = data:sub(i * SECTOR + 1, (i + 1) * SECTOR)
    if #s < SECTOR then s = s .. ERASED:sub(1, SECTOR - #s) end
    self.sectors[i] = (s ~= ERASED) and s or nil
  end
end

function M:image()
  local parts = {}
  for i = 0, self.nsectors - 1 do parts[#parts + 1] = self.sectors[i] or ERASED end
  return table.concat(parts)
end

function M:save()
  if not (self.dirty and self.file and self.fs) then return false end
  self.fs.write(self.file, self:image())
  self.dirty = false
  return true
end

function M:check_range(addr, len, what)
  if addr < 0 or len < 0 or addr + len > self.size then
    error(string.format("%s 0x%X+0x%X is outside the %d-byte flash", what, addr, len, self.size), 0)
  end
end

function M:read(addr, len)
  self:check_range(addr, len, "read")
  local parts = {}
  local pos, stop = addr, addr + len
  while pos < stop do
    local i, off = pos // SECTOR, pos % SECTOR
    local n = math.min(SECTOR - off, stop - pos)
    local s = self.sectors[i] or ERASED
    parts[#parts + 1] = (off == 0 and n == SECTOR) and s or s:sub(off + 1, off + n)
    pos = pos + n
  end
  return table.concat(parts)
end

-- Seconds to read len bytes (MD5, READ_FLASH).
function M:read_time(len) return len / self.t.read_bps end

-- Erase the sectors covering [addr, addr+len): 64 KiB block erases where aligned, 4 KiB
-- sector erases elsewhere (as the ROM's SPIEraseArea and the stub do).
function M:erase(addr, len)
  if len <= 0 then return 0 end
  local first = addr // SECTOR
  local last = (addr + len - 1) // SECTOR
  self:check_range(first * SECTOR, (last - first + 1) * SECTOR, "erase")
  local cost, i = 0, first
  while i <= last do
    if i % 16 == 0 and last - i + 1 >= 16 then
      for k = i, i + 15 do self.sectors[k] = nil end
      cost, i = cost + self.t.block, i + 16
    else
      self.sectors[i] = nil
      cost, i = cost + self.t.sector, i + 1
    end
  end
  self.stats.erased_sectors = self.stats.erased_sectors + (last - first + 1)
  self.dirty = true
  self.stats.busy = self.stats.busy + cost
  return cost
end

function M:erase_all()
  self.sectors = {}
  self.dirty = true
  local cost = self.t.chip_per_mib * self.size / (1024 * 1024)
  self.stats.busy = self.stats.busy + cost
  return cost
end

local function and_bytes(old, new)
  local out = {}
  for i = 1, #new, 256 do
    local a = { old:byte(i, i + 255) }
    local b = { new:byte(i, i + 255) }
    for k = 1, #b do b[k] = a[k] & b[k] end
    out[#out + 1] = string.char(table.unpack(b))
  end
  return table.concat(out)
end

-- Program data at addr: bits can only go from 1 to 0.
function M:program(addr, data)
  local len = #data
  if len == 0 then return 0 end
  self:check_range(addr, len, "write")
  local pos, stop, src = addr, addr + len, 1
  while pos < stop do
    local i, off = pos // SECTOR, pos % SECTOR
    local n = math.min(SECTOR - off, stop - pos)
    local piece = data:sub(src, src + n - 1)
    local old = self.sectors[i]
    if old then
      local old_piece = old:sub(off + 1, off + n)
      if old_piece ~= ERASED:sub(1, n) then piece = and_bytes(old_piece, piece) end
    else
      old = ERASED
    end
    local s = (off == 0 and n == SECTOR) and piece or (old:sub(1, off) .. piece .. old:sub(off + n + 1))
    self.sectors[i] = s
    pos, src = pos + n, src + n
  end
  local pages = (stop - 1) // PAGE - addr // PAGE + 1
  local cost = pages * self.t.page
  self.stats.programmed_bytes = self.stats.programmed_bytes + len
  self.stats.busy = self.stats.busy + cost
  self.dirty = true
  return cost
end

-- True when every byte of [addr, addr+len) reads 0xFF.
function M:is_erased(addr, len)
  local pos, stop = addr, addr + len
  while pos < stop do
    local i, off = pos // SECTOR, pos % SECTOR
    local n = math.min(SECTOR - off, stop - pos)
    local s = self.sectors[i]
    if s and s:sub(off + 1, off + n) ~= ERASED:sub(1, n) then return false end
    pos = pos + n
  end
  return true
end

function M:md5(hash, addr, len)
  self:check_range(addr, len, "md5")
  local h = hash.new("md5")
  local pos, stop = addr, addr + len
  while pos < stop do
    local n = math.min(BLOCK, stop - pos)
    h:update(self:read(pos, n))
    pos = pos + n
  end
  return h:digest()
end

return M
