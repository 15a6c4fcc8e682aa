--- Hard-reset the board from MicroPython (machine.reset()), as mpremote's `reset` does.
--
-- mpctl reset --port /dev/ttyACM0
-- The board reboots at once, so no answer is awaited; a port without machine.reset() (the
-- WebAssembly build) is reported as such.

local port <close> = mpctl.open_port(arg)
local r = mpctl.repl.attach(port)
local has = r:exec("try:\n import machine\n print(hasattr(machine,'reset'))\nexcept ImportError:\n print(False)")
if not has:find("True", 1, true) then
  r:close()
  require("mpctl.errors").raise("unsupported", tostring(arg.port),
    "this MicroPython has no machine.reset(); use the board's reset button or the flash recipe's reset")
end
-- the reset cuts the raw REPL's answer short: send the code and the end byte, do not wait
port:write("import machine\nmachine.reset()\x04")
mpctl.ui.result({ event = "reset", port = tostring(arg.port) }, "reset sent (machine.reset())\n")
