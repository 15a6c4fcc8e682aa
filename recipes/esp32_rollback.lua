--- Undo the last flash of an ESP board (ESP32 family, ESP8266): the generic rollback recipe, by its ESP name.
-- @option device: TEXT; the device (MAC or unique id) when the port's history holds several boards
-- @option files: yes|no = yes; restore the board's files when a files backup exists
-- @option force: yes|no = no; write even when the board's MAC differs from the history's
-- @option reset: classic|usb-jtag|none; how to enter the bootloader (default: from the board file)
-- @option stub: FILE|no; flasher stub JSON, or no for ROM-only mode
-- @option history: FILE; history file (default $MPCTL_HISTORY or ~/.local/state/mpctl/history.jsonl)
-- @option timeout: seconds = 10; how long to wait for the REPL after reset, for the files
--
--   mpctl esp32_rollback --port /dev/ttyUSB0
-- The work is in recipes/rollback.lua (history as a stack, flash backup or cached firmware, written
-- through the board family's target driver, mpctl.target); this name keeps the ESP recipes together.

return require("rollback")
