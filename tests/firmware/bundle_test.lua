-- Firmware bundles made by Python's zipfile/tarfile (an independent writer), read by mpctl.archive
-- through mpctl.firmware.bundle: ESP-IDF flasher_args.json / flash_args offsets, streamed reads,
-- a zip-slip archive, a symlink escape and truncated bundles.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local proc = require("mpctl.proc")
local archive = require("mpctl.archive")
local firmware = require("mpctl.firmware")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local dir = fs.tmpdir()

do
  local p = proc.spawn({ argv = { "/usr/bin/python3", here .. "/../fixtures/firmware/make_bundles.py", dir },
    pty = false, stderr = "inherit" })
  local code = p:wait(60)
  p:close()
  assert(code == 0, "make_bundles.py failed: " .. tostring(code))
end

local function f(name) return fs.join(dir, name) end

for _, name in ipairs({ "esp32-bundle.zip", "esp32-bundle.tar.gz", "flash-args.zip" }) do
  test(name .. ": parts at the offsets the bundle declares", function()
    local b = firmware.bundle(f(name))
    test.eq(#b.parts, 3)
    test.eq({ b.parts[1].offset, b.parts[2].offset, b.parts[3].offset }, { 0x1000, 0x8000, 0x10000 })
    test.eq(b.parts[1].name, "build/bootloader/bootloader.bin")
    test.eq({ b.parts[1].size, b.parts[2].size, b.parts[3].size }, { 24000, 3072, 150000 })
    test.eq(b.parts[3].data, archive.read(f(name), "build/micropython.bin"))
    test.eq(b.settings.flash_mode, "dio")
    if name ~= "flash-args.zip" then test.eq(b.chip, "esp32") end
  end)
end

test("parts(): a bundle gives its parts, a plain image sits at the board's offset", function()
  local parts = firmware.parts(f("esp32-bundle.tar.gz"), { offset = 0x1000 })
  test.eq(#parts, 3)
  test.eq(parts[3].offset, 0x10000)
  test.eq(parts[1].chip, "esp32")
  fs.write(f("image.bin"), "\233" .. string.rep("x", 99))
  parts = firmware.parts({ path = f("image.bin") }, { offset = 0x1000 })
  test.eq(#parts, 1)
  test.eq(parts[1].offset, 0x1000)
  test.eq(#parts[1].data, 100)
end)

test("entries stream one by one without unpacking", function()
  local seen, app = {}, 0
  for info, a in archive.each(f("esp32-bundle.zip")) do
    seen[#seen + 1] = info.name
    if info.name == "build/micropython.bin" then
      repeat
        local chunk = a:read(4096)
        app = app + #chunk
      until chunk == ""
    end
  end
  test.eq(#seen, 4)
  test.eq(app, 150000)
end)

test("a zip-slip bundle is refused before anything is written", function()
  local out = f("slip-out")
  local msg = test.raises(function() archive.extract(f("slip.zip"), out) end, "refusing entry \"../../evil.txt\"")
  test.contains(msg, "'..' in the path")
  test.ok(not fs.exists(fs.join(out, "readme.txt")), "the harmless entry before it was not written either")
  test.ok(not fs.exists(fs.join(dir, "evil.txt")) and not fs.exists(fs.join(fs.dirname(dir), "evil.txt")))
end)

test("a symlink leading out of the folder is refused, and nothing is written through it", function()
  local out = f("link-out")
  local msg = test.raises(function() archive.extract(f("link-out.tar.gz"), out) end, "symlink leaving the folder")
  test.contains(msg, "nothing extracted")
  test.ok(not fs.exists(fs.join(fs.dirname(dir), "evil.txt")))
end)

test("a good bundle extracts completely", function()
  local out = f("good-out")
  local names = archive.extract(f("esp32-bundle.tar.gz"), out)
  test.eq(#names, 4)
  test.eq(fs.read(fs.join(out, "build", "micropython.bin")), archive.read(f("esp32-bundle.zip"), "build/micropython.bin"))
end)

test("truncated bundles fail with the archive's name, for reading and for extracting", function()
  for _, name in ipairs({ "cut.zip", "cut.tar.gz" }) do
    local msg = test.raises(function() firmware.bundle(f(name)) end, name)
    test.ok(#msg > #f(name), msg)
    test.raises(function() archive.verify(f(name)) end, name)
    test.raises(function() archive.extract(f(name), f(name .. "-out")) end, name)
  end
end)

test("a file that is not an archive is not a bundle", function()
  fs.write(f("plain.bin"), string.rep("\255", 4096))
  test.raises(function() firmware.bundle(f("plain.bin")) end, "plain.bin")
end)

test("a bundle naming files outside itself ('..' or absolute) is refused as malformed", function()
  local errors = require("mpctl.errors")
  for name, want in pairs({ ["dotdot.zip"] = '"../evil.bin"', ["dotdot-entry.zip"] = '"../evil.txt"',
    ["abs.tar.gz"] = '"/x.bin"' }) do
    local ok, e = pcall(firmware.bundle, f(name))
    test.eq(ok, false, name)
    test.eq(errors.kind(e), "refused", name)
    test.contains(tostring(e), "malformed bundle", name)
    test.contains(tostring(e), want, name)
    test.raises(function() firmware.parts(f(name), { offset = 0x1000 }) end, "malformed bundle")
  end
end)

test("negative, overflowing and past-4-GiB offsets are refused with the offset named", function()
  local errors = require("mpctl.errors")
  for name, want in pairs({ ["negative.zip"] = 'offset "-0x1000" for bootloader/bootloader.bin is negative',
    ["huge.zip"] = 'offset "0x100000000" for micropython.bin is out of range',
    ["huge-text.zip"] = 'offset "0x1fffffffffffffffff" for micropython.bin is out of range',
    ["past4g.zip"] = "ends past the 4 GiB address space" }) do
    local ok, e = pcall(firmware.bundle, f(name))
    test.eq(ok, false, name)
    test.eq(errors.kind(e), "refused", name)
    test.contains(tostring(e), want, name)
  end
  -- and a bundle bigger than the board's flash is refused before any part is written
  test.raises(function() firmware.parts(f("esp32-bundle.zip"), { offset = 0x1000, flash_sizes = { "64KB" } }) end,
    "past the end of the 65536-byte flash")
end)

test("offset parsing: hex, decimal, and nothing that wraps", function()
  local bundle = require("mpctl.esp.bundle")
  test.eq(bundle.parse_offset("0x1000"), 0x1000)
  test.eq(bundle.parse_offset("4096"), 4096)
  test.eq(bundle.parse_offset("0xFFFFFFFF"), 0xFFFFFFFF)
  test.eq(bundle.parse_offset("0x00000000000001000"), 0x1000, "leading zeros are not digits")
  test.eq({ bundle.parse_offset("0x100000000") }, { nil, "out of range" })
  test.eq({ bundle.parse_offset("-1") }, { nil, "negative" })
  test.eq({ bundle.parse_offset("1e3") }, { nil, "not a number" })
  test.eq({ bundle.parse_offset(-5) }, { nil, "out of range" })
  test.eq({ bundle.parse_offset(1.5) }, { nil, "not a number" })
end)

test("cleanup", function() fs.remove(dir, { recursive = true }) end)
