--- Flash MicroPython onto an ESP32-family board or an ESP8266 and prove it runs.
-- @option firmware: FILE|demo; image file to write (default: the latest release for the board; demo = a generated test image)
-- @option version: VERSION|latest|preview = latest; release to download when firmware= is not given
-- @option erase: yes|no = no; erase the whole flash first (a fresh install)
-- @option backup: FILE|flash|files|all; keep what was there: FILE = the whole flash as one raw file; flash, files or all = a backup folder (files need MicroPython running)
-- @option verify: yes|no = yes; check by MD5 what was written
-- @option repl: yes|no = yes; reach the REPL after reset (no: stop after the verified write and reset)
-- @option reset: classic|usb-jtag|none; how to enter the bootloader (default: from the board file)
-- @option stub: FILE|no; a flasher stub JSON, or no for ROM-only mode
-- @option timeout: seconds = 10; how long to wait for the REPL after reset
--
--   mpctl esp32_flash --port /dev/ttyUSB0 firmware=ESP32_GENERIC-20250415-v1.25.0.bin
--   mpctl esp32_flash --port sim://esp32 firmware=demo
--   mpctl esp32_flash --port /dev/ttyACM0 --board ESP32_GENERIC_C3 reset=usb-jtag erase=yes

local esp = mpctl.esp
local fs, time = mpctl.fs, mpctl.time
local t0 = time.now()

local yes = mpctl.yes

-- 1. Which board, which image.
local board = mpctl.board(arg.board or "ESP32_GENERIC")
if board.family ~= "esp" then mpctl.usage_error(board.id .. " is not an ESP board (family " .. board.family .. ")") end
local parts, firmware -- what goes where: one image at the board's offset, or an ESP-IDF bundle's files
if arg.firmware == "demo" then
  local image = require("mpctl.esp.imagegen").generate { chip = board.chip }
  parts = { { offset = board.offset, data = image, name = "demo image" } }
  firmware = { file = "demo image (generated)", sha256 = mpctl.hash.hex(mpctl.hash.sha256(image)) }
else
  if arg.firmware then
    if not fs.exists(arg.firmware) then mpctl.usage_error("firmware file " .. arg.firmware .. " not found") end
    firmware = { file = arg.firmware, path = arg.firmware, sha256 = mpctl.hash.file(arg.firmware, "sha256") }
  else
    firmware = mpctl.firmware.get(board, arg.version or "latest")
  end
  parts = mpctl.firmware.parts(firmware.path, board)
  local built_for = parts[1] and parts[1].chip
  if built_for and esp.chips.get(built_for) ~= esp.chips.get(board.chip) then
    mpctl.fail(string.format("%s is built for %s, but board %s is %s", firmware.file, built_for, board.id, board.chip))
  end
end

-- 2. Files first: they can only be read while MicroPython still runs, before the bootloader.
local port = mpctl.open_port(arg, { baud = 115200 })
local backup = require("mpctl.backup")
local kept = {}
if arg.backup == "files" or arg.backup == "all" then
  kept.dir = backup.dir(board.id)
  local m, why = backup.files_from_port(port, kept.dir, { timeout = tonumber(arg.timeout) or 5 })
  if not m then
    why = tostring(why):gsub("[^\32-\126]", "?")
    mpctl.fail("backup of the board's files: " .. (#why > 300 and why:sub(1, 300) .. "..." or why))
  end
  kept.files = kept.dir
  mpctl.log("backup: %d files saved to %s", #m.files, kept.dir)
end

-- 3. Into the bootloader: reset, sync, chip, stub, fast baud, flash size.
local opts = esp.board_opts(board, arg.port)
opts.reset = arg.reset or opts.reset
opts.baud = tonumber(arg.baud) or opts.baud
opts.stub = arg.stub
local chip = esp.connect(port, opts)
mpctl.log("%s, MAC %s, %s flash, %s at %d baud (reset: %s)", chip.name, chip.mac or "?",
  esp.chips.size_name(chip.flash_size), chip.stub and "stub" or "ROM loader", port:baud(), chip.reset_used or "?")
if chip.baud_note then mpctl.warn("%s", chip.baud_note) end

-- Whatever happens from here on goes into the history (mpctl history, rollback).
local record = { board = board.id, chip = chip.name, device = chip.mac, port = arg.port,
  firmware = { file = firmware.file, sha256 = firmware.sha256, version = firmware.version, path = firmware.path },
  result = "ok" }
local _ <close> = setmetatable({}, { __close = function(_, err)
  if err then
    record.result, record.error = "failed", tostring(type(err) == "table" and err.msg or err)
    record.duration = time.now() - t0
    pcall(mpctl.history.record, record)
  end
end })

-- 4. Refuse a wrong image before anything is erased.
chip:check_parts(parts)

-- 5. Keep what was on flash.
if arg.backup and arg.backup ~= "files" then
  local what = (arg.backup == "all" or arg.backup == "yes") and "flash" or arg.backup
  local got = backup.take(what, { chip = chip, dir = kept.dir, tag = board.id })
  kept.flash = got.flash
  mpctl.log("backup: %s of flash saved to %s", esp.chips.size_name(chip.flash_size), got.flash)
end

-- 6. Erase (optional), write, verify.
local erased = yes(arg.erase, false)
if erased then
  mpctl.log("erasing the whole flash")
  chip:erase_all()
end
local st = chip:write_parts(parts, { erased = erased, verify = yes(arg.verify, true), label = "write" })
mpctl.check(not yes(arg.verify, true) or st.verified or not chip:can_md5(), "flash MD5 matches the image")

-- 7. Boot it.
local port_baud = port:baud()
chip:hard_reset(opts.reset == "usb-jtag")
port:set_baud(115200)
local secs = time.now() - t0
if st.written == 0 then
  mpctl.log("flash already held all %d bytes at 0x%X: nothing written (%d bytes on the wire), %.1f s in all",
    st.raw, parts[1].offset, st.wire, secs)
else
  mpctl.log("wrote %d bytes at 0x%X (%d sent, %d on the wire, %s), %.1f s in all, %.1f s writing: %.0f kbit/s effective",
    st.raw, parts[1].offset, st.sent, st.wire, st.written == st.raw and "every sector written" or
      string.format("%d bytes written, the rest already on flash", st.written),
    secs, st.seconds, st.raw * 8 / st.seconds / 1000)
end
mpctl.ui.event { event = "esp_flash", board = board.id, chip = chip.name, mac = chip.mac, bytes = st.raw,
  sent = st.sent, wire = st.wire, wire_total = chip.conn.tx, written = st.written, seconds = secs,
  write_seconds = st.seconds, connect_seconds = chip.t_connected - chip.t_start, baud = port_baud,
  stub = chip.stub_path ~= nil }

record.backup = (kept.flash or kept.files) and { flash = kept.flash, files = kept.files } or nil

-- 8. Prove it runs: the same check as verify_repl, on this already open port.
if yes(arg["repl"], true) then
  mpctl.repl.verify(port, { name = arg.port, timeout = tonumber(arg.timeout) })
end
record.duration = time.now() - t0
mpctl.history.record(record)
