--- Put the board into its bootloader from MicroPython (machine.bootloader()), as mpremote's `bootloader` does.
--
-- mpctl bootloader --port /dev/ttyACM0
-- The board leaves MicroPython at once, so no answer is awaited; a port without
-- machine.bootloader() is reported as such (exit 1).

local port <close> = mpctl.open_port(arg)
mpctl.repl.machine_call(port, "bootloader")
mpctl.ui.result({ event = "bootloader", port = tostring(arg.port) }, "bootloader entry sent (machine.bootloader())\n")
