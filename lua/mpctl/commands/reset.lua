--- Hard-reset the board from MicroPython (machine.reset()), as mpremote's `reset` does.
--
-- mpctl reset --port /dev/ttyACM0
-- The board reboots at once, so no answer is awaited; a port without machine.reset() (the
-- plain WebAssembly build) is reported as such (exit 1).

local port <close> = mpctl.open_port(arg)
mpctl.repl.machine_call(port, "reset")
mpctl.ui.result({ event = "reset", port = tostring(arg.port) }, "reset sent (machine.reset())\n")
