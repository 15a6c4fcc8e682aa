-- `mpctl uf2 info|convert`: a .bin and an .elf made into UF2s and back into flash images, the
-- family chosen by family= or --board, and damaged or wrong-family files refused with nothing
-- written.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local uf2 = require("mpctl.rp2.uf2")

local function write(path, data) local f = assert(io.open(path, "wb")); f:write(data); f:close() end
local function read(path) local f = io.open(path, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function mpctl(dir, args)
  local exe = test.exe() or debug.getregistry()["mpctl.exe"]
  local p = assert(io.popen(string.format("cd %s && %s %s 2>&1", q(dir), q(exe), args), "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

local function with_dir(fn)
  local dir = fs.tmpdir()
  local ok, e = pcall(fn, dir)
  fs.remove(dir, { recursive = true })
  if not ok then error(e, 0) end
end

test("uf2 convert .bin -> .uf2 -> .bin round trip; info lists the family and the range", function()
  with_dir(function(dir)
    local bin = test.random_bytes(10000, 90)
    write(fs.join(dir, "a.bin"), bin)
    local out, code = mpctl(dir, "uf2 convert a.bin a.uf2 address=0x10004000")
    test.eq(code, 0, out)
    test.contains(out, "0x10004000..0x10006710 as 40 RP2040 UF2 blocks", "what it did")
    local parts = uf2.load(read(fs.join(dir, "a.uf2")), { families = { uf2.FAMILY.RP2040 } })
    test.eq(parts[1].offset, 0x10004000, "at address=")
    out, code = mpctl(dir, "uf2 info a.uf2")
    test.eq(code, 0, out)
    test.contains(out, "RP2040 (0xe48bff56): 40 blocks", "family")
    test.contains(out, "0x10004000..0x10006800  10240 bytes", "range")
    out, code = mpctl(dir, "uf2 convert a.uf2 b.bin")
    test.eq(code, 0, out)
    local back = read(fs.join(dir, "b.bin"))
    test.ok(back:sub(1, #bin) == bin, "the same bytes")
    test.eq(back:sub(#bin + 1), string.rep("\0", 10240 - #bin), "then the last page's zero padding")
  end)
end)

test("uf2 convert with --board RPI_PICO2 or family=RP2350_RISCV; a Pico 2 UF2 converted for a Pico is refused", function()
  with_dir(function(dir)
    write(fs.join(dir, "a.bin"), test.random_bytes(600, 91))
    local out, code = mpctl(dir, "uf2 convert a.bin p2.uf2 --board RPI_PICO2")
    test.eq(code, 0, out)
    test.contains(out, "RP2350 ARM secure UF2 blocks", "the board's first family")
    out, code = mpctl(dir, "uf2 convert a.bin rv.uf2 family=RP2350_RISCV")
    test.eq(code, 0, out)
    test.eq(uf2.families(uf2.parse(read(fs.join(dir, "rv.uf2")))), { uf2.FAMILY.RP2350_RISCV }, "RISC-V")
    out, code = mpctl(dir, "uf2 convert p2.uf2 x.bin --board RPI_PICO")
    test.eq(code, 1, out)
    test.contains(out, "this UF2 is for RP2350 ARM secure, but RPI_PICO takes RP2040 UF2s", "names both")
    test.eq(read(fs.join(dir, "x.bin")), nil, "nothing written")
    out, code = mpctl(dir, "uf2 convert a.bin y.uf2 family=ESP99")
    test.eq(code, 2, out)
    test.contains(out, "family=ESP99: use RP2040", "usage")
  end)
end)

test("uf2 info/convert of a truncated file: refused, nothing written; an .elf converts by its segments", function()
  with_dir(function(dir)
    local good = uf2.build({ { offset = 0x10000000, data = test.random_bytes(2048, 92) } }, { family = uf2.FAMILY.RP2040 })
    write(fs.join(dir, "t.uf2"), good:sub(1, 1500))
    local out, code = mpctl(dir, "uf2 info t.uf2")
    test.eq(code, 1, out)
    test.contains(out, "not a whole number of 512-byte UF2 blocks", "why")
    out, code = mpctl(dir, "uf2 convert t.uf2 t.bin")
    test.eq(code, 1, out)
    test.eq(read(fs.join(dir, "t.bin")), nil, "nothing written")
    -- an ELF32 with one PT_LOAD segment at 0x10000000
    local text = test.random_bytes(700, 93)
    local elf = "\127ELF" .. string.char(1, 1, 1, 0) .. string.rep("\0", 8) ..
      string.pack("<I2I2I4I4I4I4I4I2I2I2I2I2I2", 2, 40, 1, 0x10000001, 52, 0, 0x05000000, 52, 32, 1, 40, 0, 0) ..
      string.pack("<I4I4I4I4I4I4I4I4", 1, 84, 0x10000000, 0x10000000, #text, #text, 5, 4) .. text
    write(fs.join(dir, "fw.elf"), elf)
    out, code = mpctl(dir, "uf2 convert fw.elf fw.uf2")
    test.eq(code, 0, out)
    local parts = uf2.load(read(fs.join(dir, "fw.uf2")), { families = { uf2.FAMILY.RP2040 } })
    test.ok(parts[1].offset == 0x10000000 and parts[1].data:sub(1, #text) == text, "the segment's bytes")
  end)
end)
