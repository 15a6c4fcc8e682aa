--- Flash MicroPython onto an ESP32-family board or an ESP8266 and prove it runs.
-- @option firmware: FILE|demo; image or ESP-IDF bundle to write (default: the board's release, see version; demo = a generated test image)
-- @option version: VERSION|latest|preview = latest; release to download when firmware is not given
-- @option erase: yes|no = no; erase the whole flash first (a fresh install)
-- @option backup: FILE|flash|files|all; keep what was there: FILE = the whole flash as one raw file; flash, files or all = a backup folder (files need MicroPython running)
-- @option verify: yes|no = yes; check what was written (MD5 of the flash)
-- @option repl: yes|no = yes; reach the REPL after the reset and run print('hello')
-- @option reset: classic|usb-jtag|none; how to enter the bootloader (default: from the board file)
-- @option stub: FILE|no; flasher stub JSON, or no for ROM-only mode (default: found)
-- @option timeout: seconds = 10; how long to wait for the REPL after reset
-- @option test: yes|no = no; after the REPL check, run mpctl's starter post-flash test (LED, temperature, filesystem, memory)
-- @family: esp
--
--   mpctl esp32_flash --port /dev/ttyUSB0 firmware=ESP32_GENERIC-20250415-v1.25.0.bin
--   mpctl esp32_flash --port sim://esp32 firmware=demo
--   mpctl esp32_flash --port /dev/ttyACM0 --board ESP32_GENERIC_C3 reset=usb-jtag --erase

local target, backup = mpctl.target, mpctl.backup

-- 1. Which board, which image.
local board = mpctl.board(arg.board or "ESP32_GENERIC")
if board.family ~= "esp" then mpctl.usage_error(board.id .. " is not an ESP board (family " .. board.family .. ")") end
local image = target.image(board, arg.firmware, arg.version)

-- 2. Files first: they can only be read while MicroPython still runs, before the bootloader.
local port <close> = mpctl.open_port(arg, { baud = 115200 })
local kept = backup.files_before(port, arg.backup, { tag = board.id, timeout = math.min(arg.timeout, 5) })

-- Whatever happens from here on goes into the history (mpctl history, rollback).
local record <close> = mpctl.attempt { board = board.id, port = arg.port, firmware = target.image_record(image) }

-- 3. Into the bootloader: reset, sync, chip, stub, fast baud, flash size.
local t <close> = target.connect(board, port, { reset = arg.reset, baud = arg.baud, stub = arg.stub })
record:target(t)

-- 4. Refuse a wrong image before anything is erased.
t:check_image(image.parts)

-- 5. Keep what was on flash.
record.backup = backup.flash_before(t, arg.backup, kept)

-- 6. Erase (optional), write, verify.
if arg.erase then
  mpctl.log("erasing the whole flash")
  t:erase_all()
end
local st = t:write(image.parts, { erased = arg.erase, verify = arg.verify })
mpctl.verified(st, "flash MD5 matches the image")

-- 7. Boot it.
t:reset_to_app()
target.report(t, image, st)

-- 8. Prove it runs: the same check as verify_repl, on this already open port.
if arg["repl"] then
  local info = mpctl.repl.verify(port, { name = arg.port, timeout = arg.timeout, test = arg.test, board = board })
  record.firmware.version = record.firmware.version or info.version
else
  mpctl.skip("REPL answers print('hello')", "repl=no")
end
