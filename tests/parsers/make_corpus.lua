-- Writes the seed corpus of the parser fuzz driver into tests/parsers/corpus/ (committed; run again
-- only to change the seeds): `mpctl --allow-exec tests/parsers/make_corpus.lua`.
-- Small valid inputs of each format, so mutations start from something the parser accepts.
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local command = require("mpctl.esp.command")
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local dir = fs.join(here, "corpus")

local function put(target, name, data)
  fs.mkdir(fs.join(dir, target), { parents = true })
  fs.write(fs.join(dir, target, name), data)
end

-- ESP image (esptool docs firmware-image-format.rst): header, ESP32 extended header, segments,
-- padding to 16 with the XOR checksum (seed 0xEF) last.
local function image(chip_id, segments)
  local t = { string.pack("<BBBBI4", 0xE9, #segments, 2, 0x20, 0x40080000) }
  if chip_id then t[#t + 1] = string.pack("<BBBBI2BI2I2", 0xEE, 0, 0, 0, chip_id, 0, 0, 0xFFFF) .. string.rep("\0", 4) .. "\0" end
  local sum = command.CHECKSUM_SEED
  for _, s in ipairs(segments) do
    t[#t + 1] = string.pack("<I4I4", s[1], #s[2]) .. s[2]
    sum = command.checksum(s[2], sum)
  end
  local body = table.concat(t)
  return body .. string.rep("\0", 15 - #body % 16) .. string.char(sum)
end
put("esp_image", "esp32.bin", image(0, { { 0x3FFF0030, string.rep("\1\2\3\4", 16) }, { 0x40078000, ("mpctl"):rep(20) } }))
put("esp_image", "esp32s3.bin", image(9, { { 0x40374000, string.rep("\0\255", 40) } }))
put("esp_image", "esp8266.bin", image(nil, { { 0x40100000, string.rep("\170", 48) }, { 0x3FFE8000, "abcd" } }))

put("history", "records.jsonl", table.concat({
  ui.json_encode({ time = "2026-11-30T10:00:00Z", board = "ESP32_GENERIC", chip = "esp32", device = "24:0a:c4:00:00:01",
    port = "/dev/ttyUSB0", firmware = { version = "1.24.1", sha256 = string.rep("ab", 32), file = "a.bin" },
    backup = { flash = "/tmp/b" }, result = "ok", duration = 30.2, mpctl = "0.1.0" }),
  ui.json_encode({ time = "2026-11-30T11:00:00Z", board = "RPI_PICO", result = "failed", error = "timeout",
    duration = 3, kind = "rollback", rollback_of = "2026-11-30T10:00:00Z", source = "firmware cache" }),
  '{"board": "ESP32_GEN',
}, "\n"))

put("firmware_index", "board.html", [[
<html><body><h1>ESP32_GENERIC</h1><h2>Firmware</h2><h3>Releases</h3>
<strong><a href="/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.bin">v1.24.1 (2024-11-29) .bin</a></strong> /
<a href='https://micropython.org/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.app-bin'>[.app-bin]</a> /
<a href=/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.elf>[.elf]</a><br>
<h2>Firmware (Support for SPIRAM)</h2><h3>Preview builds</h3>
<a href="/resources/firmware/ESP32_GENERIC-SPIRAM-20250115-v1.25.0-preview.52.gabcdef0123.bin">v1.25.0</a>
<a href="resources/firmware/ESP32_GENERIC-D2WD-20241129-v1.24.1.bin?x=1&amp;y=2">D2WD</a>
</body></html>
]])
put("firmware_index", "download.html", [[
<html><body><a class="board-card" href="ESP32_GENERIC">ESP32_GENERIC</a>
<a href="/download/RPI_PICO/">RPI_PICO</a> <a href=PYBV11>PYBV11</a></body></html>
]])

put("bundle_args", "flasher_args.json", ui.json_encode({
  write_flash_args = { "--flash_mode", "dio", "--flash_size", "4MB" },
  flash_settings = { flash_mode = "dio", flash_size = "4MB", flash_freq = "40m" },
  flash_files = { ["0x1000"] = "bootloader/bootloader.bin", ["0x8000"] = "partition_table/partition-table.bin",
    ["0x10000"] = "micropython.bin" },
  extra_esptool_args = { after = "hard_reset", before = "default_reset", stub = true, chip = "esp32" },
}))
put("bundle_args", "flash_args", "--flash_mode dio --flash_freq 40m --flash_size 4MB\n" ..
  "0x1000 bootloader/bootloader.bin\n0x8000 partition_table/partition-table.bin\n0x10000 micropython.bin\n")
print("corpus written to " .. dir)
