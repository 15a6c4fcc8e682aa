--- UF2 files for RP2040/RP2350: mpctl uf2 info FILE | mpctl uf2 convert IN OUT (picotool info / uf2 convert).
-- @option family: TEXT; convert to UF2: RP2040, RP2350_ARM_S, RP2350_RISCV, ABSOLUTE, DATA, RP2350_ARM_NS or a number (default: the --board's first, else RP2040)
-- @option address: integer; where a .bin goes (default 0x10000000)
--
--   mpctl uf2 info fw.uf2                      blocks, families, address ranges, gaps; every block checked
--   mpctl uf2 convert fw.bin fw.uf2            a .bin at 0x10000000 (address=) as a UF2 (family= or --board)
--   mpctl uf2 convert fw.elf fw.uf2            an .elf's loadable segments at their load addresses
--   mpctl uf2 convert fw.uf2 fw.bin            the flash image a UF2 makes, from its lowest address
--                                              (gaps 0xFF, as erased flash); --board picks the family
-- A damaged file (truncated, a block missing or repeated, overlapping blocks) is refused with the
-- block named; nothing is written then.

local uf2 = require("mpctl.rp2.uf2")
local fs, ui = mpctl.fs, mpctl.ui

local sub = arg[1]
if sub ~= "info" and sub ~= "convert" then
  mpctl.usage_error("mpctl uf2 info FILE | mpctl uf2 convert IN OUT (mpctl help uf2)" .. (sub and (": unknown job '" .. sub .. "'") or ""))
end

local function load(path)
  if not path then mpctl.usage_error("mpctl uf2 " .. sub .. ": which file?") end
  if not fs.exists(path) then mpctl.usage_error("file " .. path .. " not found") end
  return mpctl.firmware.load_file(path, { max = 64 * 1024 * 1024 })
end

local board = arg.board and mpctl.board(arg.board) or nil

local function family_id()
  local f = arg.family
  if f == nil then return board and board.uf2_families[1] or uf2.FAMILY.RP2040 end
  local id = uf2.FAMILY[tostring(f):upper()] or tonumber(f)
  if not id then
    mpctl.usage_error("family=" .. tostring(f) .. ": use RP2040, RP2350_ARM_S, RP2350_RISCV, RP2350_ARM_NS, ABSOLUTE, DATA or a number")
  end
  return id
end

if sub == "info" then
  local data = load(arg[2])
  local file = uf2.parse(data, arg[2])
  local out = { event = "uf2_info", file = arg[2], blocks = #file.blocks, ignored = file.ignored, families = ui.array({}) }
  ui.out(string.format("%s: %d blocks, every block checked%s\n", arg[2], #file.blocks,
    file.ignored > 0 and string.format(" (%d RP2350-E10 ignore block%s)", file.ignored, file.ignored == 1 and "" or "s") or ""))
  for _, id in ipairs(uf2.families(file)) do
    local fam = id ~= "none" and id or nil
    local parts, info = uf2.parts(file, fam)
    local f = { family = fam, name = uf2.name(fam), pages = info.pages, ranges = ui.array({}) }
    ui.out(string.format("  %s%s: %d blocks\n", uf2.name(fam), fam and string.format(" (0x%08x)", fam) or "", info.pages))
    for _, p in ipairs(parts) do
      f.ranges[#f.ranges + 1] = { from = p.offset, to = p.offset + #p.data }
      ui.out(string.format("    0x%08x..0x%08x  %d bytes\n", p.offset, p.offset + #p.data, #p.data))
    end
    out.families[#out.families + 1] = f
  end
  ui.event(out)
  return
end

-- convert IN OUT
local src, dst = arg[2], arg[3]
if not dst then mpctl.usage_error("mpctl uf2 convert IN OUT: where to write?") end
local data = load(src)
local result, what
if uf2.is_uf2(data) then
  local parts, file = uf2.load(data, { where = src, families = board and board.uf2_families or nil, board = board and board.id })
  local first, last = mpctl.target.extent(parts)
  result = uf2.image(parts, first, last - first)
  what = string.format("%s blocks at 0x%08x..0x%08x as a flat image (%d bytes)", uf2.name(file.family), first, last, #result)
else
  local parts
  if uf2.is_elf(data) then
    parts = uf2.from_elf(data, src)
  else
    parts = { { offset = tonumber(arg.address) or 0x10000000, data = data, name = src } }
  end
  local fam = family_id()
  result = uf2.build(parts, { family = fam })
  local first, last = mpctl.target.extent(parts)
  what = string.format("0x%08x..0x%08x as %d %s UF2 blocks", first, last, #result // 512, uf2.name(fam))
end
fs.write(dst, result)
ui.result({ event = "uf2_convert", from = src, to = dst, bytes = #result }, string.format("%s: %s -> %s\n", src, what, dst))
