-- Image header checks (done before anything is erased) and the synthetic image generator.
local test = require("mpctl.test")
local image = require("mpctl.esp.image")
local chips = require("mpctl.esp.chips")
local imagegen = require("mpctl.esp.imagegen")
local zlib = require("mpctl.zlib")

local ESP32 = chips.get("esp32")
local MB = 1024 * 1024
local img = imagegen.generate { chip = "esp32", size = 1536 * 1024 }

test("generated ESP32 image parses: bootloader + app at 0x10000, checksums ok", function()
  local info = image.check(img, ESP32, 0x1000, 4 * MB)
  test.eq(info.chip_id, 0)
  test.eq(#info.segments, 3)
  test.ok(info.checksum_ok, "bootloader checksum")
  test.ok(info.app and info.app.checksum_ok, "app checksum")
  test.eq(#info.app.segments, 4)
  test.eq(info.flash_mode, "dio")
  test.eq(info.header_flash_size, 4 * MB)
  test.ok(#img >= 1500000 and #img <= 1536 * 1024, "about 1.5 MB: " .. #img)
end)

test("generated image compresses like MicroPython (~0.65 with zlib -9)", function()
  local r = #zlib.compress(img, 9) / #img
  test.ok(r > 0.6 and r < 0.7, string.format("ratio %.3f", r))
end)

test("generator is deterministic", function()
  local a = imagegen.generate { chip = "esp32c3", size = 300 * 1024, seed = 5 }
  local b = imagegen.generate { chip = "esp32c3", size = 300 * 1024, seed = 5 }
  test.eq(a == b, true)
  test.eq(image.chip_of(a).key, "esp32c3")
end)

test("image for another chip is refused with both names", function()
  local c3 = imagegen.generate { chip = "esp32c3", size = 200 * 1024 }
  test.raises(function() image.check(c3, ESP32, 0x1000, 4 * MB) end, "built for ESP32-C3 (chip id 5) but the board is ESP32")
end)

test("image larger than the flash is refused", function()
  test.raises(function() image.check(img, ESP32, 0x1000, 1 * MB) end, "past the end of the 1MB flash")
end)

test("bad magic, truncation and corrupt segments are refused", function()
  test.raises(function() image.check("\0" .. img:sub(2), ESP32, 0x1000, 4 * MB) end, "bad magic 0x00")
  test.raises(function() image.check(img:sub(1, 100), ESP32, 0x1000, 4 * MB) end, "past the end of the file")
  test.raises(function() image.check("", ESP32, 0x1000, 4 * MB) end, "too short")
  local bad = img:sub(1, 0x40) .. string.char(img:byte(0x41) ~ 1) .. img:sub(0x42)
  test.raises(function() image.check(bad, ESP32, 0x1000, 4 * MB) end, "checksum mismatch")
  local app_at = 0x10000 - 0x1000
  local badapp = img:sub(1, app_at + 0x200) .. string.char(img:byte(app_at + 0x201) ~ 0x55) .. img:sub(app_at + 0x202)
  test.raises(function() image.check(badapp, ESP32, 0x1000, 4 * MB) end, "app image at 0x10000 has a bad checksum")
  local zero_seg = img:sub(1, 1) .. "\0" .. img:sub(3)
  test.raises(function() image.parse(zero_seg, ESP32) end, "segment count 0")
end)

test("touch_block changes bytes but keeps the image valid", function()
  local t = imagegen.touch_block(img, 0x80000)
  test.ne(t, img)
  test.eq(#t, #img)
  local info = image.check(t, ESP32, 0x1000, 4 * MB)
  test.ok(info.app.checksum_ok, "app checksum recomputed")
  local diff = 0
  for i = 1, #img, 4096 do if img:sub(i, i + 4095) ~= t:sub(i, i + 4095) then diff = diff + 1 end end
  test.ok(diff >= 1 and diff <= 3, "changed sectors: " .. diff)
end)

test("warnings: header flash size bigger than the chip, unusual offset", function()
  local _, w = image.check(img, ESP32, 0x0, 2 * MB)
  local all = table.concat(w, "\n")
  test.contains(all, "header says 4MB flash but the chip has 2MB")
  test.contains(all, "expects a full image at 0x1000")
end)

test("ESP8266 images have no extended header", function()
  local e = imagegen.generate { chip = "esp8266", size = 600 * 1024 }
  local info = image.check(e, chips.get("esp8266"), 0, 4 * MB)
  test.eq(info.chip_id, nil)
  test.ok(info.checksum_ok, "checksum")
end)

test("JEDEC capacity byte to flash size", function()
  test.eq(chips.flash_size_from_id(0x16405E), nil == nil and 0x400000)
  test.eq(chips.flash_size_from_id(0x1840EF), 16 * MB)
  test.eq(chips.flash_size_from_id(0x3640C8), 4 * MB)
  test.eq(chips.flash_size_from_id(0xFFFFFF), nil)
end)

test("flash mode, size and frequency codes in the header are checked", function()
  local function with(byte_index, value)
    return img:sub(1, byte_index - 1) .. string.char(value) .. img:sub(byte_index + 1)
  end
  test.raises(function() image.check(with(3, 7), ESP32, 0x1000, 4 * MB) end, "unknown flash mode byte 0x07")
  test.raises(function() image.check(with(4, 0x23), ESP32, 0x1000, 4 * MB) end, "unknown flash frequency code 0x3")
  test.raises(function() image.check(with(4, 0xF0), ESP32, 0x1000, 4 * MB) end, "unknown flash size code 0xF")
  local info = image.check(with(4, 0x3F), ESP32, 0x1000, 16 * MB)
  test.eq({ info.freq, info.header_flash_size }, { "80m", 8 * MB })
end)
