--[[ mpctl.sim.rp2.flash: the QSPI NOR flash of a simulated Pico (W25Q16JV, 2 MiB, on the Pico;
W25Q32RV, 4 MiB, on the Pico 2), as the boot ROM sees it through the XIP window at 0x10000000.

Facts:
  - NOR: erase sets a 4 KiB sector to 0xFF (W25Q16JV datasheet §8.2.17 "Sector Erase (20h)");
    Page Program (02h, §8.2.13) programs up to 256 bytes within one page and can only clear bits,
    so the result is old AND new (the boot ROM does no erase of its own on PICOBOOT WRITE:
    pico-sdk boot/picoboot.h "PC_WRITE ... (does no erase)").
  - Times (timing=on), W25Q16JV datasheet §9.6 "AC Electrical Characteristics": tSE sector erase
    4 KB 45 ms typical (400 ms max), tPP page program 0.4 ms typical (3 ms max). The W25Q32RV of
    the Pico 2 has the same typical figures (its datasheet, same table), so one model serves both.
  - Reads take no modelled time (the ROM reads at SPI clock, far below the USB cost).

Storage: 256-byte pages in a table, nil = erased. Counters for stats=FILE.
This is simulator code: it shares nothing with the client (lua/mpctl/rp2).
]]
local M = {}
M.__index = M

M.BASE = 0x10000000
M.PAGE = 256
M.SECTOR = 4096
M.SECTOR_ERASE_S = 0.045 -- W25Q16JV tSE typical
M.PAGE_PROGRAM_S = 0.0004 -- W25Q16JV tPP typical

local ERASED = string.rep("\255", M.PAGE)

--- size: bytes (2 MiB pico, 4 MiB pico2)
function M.new(size)
  return setmetatable({ size = size, pages = {}, sectors_erased = 0, bytes_programmed = 0,
    pages_programmed = 0, bytes_read = 0 }, M)
end

--- Offset range check: [off, off+len) inside the chip.
function M:contains(off, len)
  return off >= 0 and len >= 0 and off + len <= self.size
end

--- Reads len bytes at offset off (inside the chip), counted in bytes_read (what a host read).
function M:read(off, len)
  local s = self:peek(off, len)
  self.bytes_read = self.bytes_read + len
  return s
end

--- The same without counting (the ROM's own look at the flash when it boots).
function M:peek(off, len)
  local out = {}
  local n = len
  while n > 0 do
    local p, o = off // M.PAGE, off % M.PAGE
    local k = math.min(n, M.PAGE - o)
    local page = self.pages[p]
    out[#out + 1] = page and page:sub(o + 1, o + k) or ERASED:sub(1, k)
    off, n = off + k, n - k
  end
  return table.concat(out)
end

-- AND of two equal-length strings (what a NOR program leaves).
local function band(old, new)
  local a, b = { old:byte(1, -1) }, { new:byte(1, -1) }
  for i = 1, #a do a[i] = a[i] & b[i] end
  -- string.char takes many arguments but not 256+ safely on every build: pieces
  local parts = {}
  for i = 1, #a, 64 do parts[#parts + 1] = string.char(table.unpack(a, i, math.min(i + 63, #a))) end
  return table.concat(parts)
end

--- Programs data at off (one page program per page touched); returns the seconds it takes.
function M:program(off, data)
  local pos, pages = 1, 0
  while pos <= #data do
    local p, o = off // M.PAGE, off % M.PAGE
    local k = math.min(#data - pos + 1, M.PAGE - o)
    local chunk = data:sub(pos, pos + k - 1)
    local page = self.pages[p] or ERASED
    local old = page:sub(o + 1, o + k)
    local new = old == ERASED:sub(1, k) and chunk or band(old, chunk)
    page = page:sub(1, o) .. new .. page:sub(o + k + 1)
    self.pages[p] = page ~= ERASED and page or nil
    off, pos, pages = off + k, pos + k, pages + 1
  end
  self.bytes_programmed = self.bytes_programmed + #data
  self.pages_programmed = self.pages_programmed + pages
  return pages * M.PAGE_PROGRAM_S
end

--- Erases the 4 KiB sector holding offset off; returns the seconds it takes.
function M:erase_sector(off)
  local first = off // M.SECTOR * (M.SECTOR // M.PAGE)
  for p = first, first + M.SECTOR // M.PAGE - 1 do self.pages[p] = nil end
  self.sectors_erased = self.sectors_erased + 1
  return M.SECTOR_ERASE_S
end

--- The whole chip as one string.
function M:image()
  local out = {}
  for p = 0, self.size // M.PAGE - 1 do out[#out + 1] = self.pages[p] or ERASED end
  return table.concat(out)
end

--- Loads an image (a file's bytes); beyond its end the chip stays erased.
function M:load(img)
  self.pages = {}
  for p = 0, math.min(#img, self.size) // M.PAGE - 1 do
    local page = img:sub(p * M.PAGE + 1, p * M.PAGE + M.PAGE)
    if page ~= ERASED then self.pages[p] = page end
  end
  local rest = math.min(#img, self.size) % M.PAGE
  if rest > 0 then
    local p = math.min(#img, self.size) // M.PAGE
    self.pages[p] = img:sub(p * M.PAGE + 1, p * M.PAGE + rest) .. ERASED:sub(rest + 1)
  end
end

return M
