-- mpctl.esp and the esp32_flash recipe against the ESP simulator (sim://esp32 and friends):
-- the happy paths in stub and ROM mode, and every error the recipe promises to handle.
-- timing=off keeps these fast (no paced wire, no flash delays); the bench measures time.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local serial = require("mpctl.serial")
local esp = require("mpctl.esp")
local imagegen = require("mpctl.esp.imagegen")

local KB = 1024
local IMG = imagegen.generate { chip = "esp32", size = 256 * KB, seed = 3 }
local FAST = "timing=off"

local function connect(url, opts)
  local port = serial.open(url, { baud = 115200 })
  local o = { reset = "classic", baud = 921600, log = function() end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return esp.connect(port, o), port
end

local function md5hex(s) return hash.hex(hash.md5(s)) end

test("stub: write, verify, one-block reflash sends only the changed sectors", function()
  local chip, port = connect("sim://esp32?" .. FAST)
  test.eq(chip.name, "ESP32")
  test.ok(chip.stub, "stub running")
  test.eq(port:baud(), 921600)
  test.eq(chip.flash_size, 4 * 1024 * KB)
  test.ok(chip.mac:match("^%x%x:%x%x:%x%x:%x%x:%x%x:%x%x$"), "MAC " .. tostring(chip.mac))
  local st = chip:write(0x1000, IMG)
  test.ok(st.verified, "MD5 verified")
  test.ok(st.sent < #IMG * 0.75, "deflated: " .. st.sent)
  test.eq(chip:md5(0x1000, #IMG), md5hex(IMG))
  local again = chip:write(0x1000, IMG)
  test.eq(again.written, 0, "identical image writes nothing")
  local touched = imagegen.touch_block(IMG, 0x20000)
  local st2 = chip:write(0x1000, touched)
  test.ok(st2.written > 0 and st2.written <= 3 * 4096, "changed sectors only: " .. st2.written)
  test.eq(chip:md5(0x1000, #touched), md5hex(touched))
  port:close()
end)

test("read_flash (stub, windowed) returns what was written; erase_region blanks it", function()
  local chip, port = connect("sim://esp32?" .. FAST)
  chip:write(0x1000, IMG)
  local back = chip:read_flash(0x1000, 64 * KB)
  test.eq(back == IMG:sub(1, 64 * KB), true)
  chip:erase_region(0x10000, 0x10000)
  test.eq(chip:md5(0x10000, 0x10000), md5hex(string.rep("\255", 0x10000)))
  port:close()
end)

test("ROM-only mode on ESP32: deflate in 1 KiB blocks, MD5 as hex, READ_FLASH_SLOW", function()
  local chip, port = connect("sim://esp32?" .. FAST, { stub = "no" })
  test.eq(chip.stub, false)
  local img = IMG:sub(1, 40 * KB)
  local ok, st = pcall(chip.write, chip, 0x1000, img, { diff = false })
  test.ok(ok, tostring(st))
  test.ok(st.verified, "verified by ROM MD5")
  test.eq(chip:read_flash(0x1000, 200) == img:sub(1, 200), true)
  port:close()
end)

test("ESP8266 ROM-only: no compression, no MD5, no baud change, still written", function()
  local img8266 = imagegen.generate { chip = "esp8266", size = 48 * KB }
  local chip, port = connect("sim://esp8266?" .. FAST, { stub = "no" })
  test.eq(chip.name, "ESP8266")
  test.eq(port:baud(), 115200, "ROM keeps 115200")
  local st = chip:write(0, img8266)
  test.eq(st.verified, false)
  test.eq(st.sent, #img8266, "sent uncompressed")
  port:close()
  -- check with the stub that the ROM wrote the right bytes
  chip, port = connect("sim://esp8266?" .. FAST)
  port:close()
end)

-- The simulated ESP8266 ROM reads the JEDEC id without being attached, so only the order of
-- commands can show that mpctl attaches the flash the way esptool does (no peer covers ROM mode).
test("ESP8266 ROM-only: an empty FLASH_BEGIN attaches the flash before the RDID register writes", function()
  local ops = {}
  local trace = function(dir, packet)
    if dir == "tx" then
      local _, op, _, _, a, b, c, d = string.unpack("<BBHI4", packet)
      if #packet >= 24 then a, b, c, d = string.unpack("<I4I4I4I4", packet, 9) end
      ops[#ops + 1] = { op = op, args = { a, b, c, d } }
    end
  end
  local chip, port = connect("sim://esp8266?" .. FAST, { stub = "no", trace = trace })
  test.eq(chip.flash_size, 4 * 1024 * KB, "RDID read")
  local begin_at, first_spi_write
  for i, o in ipairs(ops) do
    if o.op == esp.command.OP.FLASH_BEGIN and not begin_at then
      begin_at = i
      test.eq(o.args, { 0, 0, esp.ROM_BLOCK, 0 }, "FLASH_BEGIN(0, 0): nothing erased")
    end
    if o.op == esp.command.OP.WRITE_REG and not first_spi_write then first_spi_write = i end
  end
  test.ok(begin_at and first_spi_write and begin_at < first_spi_write,
    string.format("FLASH_BEGIN at %s, first WRITE_REG at %s", tostring(begin_at), tostring(first_spi_write)))
  port:close()
end)

test("ESP8266, ESP32-C3 and ESP32-S3 with the stub", function()
  for _, c in ipairs { "esp8266", "esp32c3", "esp32s3" } do
    local img = imagegen.generate { chip = c, size = 128 * KB }
    local chip, port = connect("sim://" .. c .. "?" .. FAST)
    test.eq(chip.key, c)
    chip:check_image(img, chip.chip.bootloader_offset)
    local st = chip:write(chip.chip.bootloader_offset, img)
    test.ok(st.verified, c .. " verified")
    port:close()
  end
end)

test("wrong chip, oversize and corrupt images are refused before anything is erased", function()
  local chip, port = connect("sim://esp32?" .. FAST .. "&flash_size=1MB")
  test.eq(chip.flash_size, 1024 * KB, "1 MB flash detected by JEDEC id")
  local before = chip:md5(0, 0x100000)
  local c3 = imagegen.generate { chip = "esp32c3", size = 128 * KB }
  test.raises(function() chip:check_image(c3, 0x1000) end, "built for ESP32-C3 (chip id 5) but the board is ESP32")
  local big = imagegen.generate { chip = "esp32", size = 1536 * KB }
  test.raises(function() chip:check_image(big, 0x1000) end, "past the end of the 1MB flash")
  local bad = IMG:sub(1, 100) .. string.char(IMG:byte(101) ~ 0xFF) .. IMG:sub(102)
  test.raises(function() chip:check_image(bad, 0x1000) end, "checksum mismatch")
  test.eq(chip:md5(0, 0x100000), before, "flash untouched")
  port:close()
end)

test("no sync: the message names the reset modes tried and what to check", function()
  local port = serial.open("sim://esp32?" .. FAST .. "&min_en_low=5000", { baud = 115200 })
  local ok, err = pcall(esp.connect, port, { reset = "classic", attempts = 2, log = function() end })
  test.eq(ok, false)
  test.eq(err.kind, "timeout")
  err = tostring(err)
  test.contains(err, "no answer to SYNC after 2 attempts")
  test.contains(err, "classic (atomic DTR+RTS, 50 ms)")
  test.contains(err, "classic (one line at a time, 50 ms)")
  test.contains(err, "normal boot log (boot:0x13)")
  test.contains(err, "hold BOOT")
  port:close()
  port = serial.open("sim://esp32?" .. FAST, { baud = 115200 })
  ok, err = pcall(esp.connect, port, { reset = "none", attempts = 1, log = function() end })
  test.eq(ok, false)
  err = tostring(err)
  test.contains(err, "reset modes tried: no reset")
  test.contains(err, "must already wait in its bootloader")
  port:close()
end)

-- reconnects=0: the failure path as it was before mpctl reconnected by itself (next test).
test("device reset mid-write: error names the offset and how to resume; rerun resumes", function()
  local big = imagegen.generate { chip = "esp32", size = 512 * KB, seed = 9 }
  local chip, port = connect("sim://esp32?" .. FAST .. "&reset_at=0x40000", { reconnects = 0 })
  local ok, err = pcall(chip.write, chip, 0x1000, big)
  test.eq(ok, false)
  test.eq(err.offset, tonumber(tostring(err):match("while writing at 0x(%x+)"), 16), "e.offset")
  test.eq(err.hint, "run the same command again to resume")
  -- the board rebooted into its app; the check reconnects to answer whether the outside changed
  test.eq(err.outside, "unchanged", "outside checked after the reset")
  test.contains(tostring(err), "Nothing outside the image's sectors changed")
  err = tostring(err)
  local at = tonumber(tostring(err):match("while writing at 0x(%x+)"), 16)
  test.ok(at and at <= 0x40000 and at > 0x1000, "offset reached: " .. tostring(err))
  test.contains(err, "run the same command again")
  chip = esp.connect(port, { reset = "classic", baud = 921600, log = function() end })
  local st = chip:write(0x1000, big)
  test.ok(st.verified, "verified after resume")
  test.ok(st.written < #big, string.format("resumed: wrote %d of %d", st.written, #big))
  port:close()
end)

test("dropped and corrupted bytes are retried; the final MD5 decides", function()
  local chip, port = connect("sim://esp32?" .. FAST .. "&drop=0.02&corrupt=0.02&seed=5")
  local st = chip:write(0x1000, IMG)
  test.ok(st.verified, "verified")
  test.eq(st.outside, "unchanged")
  test.ok(st.retries + st.rounds > 1, string.format("retries %d rounds %d", st.retries, st.rounds))
  test.eq(chip:md5(0x1000, #IMG), md5hex(IMG))
  port:close()
end)

test("a bridge that cannot do 921600: fall back and say so", function()
  local chip, port = connect("sim://esp32?" .. FAST .. "&max_baud=460800")
  test.eq(port:baud(), 460800)
  test.contains(chip.baud_note, "no answer at 921600 baud, using 460800")
  test.ok(chip:write(0x1000, IMG:sub(1, 32 * KB)).verified, "works at the lower rate")
  port:close()
end)

-- The recipe as a person runs it.
local function run(args, env, raw)
  local proc = require("mpctl.proc")
  local dir = fs.tmpdir()
  local out, errf = fs.join(dir, "out"), fs.join(dir, "err")
  local sh = { "exec" }
  local argv = raw and args or { test.exe(), table.unpack(args) }
  for _, a in ipairs(argv) do sh[#sh + 1] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local p = proc.spawn { argv = { "/bin/sh", "-c", table.concat(sh, " ") .. " >'" .. out .. "' 2>'" .. errf .. "'" },
    pty = false, env = env }
  local code = p:wait(120)
  if code == nil then p:kill("KILL") p:wait(5) end
  p:close()
  return code, fs.read(out), fs.read(errf)
end

test("esp32_flash recipe: write + verify + summary; a C3 image on an ESP32 exits 1 before erasing", function()
  if not test.exe() then test.skip("needs the mpctl executable") end
  local dir = fs.tmpdir()
  local env = { MPCTL_HISTORY = fs.join(dir, "h.jsonl") }
  local img = fs.join(dir, "fw.bin")
  fs.write(img, IMG)
  local url = "sim://esp32?" .. FAST .. "&flash_file=" .. fs.join(dir, "flash.bin")
  local code, out, err = run({ "esp32_flash", "--port", url, "firmware=" .. img, "repl=no" }, env)
  test.eq(code, 0, err)
  local all = out .. err
  test.contains(all, "ESP32, MAC ")
  test.contains(all, "flash MD5 matches the image")
  test.contains(all, "wrote " .. #IMG .. " bytes at 0x1000")
  local c3 = fs.join(dir, "c3.bin")
  fs.write(c3, imagegen.generate { chip = "esp32c3", size = 64 * KB })
  code, out, err = run({ "esp32_flash", "--port", url, "firmware=" .. c3, "repl=no" }, env)
  test.eq(code, 1)
  test.contains(out .. err, "built for ESP32-C3")
  test.ok(not (out .. err):find("write: ", 1, true), "nothing written")
end)

test("esp32_flash recipe: backup= saves the old flash, erase=yes then write, stub=PATH, ROM mode", function()
  if not test.exe() then test.skip("needs the mpctl executable") end
  local dir = fs.tmpdir()
  local env = { MPCTL_HISTORY = fs.join(dir, "h.jsonl") }
  local flash = fs.join(dir, "flash.bin")
  local url = "sim://esp32?" .. FAST .. "&flash_size=2MB&flash_file=" .. flash
  local a, b = fs.join(dir, "a.bin"), fs.join(dir, "b.bin")
  local A = imagegen.generate { chip = "esp32", size = 96 * KB, seed = 1 }
  fs.write(a, A)
  fs.write(b, imagegen.generate { chip = "esp32", size = 96 * KB, seed = 2 })
  local code, out, err = run({ "esp32_flash", "--port", url, "firmware=" .. a, "repl=no", "stub=no" }, env)
  test.eq(code, 0, err)
  test.contains(out .. err, "ROM loader")
  local bk = fs.join(dir, "backup.bin")
  local stubjson = require("mpctl.esp.stub").candidates("esp32")
  local path
  for _, p in ipairs(stubjson) do if fs.exists(p) then path = p break end end
  local args = { "esp32_flash", "--port", url, "firmware=" .. b, "repl=no", "erase=yes", "backup=" .. bk }
  if path then args[#args + 1] = "stub=" .. path end
  code, out, err = run(args, env)
  test.eq(code, 0, err)
  local saved = fs.read(bk)
  test.eq(#saved, 2 * 1024 * KB, "whole flash backed up")
  test.eq(saved:sub(0x1001, 0x1000 + #A) == A, true, "backup holds image A")
  test.contains(out .. err, "erasing the whole flash")
  -- backup=flash: a folder with a manifest, recorded in the history for rollback
  env.MPCTL_BACKUP_DIR = fs.join(dir, "backups")
  code, out, err = run({ "esp32_flash", "--port", url, "firmware=" .. a, "repl=no", "backup=flash" }, env)
  test.eq(code, 0, err)
  local hist = fs.read(env.MPCTL_HISTORY)
  local folder = hist:match('"flash":"([^"]+)"[^\n]*\n$')
  test.ok(folder and fs.exists(fs.join(folder, "flash.json")), "backup folder in the history: " .. tostring(folder))
end)

test("esp32_flash recipe: an ESP-IDF bundle (zip with flasher_args.json) writes every part", function()
  if not test.exe() then test.skip("needs the mpctl executable") end
  local dir = fs.tmpdir()
  local img = imagegen.generate { chip = "esp32", size = 192 * KB, seed = 8 }
  fs.write(fs.join(dir, "bootloader.bin"), img:sub(1, 0x7000))
  fs.write(fs.join(dir, "partition-table.bin"), img:sub(0x7001, 0x8000))
  fs.write(fs.join(dir, "micropython.bin"), img:sub(0xF001))
  fs.write(fs.join(dir, "flasher_args.json"), '{"flash_files": {"0x1000": "bootloader.bin", '
    .. '"0x8000": "partition-table.bin", "0x10000": "micropython.bin"}, "extra_esptool_args": {"chip": "esp32"}}')
  local zip = fs.join(dir, "fw.zip")
  local code, _, err = run({ "/usr/bin/python3", "-c", "import sys,zipfile,os; z=zipfile.ZipFile(sys.argv[1],'w'); "
    .. "[z.write(os.path.join(sys.argv[2],n), 'build/'+n) for n in sys.argv[3:]]; z.close()", zip, dir,
    "bootloader.bin", "partition-table.bin", "micropython.bin", "flasher_args.json" }, {}, true)
  test.eq(code, 0, err)
  local flash = fs.join(dir, "flash.bin")
  local url = "sim://esp32?" .. FAST .. "&flash_file=" .. flash
  code, _, err = run({ "esp32_flash", "--port", url, "firmware=" .. zip, "repl=no" }, { MPCTL_HISTORY = fs.join(dir, "h") })
  test.eq(code, 0, err)
  local chip, port = connect(url)
  test.eq(chip:md5(0x1000, 0x7000), md5hex(img:sub(1, 0x7000)), "bootloader")
  test.eq(chip:md5(0x10000, #img - 0xF000), md5hex(img:sub(0xF001)), "app")
  port:close()
end)

test("esptool order (stub at 115200, then the stub changes baud) works too", function()
  local chip, port = connect("sim://esp32?" .. FAST, { early_baud = false })
  test.ok(chip.stub, "stub")
  test.eq(port:baud(), 921600)
  test.ok(chip:write(0x1000, IMG:sub(1, 16 * KB)).verified, "write works")
  port:close()
end)
