-- `mpctl esp id|erase|read|write` (issue 13, esptool's habits) against sim://esp32s3, run as a
-- person runs it: chip auto-detected, a board mismatch names the board to use, board ids in any
-- case, write verified and the rest of the flash checked, read back equal, region erase.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), (out:gsub("rc=%d+%s*$", ""))
end

local function mpctl(args) return sh(string.format("%q %s", test.exe(), args)) end

test("mpctl esp: id, board mismatch hint, write/read/erase on sim://esp32s3", function()
  if not test.exe() then test.skip("needs the mpctl executable") end
  local dir = fs.tmpdir()
  local url = string.format("'sim://esp32s3?timing=off&app=none&flash_file=%s/flash.bin'", dir)
  local rc, out = mpctl("esp id --port " .. url)
  test.eq(rc, 0, out)
  test.contains(out, "chip: ESP32-S3")
  test.ok(out:match("mac: %x%x:%x%x:%x%x:%x%x:%x%x:%x%x"), out)
  test.contains(out, "flash: 4MB")
  test.contains(out, "board: ESP32_GENERIC_S3")
  rc, out = mpctl("esp id --port " .. url .. " --board esp32_generic")
  test.eq(rc, 1, out)
  test.contains(out, "expected ESP32 (board file) but found ESP32-S3: use --board ESP32_GENERIC_S3")
  rc, out = mpctl("esp id --port " .. url .. " --board esp32_generic_s3")
  test.eq(rc, 0, out)
  local data = {}
  for i = 1, 70000 do data[i] = string.char((i * 7919) % 251) end
  data = table.concat(data)
  fs.write(dir .. "/in.bin", data)
  rc, out = mpctl("esp write --port " .. url .. " 0x10000 " .. dir .. "/in.bin")
  test.eq(rc, 0, out)
  test.contains(out, "verified: flash MD5 matches each file; outside them: unchanged")
  rc, out = mpctl("esp read --port " .. url .. " 64K 70000 " .. dir .. "/back.bin")
  test.eq(rc, 0, out)
  test.eq(hash.hex(hash.md5(fs.read(dir .. "/back.bin"))), hash.hex(hash.md5(data)), "read back")
  rc, out = mpctl("esp erase --port " .. url .. " 0x10000 0x1000")
  test.eq(rc, 0, out)
  local flash = fs.read(dir .. "/flash.bin")
  test.eq(flash:sub(0x10001, 0x11000), string.rep("\255", 0x1000), "first sector erased")
  test.eq(flash:sub(0x11001, 0x10000 + 70000) == data:sub(0x1001), true, "the rest kept")
  -- bad input: usage errors, nothing touched
  rc, out = mpctl("esp erase --port " .. url .. " 0x10001 0x1000")
  test.eq(rc, 2, out)
  test.contains(out, "whole 4 KiB sectors")
  rc, out = mpctl("esp write --port " .. url .. " 0x1000 " .. dir .. "/missing.bin")
  test.eq(rc, 2, out)
  rc, out = mpctl("esp frobnicate --port " .. url)
  test.eq(rc, 2, out)
  test.contains(out, "id|erase|read|write")
  fs.remove(dir, { recursive = true })
end)
