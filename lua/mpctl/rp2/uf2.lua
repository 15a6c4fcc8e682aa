--[[ mpctl.rp2.uf2: UF2 files for the RP2040 and RP2350 boot ROMs: read and check them, make them
from a .bin (+ address) or an .elf, and turn them into what goes where on flash.

    uf2.parse(data, where) -> file        every block checked (below); raises kind "refused"
      file.blocks = { {index=, flags=, addr=, size=, no=, count=, family=, data=, ignore=?}, ... }
      file.runs   = { {family=, count=, first=, last=}, ... }   one per family run (concatenated files)
      file.families = { [id] = blocks }   of the blocks that go to main flash (not ignored ones)
    uf2.families(file) -> sorted list of ids;  uf2.name(id) -> "RP2040" | "RP2350 ARM secure" | "0x12345678"
    uf2.check_family(file, allowed, board_id, where)  raises "refused" naming the file's family and the board's
    uf2.parts(file, family) -> parts, info    {{offset=, data=}} merged where pages touch; info = {pages=, gaps={...}}
    uf2.load(data, {where=, families=, board=}) -> parts, file     parse + check_family + parts
    uf2.build(parts, {family=}) -> data       256-byte payloads at 256-aligned addresses (what the boot ROM takes)
    uf2.from_elf(data, where) -> parts        the PT_LOAD segments at their load (physical) addresses
    uf2.is_uf2(data) / uf2.is_elf(data)
    uf2.image(parts, base, size[, fill]) -> flat bytes (a flash image; fill defaults to 0xFF, erased NOR)

Format (the UF2 specification, github.com/microsoft/uf2 README "File format", and pico-sdk
src/common/boot_uf2_headers/include/boot/uf2.h): 512-byte blocks, little-endian words:
magic_start0 0x0A324655 ("UF2\n"), magic_start1 0x9E5D5157, flags, target_addr, payload_size,
block_no, num_blocks, file_size-or-familyID, data[476], magic_end 0x0AB16F30. Flags: not main flash
0x1, file container 0x1000, family id present 0x2000, MD5 present 0x4000, extension tags present
0x8000. "Payload size and target address should always be 4-byte aligned" (spec). Block numbers
count from 0 within one family's blocks; files for several families may be concatenated, and a
boot ROM disregards blocks of a family that is not its own, "including blockNo and numBlocks"
(spec, Family ID). So numbering is checked per family.

RP2 specifics: the boot ROM writes 256-byte flash pages, so its blocks carry payload_size 256 at
256-aligned addresses with the family id flag set; picotool's UF2 reader keeps exactly those
(picotool main.cpp build_rmap_uf2: FAMILY_ID_PRESENT, not NOT_MAIN_FLASH, payload_size ==
PAGE_SIZE). A block of an RP2 family that breaks this is refused here (the ROM would ignore it and
the image would have a hole). Family ids (pico-sdk uf2.h): RP2040 0xe48bff56, ABSOLUTE 0xe48bff57,
DATA 0xe48bff58, RP2350_ARM_S 0xe48bff59, RP2350_RISCV 0xe48bff5a, RP2350_ARM_NS 0xe48bff5b,
CYW43 firmware 0xe48bff55. RP2350-E10: picotool puts one ABSOLUTE-family block first (block 0 of 2,
payload 256 bytes of 0xEF, extension tag word UF2_EXTENSION_RP2_IGNORE_BLOCK 0x9957e304 right after
the payload; picotool elf2uf2.cpp gen_abs_block/check_abs_block); such a block is recognised and
left out of the image and of the numbering checks.

Padding: a page the parts cover only partly is filled with zeros, as picotool's pages2uf2 does
(memset(block.data, 0, ...)), so the same .bin gives the same UF2 bytes as `picotool uf2 convert`.
]]
local errors = require("mpctl.errors")

local M = {}

M.MAGIC_START0, M.MAGIC_START1, M.MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
M.BLOCK, M.MAX_PAYLOAD, M.PAGE = 512, 476, 256
M.FLAG = { NOT_MAIN_FLASH = 0x1, FILE_CONTAINER = 0x1000, FAMILY_ID_PRESENT = 0x2000, MD5_PRESENT = 0x4000,
  EXTENSION_FLAGS_PRESENT = 0x8000 }
M.IGNORE_BLOCK_TAG = 0x9957e304

M.FAMILY = { CYW43 = 0xe48bff55, RP2040 = 0xe48bff56, ABSOLUTE = 0xe48bff57, DATA = 0xe48bff58,
  RP2350_ARM_S = 0xe48bff59, RP2350_RISCV = 0xe48bff5a, RP2350_ARM_NS = 0xe48bff5b }
local NAMES = { [0xe48bff55] = "CYW43 firmware", [0xe48bff56] = "RP2040", [0xe48bff57] = "absolute",
  [0xe48bff58] = "data", [0xe48bff59] = "RP2350 ARM secure", [0xe48bff5a] = "RP2350 RISC-V",
  [0xe48bff5b] = "RP2350 ARM non-secure",
  -- a few other chips people drop onto the wrong drive (microsoft/uf2 utils/uf2families.json)
  [0x1c5f21b0] = "ESP32", [0xbfdd4eee] = "ESP32-S2", [0xc47e5767] = "ESP32-S3", [0xd42ba06c] = "ESP32-C3",
  [0x68ed2b88] = "SAMD21", [0x55114460] = "SAMD51", [0xada52840] = "nRF52840", [0x57755a57] = "STM32F4" }
-- The RP2 families: blocks of these must be 256-byte pages (the boot ROM's unit).
local RP2 = { [0xe48bff56] = true, [0xe48bff57] = true, [0xe48bff58] = true, [0xe48bff59] = true,
  [0xe48bff5a] = true, [0xe48bff5b] = true }

function M.name(id)
  if id == nil then return "no family id" end
  return NAMES[id] or string.format("0x%08x", id)
end

local function refuse(where, detail, extra)
  extra = extra or {}
  extra.hint = extra.hint or "nothing was written; check that the file is a complete UF2 for this board"
  errors.raise("refused", where, detail, extra)
end

function M.is_uf2(data)
  if #data < 8 then return false end
  local a, b = string.unpack("<I4I4", data)
  return a == M.MAGIC_START0 and b == M.MAGIC_START1
end

function M.is_elf(data)
  return data:sub(1, 4) == "\127ELF"
end

-- The E10 workaround block picotool writes first into RP2350 flash UF2s (see the header).
local function is_ignore_block(b)
  if b.family ~= M.FAMILY.ABSOLUTE or b.no ~= 0 or b.size ~= M.PAGE then return false end
  if b.flags & M.FLAG.EXTENSION_FLAGS_PRESENT == 0 then return false end
  return string.unpack("<I4", b.raw, 32 + M.PAGE + 1) == M.IGNORE_BLOCK_TAG
end

local function parse_block(data, i, where)
  local pos = (i - 1) * M.BLOCK + 1
  local m0, m1, flags, addr, size, no, count, fam = string.unpack("<I4I4I4I4I4I4I4I4", data, pos)
  local mend = string.unpack("<I4", data, pos + 508)
  local at = string.format("block %d (file offset %d)", i - 1, pos - 1)
  if m0 ~= M.MAGIC_START0 or m1 ~= M.MAGIC_START1 or mend ~= M.MAGIC_END then
    refuse(where, string.format("%s: not a UF2 block (magic %08x %08x ... %08x, expected %08x %08x ... %08x)",
      at, m0, m1, mend, M.MAGIC_START0, M.MAGIC_START1, M.MAGIC_END), { block = i - 1 })
  end
  if size > M.MAX_PAYLOAD then
    refuse(where, string.format("%s: payload_size %d is more than the %d bytes a block holds", at, size, M.MAX_PAYLOAD),
      { block = i - 1 })
  end
  if count == 0 or no >= count then
    refuse(where, string.format("%s: block_no %d is not below num_blocks %d", at, no, count), { block = i - 1 })
  end
  local b = { index = i - 1, flags = flags, addr = addr, size = size, no = no, count = count,
    family = (flags & M.FLAG.FAMILY_ID_PRESENT ~= 0) and fam or nil, file_size = fam,
    raw = data:sub(pos, pos + 511) }
  b.data = b.raw:sub(33, 32 + size)
  b.main = flags & M.FLAG.NOT_MAIN_FLASH == 0 and flags & M.FLAG.FILE_CONTAINER == 0
  if b.main and (addr % 4 ~= 0 or size % 4 ~= 0) then
    refuse(where, string.format("%s: address 0x%08x / payload_size %d not 4-byte aligned", at, addr, size), { block = i - 1 })
  end
  if addr + size > 0x100000000 then
    refuse(where, string.format("%s: 0x%08x + %d runs past the 32-bit address space", at, addr, size), { block = i - 1 })
  end
  if b.main and b.family and RP2[b.family] and (size ~= M.PAGE or addr % M.PAGE ~= 0) then
    refuse(where, string.format("%s (%s): payload_size %d at 0x%08x; the RP2 boot ROM takes only 256-byte pages at " ..
      "256-aligned addresses and would skip this block", at, M.name(b.family), size, addr), { block = i - 1 })
  end
  b.ignore = is_ignore_block(b)
  return b
end

--- Every block checked; numbering checked per family: each family's blocks count 0..num_blocks-1
--- on their own, whatever other families' blocks sit between them (a boot ROM ignores those
--- entirely); a family's numbering may start again at 0 once complete (files concatenated).
function M.parse(data, where)
  where = where or "UF2 file"
  if #data == 0 then refuse(where, "empty file") end
  if #data % M.BLOCK ~= 0 then
    refuse(where, string.format("%d bytes is not a whole number of 512-byte UF2 blocks (%d blocks and %d bytes left over: truncated?)",
      #data, #data // M.BLOCK, #data % M.BLOCK))
  end
  local file = { blocks = {}, runs = {}, families = {}, ignored = 0, where = where }
  local open = {} -- family key -> the run being read
  local function close_run(run)
    local missing = {}
    for n = 0, run.count - 1 do
      if not run.seen[n] then
        missing[#missing + 1] = n
        if #missing >= 5 then break end
      end
    end
    if #missing > 0 then
      refuse(where, string.format("the %s blocks starting at block %d claim %d blocks but block%s %s %s missing (truncated or damaged file)",
        M.name(run.family), run.first, run.count, #missing > 1 and "s" or "", table.concat(missing, ", "),
        #missing > 1 and "are" or "is"))
    end
    run.seen = nil
    file.runs[#file.runs + 1] = run
  end
  for i = 1, #data // M.BLOCK do
    local b = parse_block(data, i, where)
    file.blocks[#file.blocks + 1] = b
    if b.ignore then
      file.ignored = file.ignored + 1
    else
      local key = b.family or "none"
      local run = open[key]
      if run and run.done and b.no == 0 then close_run(run); run = nil end
      if not run then
        run = { family = b.family, count = b.count, first = b.index, seen = {}, n = 0 }
        open[key] = run
      end
      if b.count ~= run.count then
        refuse(where, string.format("block %d says num_blocks %d, the %s blocks before it said %d",
          b.index, b.count, M.name(b.family), run.count), { block = b.index })
      end
      if run.seen[b.no] then
        refuse(where, string.format("block %d repeats block number %d of the %s blocks", b.index, b.no, M.name(b.family)),
          { block = b.index })
      end
      run.seen[b.no] = true
      run.n = run.n + 1
      run.last = b.index
      run.done = run.n == run.count
      if b.main then file.families[key] = (file.families[key] or 0) + 1 end
    end
  end
  local left = {}
  for _, run in pairs(open) do left[#left + 1] = run end
  table.sort(left, function(x, y) return x.first < y.first end)
  for _, run in ipairs(left) do close_run(run) end
  return file
end

function M.families(file)
  local out = {}
  for id in pairs(file.families) do if id ~= "none" then out[#out + 1] = id end end
  table.sort(out)
  if file.families.none then out[#out + 1] = "none" end
  return out
end

local function family_list(ids)
  local names = {}
  for _, id in ipairs(ids) do names[#names + 1] = id == "none" and "no family id" or M.name(id) end
  return table.concat(names, ", ")
end

--- The one family of `allowed` the file carries; refused (naming the file's families and the
--- board's) when it carries none of them. A file for several chips is fine when one is the board's.
function M.check_family(file, allowed, board_id, where)
  local have = M.families(file)
  if #have == 0 then refuse(where or file.where, "no block of this file goes to main flash") end
  for _, want in ipairs(allowed) do
    if file.families[want] then return want end
  end
  local ok_names = {}
  for _, id in ipairs(allowed) do ok_names[#ok_names + 1] = M.name(id) end
  errors.raise("refused", where or file.where, string.format("this UF2 is for %s, but %s takes %s UF2s; its boot ROM would " ..
    "ignore every block and the board would stay in BOOTSEL", family_list(have), board_id or "this board",
    table.concat(ok_names, " or ")),
    { hint = "nothing was written; use the firmware built for " .. (board_id or "this board") ..
      " (mpctl firmware fetch board=" .. (board_id or "BOARD") .. ")", families = have })
end

--- The blocks of one family that go to main flash, as parts: pages that touch are merged; a gap
--- starts a new part. Overlapping blocks are refused (which one would win is up to the writer).
function M.parts(file, family)
  local blocks = {}
  for _, b in ipairs(file.blocks) do
    if b.main and not b.ignore and b.family == family then blocks[#blocks + 1] = b end
  end
  if #blocks == 0 then refuse(file.where, "no " .. M.name(family) .. " blocks for main flash in this file") end
  table.sort(blocks, function(a, b) return a.addr < b.addr or (a.addr == b.addr and a.index < b.index) end)
  local parts, gaps, cur = {}, {}, nil
  for _, b in ipairs(blocks) do
    if cur and b.addr < cur.offset + cur.len then
      refuse(file.where, string.format("blocks overlap: block %d writes 0x%08x..0x%08x, which block %d already covers (up to 0x%08x)",
        b.index, b.addr, b.addr + b.size, cur.last_index, cur.offset + cur.len), { block = b.index })
    end
    if cur and b.addr == cur.offset + cur.len then
      cur.pieces[#cur.pieces + 1] = b.data
      cur.len = cur.len + b.size
    else
      if cur then gaps[#gaps + 1] = { from = cur.offset + cur.len, to = b.addr } end
      cur = { offset = b.addr, len = b.size, pieces = { b.data } }
      parts[#parts + 1] = cur
    end
    cur.last_index = b.index
  end
  local out = {}
  for i, p in ipairs(parts) do
    out[i] = { offset = p.offset, data = table.concat(p.pieces), name = string.format("%s blocks at 0x%08x", M.name(family), p.offset) }
  end
  return out, { pages = #blocks, gaps = gaps }
end

--- parse + family check + parts. opts.families: the ids the board takes (first match is used).
function M.load(data, opts)
  opts = opts or {}
  local file = M.parse(data, opts.where)
  local family
  if opts.families then
    family = M.check_family(file, opts.families, opts.board, opts.where)
  else
    local have = M.families(file)
    if #have ~= 1 then
      refuse(file.where, "the file holds blocks for " .. family_list(have) .. "; say which board it is for")
    end
    family = have[1] ~= "none" and have[1] or nil
  end
  local parts, info = M.parts(file, family)
  file.family, file.info = family, info
  return parts, file
end

--- UF2 bytes for parts: one block per 256-byte page the parts touch, payload 256, family id set,
--- pages sorted by address and numbered from 0; uncovered bytes of a page are zeros (picotool).
--- Overlapping parts are refused.
function M.build(parts, opts)
  opts = opts or {}
  local family = opts.family or errors.raise("usage", "uf2", "uf2.build needs a family id")
  local sorted = {}
  for i, p in ipairs(parts) do sorted[i] = p end
  table.sort(sorted, function(a, b) return a.offset < b.offset end)
  local pages, order, prev_end = {}, {}, nil
  for _, p in ipairs(sorted) do
    local a, e = p.offset, p.offset + #p.data
    if e > 0x100000000 then refuse(p.name or "image", string.format("0x%08x + %d runs past the 32-bit address space", a, #p.data)) end
    if prev_end and a < prev_end then refuse(p.name or "image", string.format("parts overlap at 0x%08x", a)) end
    prev_end = e
    local pg = a - a % M.PAGE
    while pg < e do
      local lo, hi = math.max(a, pg), math.min(e, pg + M.PAGE)
      if not pages[pg] then pages[pg] = {}; order[#order + 1] = pg end
      table.insert(pages[pg], { at = lo - pg, data = p.data:sub(lo - a + 1, hi - a) })
      pg = pg + M.PAGE
    end
  end
  local out = {}
  for n, pg in ipairs(order) do
    local page = string.rep("\0", M.PAGE)
    for _, piece in ipairs(pages[pg]) do
      page = page:sub(1, piece.at) .. piece.data .. page:sub(piece.at + #piece.data + 1)
    end
    out[n] = string.pack("<I4I4I4I4I4I4I4I4", M.MAGIC_START0, M.MAGIC_START1, M.FLAG.FAMILY_ID_PRESENT, pg, M.PAGE,
      n - 1, #order, family) .. page .. string.rep("\0", M.MAX_PAYLOAD - M.PAGE) .. string.pack("<I4", M.MAGIC_END)
  end
  return table.concat(out)
end

--- The loadable segments of a 32-bit little-endian ELF (ARM or RISC-V) at their load (physical)
--- addresses, as picotool's elf2uf2 takes them (PT_LOAD, min(p_filesz, p_memsz) bytes at p_paddr;
--- segments with nothing in the file, like .bss, are left out). ELF header and program header
--- layout: the System V ABI (e_phoff at 0x1C, e_phentsize 0x2A, e_phnum 0x2C; Elf32_Phdr =
--- type, offset, vaddr, paddr, filesz, memsz, flags, align).
function M.from_elf(data, where)
  where = where or "ELF file"
  if not M.is_elf(data) or #data < 52 then refuse(where, "not an ELF file") end
  if data:byte(5) ~= 1 or data:byte(6) ~= 1 then
    refuse(where, "not a 32-bit little-endian ELF (RP2040/RP2350 images are ELF32 LE)")
  end
  local phoff = string.unpack("<I4", data, 0x1C + 1)
  local phentsize, phnum = string.unpack("<I2I2", data, 0x2A + 1)
  if phnum == 0 then refuse(where, "the ELF has no program headers") end
  if phentsize < 32 or phoff + phentsize * phnum > #data then refuse(where, "program headers run past the end of the file") end
  local parts = {}
  for i = 0, phnum - 1 do
    local typ, off, _, paddr, filesz, memsz = string.unpack("<I4I4I4I4I4I4", data, phoff + i * phentsize + 1)
    local n = math.min(filesz, memsz)
    if typ == 1 and n > 0 then
      if off + n > #data then refuse(where, string.format("segment %d runs past the end of the file", i)) end
      parts[#parts + 1] = { offset = paddr, data = data:sub(off + 1, off + n), name = string.format("ELF segment %d at 0x%08x", i, paddr) }
    end
  end
  if #parts == 0 then refuse(where, "the ELF has no loadable segment with data") end
  table.sort(parts, function(a, b) return a.offset < b.offset end)
  return parts
end

--- A flat image of [base, base+size): the parts laid on `fill` (0xFF: erased flash). Parts outside
--- are refused.
function M.image(parts, base, size, fill)
  fill = fill or "\255"
  local pieces, at = {}, base
  local sorted = {}
  for i, p in ipairs(parts) do sorted[i] = p end
  table.sort(sorted, function(a, b) return a.offset < b.offset end)
  for _, p in ipairs(sorted) do
    if p.offset < at or p.offset + #p.data > base + size then
      refuse(p.name or "image", string.format("0x%08x..0x%08x is outside 0x%08x..0x%08x or overlaps the part before it",
        p.offset, p.offset + #p.data, base, base + size))
    end
    pieces[#pieces + 1] = string.rep(fill, p.offset - at)
    pieces[#pieces + 1] = p.data
    at = p.offset + #p.data
  end
  pieces[#pieces + 1] = string.rep(fill, base + size - at)
  return table.concat(pieces)
end

return M
