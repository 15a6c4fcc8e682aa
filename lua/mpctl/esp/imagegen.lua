-- Synthetic, firmware-like ESP images for tests, the benchmark and the offline demo.
-- No real MicroPython build is available offline, so this lays out what `ports/esp32/makeimg.py`
-- produces: a second-stage bootloader image (flashed at the chip's bootloader offset), 0xFF
-- padding, a partition table at 0x8000 and the app image at 0x10000, each image with a valid
-- header, segments, XOR checksum and (ESP32+) appended SHA-256. Segment contents imitate code:
-- a skewed vocabulary of instruction words, literal pools and strings, tuned so that zlib -9
-- gets to ~0.65 of the size, like MicroPython ESP32 builds (anchors.md §2.2: 0.64-0.67).
local command = require("mpctl.esp.command")
local chips = require("mpctl.esp.chips")

local M = {}

-- mpctl.random: xorshift32, deterministic across Lua builds (math.random's algorithm is not a
-- contract); a generator is called as r() for the next 32-bit value.
local rng = require("mpctl.random").new
M.rng = rng

local WORDS = { "machine", "network", "socket", "esp32", "bluetooth", "uasyncio", "print", "import",
  "Traceback", "object", "function", "generator", "NoneType", "KeyError", "ValueError", "buffer",
  "micropython", "flash", "partition", "littlefs", "readinto", "memoryview", "bytearray", "const",
  "__init__", "__name__", "hello", "timeout", "wlan", "connect", "status", "config", "freq" }

-- Code-like bytes: `n` bytes from generator `r`. `entropy` (0..1) is the share of random words.
local function code_bytes(r, n, entropy)
  local vocab = {}
  for i = 1, 512 do vocab[i] = r() end
  local out, len = {}, 0
  local thresh = math.floor(entropy * 1024)
  while len < n do
    local x = r()
    local kind = x & 1023
    local piece
    if kind < thresh then
      piece = string.pack("<I4", r())
    elseif kind < thresh + 40 then
      local w = {}
      for k = 1, 1 + (x >> 10) % 6 do w[k] = WORDS[1 + (r() % #WORDS)] end
      piece = table.concat(w, "_") .. "\0"
    else
      -- skewed choice: small indices far more frequent (x^2 distribution)
      local u = (x >> 12) % 512
      local idx = 1 + (u * u) // 512
      piece = string.pack("<I4", vocab[idx])
    end
    out[#out + 1] = piece
    len = len + #piece
  end
  return table.concat(out):sub(1, n)
end
M.code_bytes = code_bytes

-- One image: segments = { {addr=, len=}, ... }; returns the bytes.
local function build_image(chip, segs, r, entropy, hash)
  local mode, size_freq = 2, 0x20 -- dio, 4MB / 40m (what MicroPython ships for ESP32)
  if chip.key == "esp8266" then size_freq = 0x40 end
  local parts = { string.pack("<BBBBI4", 0xE9, #segs, mode, size_freq, segs[1].addr + 0x18) }
  if chip.key ~= "esp8266" then
    -- wp pin 0xEE (disabled), drive settings 0, chip id, min rev 0, min/max rev full, reserved, hash flag
    parts[#parts + 1] = string.pack("<BBBBI2BI2I2I4B", 0xEE, 0, 0, 0, chip.image_id, 0, 0, 0xFFFF, 0,
      hash and 1 or 0)
  end
  local sum = command.CHECKSUM_SEED
  for _, s in ipairs(segs) do
    local body = code_bytes(r, s.len, entropy)
    sum = command.checksum(body, sum)
    parts[#parts + 1] = string.pack("<I4I4", s.addr, #body) .. body
  end
  local img = table.concat(parts)
  img = img .. string.rep("\0", 15 - #img % 16) .. string.char(sum)
  if hash then img = img .. hash(img) end
  return img
end

-- Partition table entries as in MicroPython's partitions-4MiBplus.csv (anchors.md §4).
local function partition_table(app_size)
  local function entry(ptype, subtype, off, size, label)
    return string.pack("<I2BBI4I4c16I4", 0x50AA, ptype, subtype, off, size, label, 0)
  end
  local t = entry(1, 2, 0x9000, 0x6000, "nvs") .. entry(1, 1, 0xF000, 0x1000, "phy_init")
    .. entry(0, 0, 0x10000, math.max(app_size, 0x1F0000), "factory")
  local ok, hash = pcall(require, "mpctl.hash")
  if ok then t = t .. string.pack("<I2", 0xEBEB) .. string.rep("\255", 14) .. hash.md5(t) end
  return t .. string.rep("\255", 0xC00 - #t)
end

-- opts: chip ("esp32"), size (bytes, default 1.5 MB), seed, entropy (0..1, default 0.48)
-- Returns the full image (to be written at chip.bootloader_offset) and a description.
function M.generate(opts)
  opts = opts or {}
  local chip = chips.get(opts.chip or "esp32") or error("imagegen: unknown chip " .. tostring(opts.chip))
  local size = opts.size or 1536 * 1024
  local r = rng(opts.seed or 0x4D504354)
  local entropy = opts.entropy or 0.48
  local okh, hashmod = pcall(require, "mpctl.hash")
  local hash = chip.key ~= "esp8266" and okh and hashmod.sha256 or nil
  local base = chip.bootloader_offset
  local boot = build_image(chip, { { addr = 0x3FFF0030, len = 0x1500 }, { addr = 0x40078000, len = 0x3C00 },
    { addr = 0x40080400, len = 0x1200 } }, r, entropy, hash)
  local img = boot
  if chip.key ~= "esp8266" and size > 0x10000 - base then
    img = img .. string.rep("\255", 0x8000 - base - #img) .. partition_table(size)
    img = img .. string.rep("\255", 0x10000 - base - #img)
    local app_len = size - #img
    -- app: drom (rodata), dram, iram, irom (text) like an IDF app; irom takes the rest
    local fixed = 0x28000 + 0x4000 + 0x18000
    local irom = app_len - fixed - 4 * 8 - 24 - 16 - 32
    local app = build_image(chip, { { addr = 0x3F400020, len = 0x28000 }, { addr = 0x3FFBDB60, len = 0x4000 },
      { addr = 0x40080000, len = 0x18000 }, { addr = 0x400D0020, len = math.max(irom, 0x1000) } },
      r, entropy, hash)
    img = img .. app
  elseif #img < size then
    img = img .. code_bytes(r, size - #img, entropy)
  end
  return img, { chip = chip.key, offset = base, size = #img }
end

-- Recompute the checksum byte and SHA-256 of the image starting at file offset `at` (0-based)
-- after its segment bytes were changed.
function M.fix_checksums(img, chip, at)
  local image = require("mpctl.esp.image")
  local info = image.parse(img, chip, at + 1)
  local sum = command.CHECKSUM_SEED
  for _, s in ipairs(info.segments) do
    sum = command.checksum(img:sub(at + s.offset + 1, at + s.offset + s.len), sum)
  end
  local ck = at + info.length - (info.hash_appended and 32 or 0) -- 1-based index of the checksum byte
  img = img:sub(1, ck - 1) .. string.char(sum) .. img:sub(ck + 1)
  if info.hash_appended then
    local hash = require("mpctl.hash")
    img = img:sub(1, ck) .. hash.sha256(img:sub(at + 1, ck)) .. img:sub(ck + 33)
  end
  return img
end

-- Change 256 bytes at file offset `at` (inside the app text) and keep the image valid: the
-- "one-block reflash" case of tests and the bench.
function M.touch_block(img, at, opts)
  opts = opts or {}
  local chip = chips.get(opts.chip or "esp32")
  local r = rng(opts.seed or 7)
  local patch = code_bytes(r, 256, 1)
  img = img:sub(1, at) .. patch .. img:sub(at + #patch + 1)
  local app_at = 0x10000 - chip.bootloader_offset
  if chip.key ~= "esp8266" and at >= app_at then img = M.fix_checksums(img, chip, app_at) end
  return img
end

return M
