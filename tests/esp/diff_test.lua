-- Block diffing (per-region/per-sector MD5 against the image), ESP8266 erase-size quirk, stub JSON.
local test = require("mpctl.test")
local esp = require("mpctl.esp")
local hash = require("mpctl.hash")
local stub = require("mpctl.esp.stub")

-- A chip whose "flash" is a Lua string; counts MD5 requests like a loader would answer them.
local function fake_chip(flash)
  local c = setmetatable({ flash = flash, md5_calls = 0, stub = true, chip = esp.chips.get("esp32") }, esp.Chip)
  function c:md5(addr, size)
    self.md5_calls = self.md5_calls + 1
    return hash.hex(hash.md5(self.flash:sub(addr + 1, addr + size)))
  end
  return c
end

local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end

local data = {}
for i = 1, 1536 * 1024 // 16 do data[i] = string.pack("<I4I4I4I4", i, i * 7, i * 13, i ~ 0x5A5A) end
data = table.concat(data)

test("identical flash: nothing to write, one MD5 per 64 KiB region", function()
  local c = fake_chip(string.rep("\255", 0x1000) .. data)
  local dirty = c:diff(0x1000, data)
  test.eq(count(dirty), 0)
  test.eq(c.md5_calls, 24)
end)

test("one changed sector is found exactly", function()
  local changed = data:sub(1, 0x53000) .. "XXXX" .. data:sub(0x53005)
  local c = fake_chip(string.rep("\255", 0x1000) .. data)
  local dirty = c:diff(0x1000, changed)
  test.eq(count(dirty), 1)
  test.ok(dirty[0x53000 // 0x1000 + 1], "sector index")
  test.eq(c.md5_calls, 24 + 16, "regions, then the one region's sectors")
end)

test("mostly different flash: whole regions, no per-sector round trips", function()
  local c = fake_chip(string.rep("\0", 0x1000 + #data))
  local dirty = c:diff(0x1000, data)
  test.eq(count(dirty), #data // 0x1000)
  test.eq(c.md5_calls, 24)
end)

test("partial last region and unaligned length", function()
  local d = data:sub(1, 0x12345)
  local c = fake_chip(data:sub(1, 0x12000) .. string.rep("\0", 0x1000))
  local dirty = c:diff(0, d)
  test.eq(count(dirty), 1)
  test.ok(dirty[0x13], "last partial sector")
end)

test("ESP8266 ROM erase-size quirk matches esptool's formula", function()
  test.eq(esp.esp8266_erase_size(0, 0x10000), 0x8000)
  test.eq(esp.esp8266_erase_size(0x1000, 0x3000), 0x2000)
  test.eq(esp.esp8266_erase_size(0, 0x100000), 0xF0000)
  test.eq(esp.esp8266_erase_size(0x3000, 0x100000), (256 - 13) * 0x1000)
end)

test("base64 decoding of stub text", function()
  test.eq(stub.base64_decode("TWFu"), "Man")
  test.eq(stub.base64_decode("TWE="), "Ma")
  test.eq(stub.base64_decode("TQ=="), "M")
  test.eq(stub.base64_decode("AAEC\n/w=="), "\0\1\2\255")
end)

test("stub JSON from esptool-js loads when installed, with entry and segments", function()
  local s, err = stub.load("esp32")
  if not s then test.skip(err) end
  test.ok(s.entry > 0x40000000, "entry in IRAM")
  test.ok(#s.text > 4000, "text bytes " .. #s.text)
  test.ok(s.text_start and s.data_start, "load addresses")
  local missing = stub.load("esp32", "/nonexistent/stub.json")
  test.eq(missing, nil)
end)

test("missing stub: message says how to fix it", function()
  local s, err = stub.load("esp99")
  test.eq(s, nil)
  test.contains(err, "stub=PATH")
  test.contains(err, "stub=no")
end)

test("an adapter that refuses the rate: stay at the old baud, say so, send nothing to the chip", function()
  local fake = require("fakeport")
  local port = fake.new("fake")
  port.refuse = 460800
  local logged = {}
  local c = setmetatable({ port = port, conn = esp.command.new(port), stub = true, chip = esp.chips.get("esp32"),
    logf = function(_, fmt, ...) logged[#logged + 1] = string.format(fmt, ...) end }, esp.Chip)
  test.eq(c:change_baud(921600), false)
  test.eq(port:baud(), 115200)
  test.eq(#port.written, 0, "no CHANGE_BAUDRATE sent")
  test.contains(c.baud_note, "adapter refused 921600, stayed at 115200")
  test.contains(table.concat(logged, "\n"), "adapter refused 921600 baud")
end)

test("ESP32 ROM baud value follows esptool's crystal correction, and is left alone without data", function()
  local c = setmetatable({ stub = false, chip = esp.chips.get("esp32") }, esp.Chip)
  local regs = { [0x3FF5F06C] = 0, [0x3FF5A010] = 0 }
  function c:read_reg(addr) return regs[addr] or 0 end
  test.eq(c:rom_baud_value(921600), 921600, "registers reading 0: unchanged")
  -- ROM-calculated 41.6 MHz: cali * 15625 * ck8m / 40 with ck8m = 0x80 -> cali = 832
  regs[0x3FF5F06C] = 832 << 7
  regs[0x3FF5A010] = 0x80
  test.eq(c:rom_baud_value(921600), math.floor(921600 * (832 * 15625 * 128 / 40) / 40e6))
  c.stub = true
  test.eq(c:rom_baud_value(921600), 921600, "the stub needs no correction")
end)
