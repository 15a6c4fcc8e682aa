--- Check that a MicroPython REPL answers: print('hello') must print hello; report the firmware.
-- @option timeout: seconds = 10; how long to wait for each answer
--
-- mpctl verify_repl --port /dev/ttyACM0      (exit 0 when the REPL works, 1 when it does not)

local port = mpctl.open_port(arg)
mpctl.repl.verify(port, { name = arg.port, timeout = tonumber(arg.timeout) })
