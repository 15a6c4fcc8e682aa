--- Soft-reset the board's MicroPython (Ctrl-D in the raw REPL: clears its state, runs boot.py and main.py again).
--
-- mpctl soft-reset --port /dev/ttyACM0      (mpremote's `soft-reset`)

local port <close> = mpctl.open_port(arg)
local r = mpctl.repl.attach(port)
local how = r:soft_reset()
r:close()
mpctl.ui.result({ event = "soft_reset", seen = how },
  how == "eof" and "soft reset: the device hung up (a WebAssembly MicroPython process ends on a soft reset)\n"
  or string.format("soft reset done (%s)\n", how))
