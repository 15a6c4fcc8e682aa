-- mpctl.rp2.uf2: the writer checked by an independent decoder (the npm `uf2` package, run by node),
-- the reader checked on files that package encoded, round trips .bin/.elf -> UF2 -> image, and
-- every refusal (truncation, bad magic, missing/repeated block numbers, overlaps, pages the boot
-- ROM would skip, the wrong chip family) with the reason named.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local uf2 = require("mpctl.rp2.uf2")

local ROOT = debug.getinfo(1, "S").source:match("^@(.*/)tests/rp2/") or "./"
local PEER = ROOT .. "tests/rp2/uf2_peer.js"
local F = uf2.FAMILY

local R = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")
local write, read, q, with_dir = R.write, R.read, R.sh_quote, R.with_dir

local function node_modules()
  local nm = os.getenv("MPCTL_NODE_MODULES") or (ROOT .. "node_modules")
  return nm
end

local function need_peer()
  if not fs.exists("/usr/bin/node") and not os.execute("command -v node >/dev/null 2>&1") then test.skip("node not installed (scripts/setup)") end
  if not fs.exists(fs.join(node_modules(), "uf2", "dist", "cjs", "uf2.js")) then test.skip("node_modules/uf2 not installed (scripts/setup: npm ci)") end
end

-- Runs the peer; returns its stdout (raises with its output on a non-zero exit).
local function peer(args)
  local cmd = string.format("MPCTL_NODE_MODULES=%s node %s %s 2>&1", q(node_modules()), q(PEER), args)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  if not ok then error("uf2 peer failed (" .. tostring(code) .. "): " .. out, 0) end
  return out
end

-- A block by hand (for damaged files): the fields in spec order.
local function block(t)
  local payload = t.data or string.rep("\0", math.min(t.size or 256, 476))
  return string.pack("<I4I4I4I4I4I4I4I4", t.m0 or uf2.MAGIC_START0, t.m1 or uf2.MAGIC_START1, t.flags or 0x2000,
    t.addr, t.size or #payload, t.no, t.count, t.family or F.RP2040) .. payload ..
    string.rep("\0", 476 - #payload) .. string.pack("<I4", t.mend or uf2.MAGIC_END)
end

test("family ids and flags are the ones pico-sdk's uf2.h and the UF2 spec define", function()
  test.eq(F.RP2040, 0xe48bff56); test.eq(F.ABSOLUTE, 0xe48bff57); test.eq(F.DATA, 0xe48bff58)
  test.eq(F.RP2350_ARM_S, 0xe48bff59); test.eq(F.RP2350_RISCV, 0xe48bff5a); test.eq(F.RP2350_ARM_NS, 0xe48bff5b)
  test.eq(uf2.FLAG.NOT_MAIN_FLASH, 1); test.eq(uf2.FLAG.FAMILY_ID_PRESENT, 0x2000)
end)

test("a .bin made into UF2 by mpctl decodes with the npm uf2 package: magics, flags, family, numbering, payload", function()
  need_peer()
  with_dir(function(dir)
    local bin = test.random_bytes(10 * 1024 + 77, 41)
    local data = uf2.build({ { offset = 0x10000000, data = bin } }, { family = F.RP2040 })
    write(fs.join(dir, "a.uf2"), data)
    local r = ui.json_decode(peer("decode " .. q(fs.join(dir, "a.uf2")) .. " " .. q(fs.join(dir, "payload.bin"))))
    local n = (#bin + 255) // 256
    test.eq(#r.blocks, n, "one block per 256-byte page")
    for i, b in ipairs(r.blocks) do
      test.eq(b.flags, 0x2000, "flags of block " .. i)
      test.eq(b.family, F.RP2040, "family")
      test.eq(b.family_name, "Raspberry Pi RP2040", "the package's family table names it")
      test.eq(b.addr, 0x10000000 + (i - 1) * 256, "address")
      test.eq(b.size, 256, "payload size")
      test.eq(b.no, i - 1, "block number")
      test.eq(b.total, n, "num_blocks")
    end
    local payload = read(fs.join(dir, "payload.bin"))
    test.ok(payload:sub(1, #bin) == bin, "payloads are the .bin")
    test.eq(payload:sub(#bin + 1), string.rep("\0", n * 256 - #bin), "the last page is padded with zeros (as picotool)")
  end)
end)

test("a UF2 the npm uf2 package encoded reads back as the same bytes at the same address", function()
  need_peer()
  with_dir(function(dir)
    local bin = test.random_bytes(64 * 1024, 42)
    write(fs.join(dir, "in.bin"), bin)
    peer(string.format("encode %s %d %d 256 %s", q(fs.join(dir, "in.bin")), 0x10000000, F.RP2350_ARM_S, q(fs.join(dir, "p.uf2"))))
    local parts, file = uf2.load(read(fs.join(dir, "p.uf2")), { families = { F.RP2350_ARM_S, F.RP2350_RISCV }, board = "RPI_PICO2" })
    test.eq(file.family, F.RP2350_ARM_S)
    test.eq(#parts, 1, "one contiguous part")
    test.eq(parts[1].offset, 0x10000000)
    test.ok(parts[1].data == bin, "same bytes")
    -- a payload size the boot ROM does not take (476 bytes) is refused for an RP2 family, naming the block
    peer(string.format("encode %s %d %d 476 %s", q(fs.join(dir, "in.bin")), 0x10000000, F.RP2040, q(fs.join(dir, "p476.uf2"))))
    test.raises(function() uf2.parse(read(fs.join(dir, "p476.uf2")), "p476.uf2") end, "block 0 (file offset 0) (RP2040): payload_size 476")
  end)
end)

test("bin -> UF2 -> parts -> flash image round trip, with a gap between two parts", function()
  local a, b = test.random_bytes(5000, 43), test.random_bytes(3000, 44)
  local data = uf2.build({ { offset = 0x10000000, data = a }, { offset = 0x10010000, data = b } }, { family = F.RP2040 })
  local parts, file = uf2.load(data, { families = { F.RP2040 } })
  test.eq(#parts, 2, "two parts")
  test.eq(parts[1].offset, 0x10000000); test.eq(parts[2].offset, 0x10010000)
  test.ok(parts[1].data:sub(1, #a) == a and parts[2].data:sub(1, #b) == b, "the bytes")
  test.eq(#file.info.gaps, 1, "the gap is reported")
  local img = uf2.image(parts, 0x10000000, 0x20000)
  test.eq(#img, 0x20000)
  test.ok(img:sub(1, #a) == a, "first part in the image")
  test.ok(img:sub(0x10001, 0x10000 + #b) == b, "second part in the image")
  test.eq(img:sub(0x2001, 0x10000), string.rep("\255", 0x10000 - 0x2000), "the gap is erased flash")
  -- the UF2 made again from the parts is the same file
  test.ok(uf2.build(parts, { family = F.RP2040 }) == data, "stable")
end)

-- A text segment in flash, a data segment whose load address is in flash (p_paddr) but runs from
-- RAM (p_vaddr), and a .bss segment (no file bytes).
local function elf(text, dat)
  return R.elf { { paddr = 0x10000000, data = text }, { paddr = 0x10000000 + #text, vaddr = 0x20000000, data = dat },
    { paddr = 0x20001000, data = "", memsz = 4096 } }
end

test(".elf -> parts at the load addresses (bss left out) -> UF2 -> the same bytes", function()
  local text, dat = test.random_bytes(1000, 45), test.random_bytes(300, 46)
  local parts = uf2.from_elf(elf(text, dat), "fw.elf")
  test.eq(#parts, 2, "two segments with file bytes")
  test.eq(parts[1].offset, 0x10000000); test.eq(parts[2].offset, 0x10000000 + 1000, "data at its load address, not 0x20000000")
  local back = uf2.load(uf2.build(parts, { family = F.RP2040 }), { families = { F.RP2040 } })
  test.eq(#back, 1, "contiguous in flash")
  test.ok(back[1].data:sub(1, 1300) == text .. dat, "the bytes")
  test.raises(function() uf2.from_elf("\127ELF" .. string.char(2, 1) .. string.rep("\0", 60), "x.elf") end, "not a 32-bit little-endian ELF")
end)

test("damaged files are refused with the reason and the block", function()
  local good = uf2.build({ { offset = 0x10000000, data = test.random_bytes(2048, 47) } }, { family = F.RP2040 })
  test.raises(function() uf2.parse(good:sub(1, 1000), "t.uf2") end, "not a whole number of 512-byte UF2 blocks")
  test.raises(function() uf2.parse("", "t.uf2") end, "empty file")
  test.raises(function() uf2.parse(good:sub(1, 1024) .. good:sub(1537), "t.uf2") end, "block 2 is missing")
  test.raises(function() uf2.parse(good:sub(1, 1024 + 508) .. "XXXX" .. good:sub(1537), "t.uf2") end, "block 2 (file offset 1024): not a UF2 block")
  -- block 2 written twice (file of 8 blocks, one number repeated, the last missing)
  local dup = good:sub(1, 1536) .. good:sub(1025, 1536) .. good:sub(2049, 4096 - 512)
  test.raises(function() uf2.parse(dup, "t.uf2") end, "repeats block number 2 of the RP2040 blocks")
  test.raises(function() uf2.parse(block { addr = 0x10000000, no = 3, count = 3 }, "t.uf2") end, "block_no 3 is not below num_blocks 3")
  test.raises(function() uf2.parse(block { addr = 0x10000000, no = 0, count = 1, size = 480 }, "t.uf2") end, "payload_size 480")
  test.raises(function() uf2.parse(block { addr = 0x10000080, no = 0, count = 1 }, "t.uf2") end, "256-aligned")
  test.raises(function() uf2.parse(block { addr = 0x10000000, no = 0, count = 2 } .. block { addr = 0x10000000, no = 1, count = 2, family = F.RP2350_ARM_S }, "t.uf2") end,
    "claim 2 blocks but block 1 is missing")
  -- two blocks for the same page: refused, naming both
  local ov = block { addr = 0x10000000, no = 0, count = 2 } .. block { addr = 0x10000000, no = 1, count = 2 }
  test.raises(function() uf2.load(ov, { families = { F.RP2040 } }) end, "blocks overlap: block 1 writes 0x10000000")
  test.raises(function() uf2.build({ { offset = 0x10000000, data = "abcd" }, { offset = 0x10000002, data = "xy" } }, { family = F.RP2040 }) end, "parts overlap")
end)

test("the wrong family is refused naming the file's chip and the board's, and what to do", function()
  local pico2 = uf2.build({ { offset = 0x10000000, data = test.random_bytes(1024, 48) } }, { family = F.RP2350_ARM_S })
  local e
  local ok = pcall(function() uf2.load(pico2, { families = { F.RP2040 }, board = "RPI_PICO", where = "fw.uf2" }) end)
  test.eq(ok, false)
  ok, e = pcall(uf2.load, pico2, { families = { F.RP2040 }, board = "RPI_PICO", where = "fw.uf2" })
  test.eq(e.kind, "refused", "kind")
  test.contains(e.msg, "this UF2 is for RP2350 ARM secure, but RPI_PICO takes RP2040 UF2s", "names both")
  test.contains(e.msg, "would stay in BOOTSEL", "says what would happen")
  test.contains(e.hint, "nothing was written", "says nothing was written")
  local esp = uf2.build({ { offset = 0, data = "abcd" } }, { family = 0xc47e5767 })
  test.raises(function() uf2.load(esp, { families = { F.RP2350_ARM_S, F.RP2350_RISCV }, board = "RPI_PICO2" }) end,
    "this UF2 is for ESP32-S3, but RPI_PICO2 takes RP2350 ARM secure or RP2350 RISC-V UF2s")
end)

test("concatenated files (RP2040 + RP2350) and the RP2350-E10 absolute block: each board takes its own", function()
  local a, b = test.random_bytes(1024, 49), test.random_bytes(1536, 50)
  -- the E10 block as picotool writes it: ABSOLUTE family, block 0 of 2, 0xEF payload, ignore tag after it
  local e10 = string.pack("<I4I4I4I4I4I4I4I4", uf2.MAGIC_START0, uf2.MAGIC_START1, 0x2000 | 0x8000, 0x10FFFF00, 256, 0, 2, F.ABSOLUTE) ..
    string.rep("\239", 256) .. string.pack("<I4", 0x9957e304) .. string.rep("\0", 476 - 260) .. string.pack("<I4", uf2.MAGIC_END)
  local both = uf2.build({ { offset = 0x10000000, data = a } }, { family = F.RP2040 }) .. e10 ..
    uf2.build({ { offset = 0x10000000, data = b } }, { family = F.RP2350_RISCV })
  local p1, f1 = uf2.load(both, { families = { F.RP2040 } })
  test.eq(f1.family, F.RP2040); test.ok(p1[1].data == a, "the RP2040 part")
  local p2, f2 = uf2.load(both, { families = { F.RP2350_ARM_S, F.RP2350_RISCV, F.ABSOLUTE } })
  test.eq(f2.family, F.RP2350_RISCV, "the RISC-V image, not the E10 block's absolute family")
  test.ok(p2[1].data == b, "the RP2350 part")
  test.eq(f2.ignored, 1, "the E10 block was recognised and left out")
  test.raises(function() uf2.load(both, {}) end, "say which board it is for")
end)

-- The second independent implementation: tests/rp2/sim/uf2_peer.py (rp2sim's, written from the
-- spec alone, shares no code with mpctl), run by Debian's python3.
local PY = ROOT .. "tests/rp2/sim/uf2_peer.py"

test("mpctl's UF2 read by the Python peer gives the same flash image; the peer's concatenated file read by mpctl too", function()
  if not fs.exists("/usr/bin/python3") then test.skip("/usr/bin/python3 not installed") end
  with_dir(function(dir)
    local a, b = test.random_bytes(3000, 51), test.random_bytes(5000, 52)
    local parts = { { offset = 0x10000000, data = a }, { offset = 0x10008000, data = b } }
    write(fs.join(dir, "m.uf2"), uf2.build(parts, { family = F.RP2040 }))
    local cmd = string.format("/usr/bin/python3 %s read %s %d %s %d %d 2>&1", q(PY), q(fs.join(dir, "m.uf2")), F.RP2040,
      q(fs.join(dir, "img.bin")), 0x10000000, 0x10000)
    local p = assert(io.popen(cmd, "r")); local out = p:read("a"); local ok = p:close()
    test.ok(ok, "peer read: " .. out)
    local want = uf2.image(uf2.load(uf2.build(parts, { family = F.RP2040 }), { families = { F.RP2040 } }), 0x10000000, 0x10000)
    test.ok(read(fs.join(dir, "img.bin")) == want, "the same image from both readers")
    -- the peer writes a file with blocks of another family interleaved (own numbering)
    local bin = test.random_bytes(4096, 53)
    write(fs.join(dir, "in.bin"), bin)
    cmd = string.format("/usr/bin/python3 %s write %s %s %d %d wrong-family=%d@%d:3 2>&1", q(PY), q(fs.join(dir, "p.uf2")),
      q(fs.join(dir, "in.bin")), 0x10000000, F.RP2040, F.RP2350_ARM_S, 0x10100000)
    p = assert(io.popen(cmd, "r")); out = p:read("a"); ok = p:close()
    test.ok(ok, "peer write: " .. out)
    local got, file = uf2.load(read(fs.join(dir, "p.uf2")), { families = { F.RP2040 }, board = "RPI_PICO" })
    test.eq(#got, 1, "one RP2040 part")
    test.ok(got[1].data == bin and got[1].offset == 0x10000000, "the RP2040 blocks")
    test.eq(file.families[F.RP2350_ARM_S], 3, "the other family's blocks were seen and left out")
  end)
end)
