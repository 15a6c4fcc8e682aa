--[[ mpctl.dfu.layout: the DfuSe memory map in an alt setting's name, e.g.
    "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg"
Grammar (ST UM0424; dfu-util dfuse_mem.c, anchors.md §3.3): "@" name, then one or more
"/0xADDR/" groups of N*SIZE[mult][type] separated by ","; mult ' ' or 'B' = bytes, 'K' = KiB,
'M' = MiB; type letter a..g: (letter & 7) bit 0 readable, bit 1 erasable, bit 2 writeable.

  layout.parse(name) -> { name=, sectors = {{addr=, size=, readable=, erasable=, writable=}, ...} } | nil
  layout.sectors_for(map, addr, size) -> list of sectors covering [addr, addr+size) | nil, bad_addr
]]
local M = {}

local MULT = { [" "] = 1, B = 1, K = 1024, M = 1024 * 1024 }

function M.parse(s)
  if type(s) ~= "string" or s:sub(1, 1) ~= "@" then return nil end
  local name, rest = s:match("^@([^/]*)(/.*)$")
  if not name then return nil end
  local map = { name = name:gsub("%s+$", ""), sectors = {} }
  for addr_s, list in rest:gmatch("/0[xX](%x+)/([^/]*)") do
    local addr = tonumber(addr_s, 16)
    for n_s, size_s, mult, typ in list:gmatch("(%d+)%*(%d+)([ BKM]?)(%a)") do
      local size = tonumber(size_s) * (MULT[mult ~= "" and mult or " "] or 1)
      local bits = typ:byte() & 7
      -- dfu-util quirk: "Device Feature" regions are readable and writeable
      if map.name == "Device Feature" then bits = 5 end
      for _ = 1, tonumber(n_s) do
        map.sectors[#map.sectors + 1] = { addr = addr, size = size, readable = bits & 1 ~= 0,
          erasable = bits & 2 ~= 0, writable = bits & 4 ~= 0 }
        addr = addr + size
      end
    end
  end
  if #map.sectors == 0 then return nil end
  return map
end

--- The sectors covering [addr, addr + size); nil and the first uncovered address if any is missing.
function M.sectors_for(map, addr, size)
  local out, pos, stop = {}, addr, addr + math.max(size, 1)
  for _, s in ipairs(map.sectors) do
    if s.addr + s.size > pos and s.addr < stop then
      if s.addr > pos then return nil, pos end
      out[#out + 1] = s
      pos = s.addr + s.size
      if pos >= stop then return out end
    end
  end
  return nil, pos
end

function M.total(map)
  local first, last = map.sectors[1], map.sectors[#map.sectors]
  return first.addr, last.addr + last.size - first.addr
end

return M
