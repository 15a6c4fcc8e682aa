--- Flash MicroPython onto an ESP8266 (NodeMCU, Wemos D1 mini) and prove it runs: esp32_flash with board ESP8266_GENERIC.
-- @option firmware: image file to write (default: the latest release for the board; "demo" = a generated test image)
-- @option version: release to download when firmware= is not given (default latest)
-- @option erase: yes = erase the whole flash first (a fresh install)
-- @option backup: keep what was there: FILE = the whole flash as one raw file; flash, files or all = a backup folder (files need MicroPython running)
-- @option verify: no = skip the MD5 check of what was written (default yes)
-- @option repl: no = stop after the verified write and reset (default: reach the REPL)
-- @option reset: classic, usb-jtag or none (default: from the board file)
-- @option stub: path to a flasher stub JSON, or no for ROM-only mode
-- @option timeout: seconds to wait for the REPL after reset (default 10)
--
--   mpctl esp8266_flash --port /dev/ttyUSB0 firmware=ESP8266_GENERIC-20250415-v1.25.0.bin
-- The steps are those of recipes/esp32_flash.lua; only the default board differs.

arg.board = arg.board or "ESP8266_GENERIC"
return require("esp32_flash")
