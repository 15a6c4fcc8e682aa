--- Flash MicroPython onto an ESP8266 (NodeMCU, Wemos D1 mini) and prove it runs: esp32_flash with board ESP8266_GENERIC.
-- @option firmware: FILE|demo; image to write (default: the board's release, see version; demo = a generated test image)
-- @option version: VERSION|latest|preview = latest; release to download when firmware is not given
-- @option erase: yes|no = no; erase the whole flash first (a fresh install)
-- @option backup: FILE|flash|files|all; keep what was there: FILE = the whole flash as one raw file; flash, files or all = a backup folder (files need MicroPython running)
-- @option verify: yes|no = yes; check what was written (MD5 of the flash; skipped where the loader cannot hash)
-- @option repl: yes|no = yes; reach the REPL after the reset and run print('hello')
-- @option reset: classic|usb-jtag|none; how to enter the bootloader (default: from the board file)
-- @option stub: FILE|no; flasher stub JSON, or no for ROM-only mode (default: found)
-- @option timeout: seconds = 10; how long to wait for the REPL after reset
-- @option test: yes|no = no; after the REPL check, run mpctl's starter post-flash test (LED, temperature, filesystem, memory)
--
--   mpctl esp8266_flash --port /dev/ttyUSB0 firmware=ESP8266_GENERIC-20250415-v1.25.0.bin
-- The steps are those of recipes/esp32_flash.lua; only the default board differs.

arg.board = arg.board or "ESP8266_GENERIC"
return require("esp32_flash")
