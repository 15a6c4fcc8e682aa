--- Run Python code on the board and print its output (exit 1 on a device traceback).
-- @raw-args
-- @option timeout: seconds = 60; how long the code may run
--
-- mpctl exec --port /dev/ttyACM0 'import os; print(os.listdir())'
-- Words are joined with spaces, so unquoted code works too: mpctl exec --port P x=1 -- print(x)

local code = table.concat(arg, " ")
if code == "" then mpctl.usage_error("exec needs Python code, e.g. mpctl exec --port P 'print(1+1)'") end
local port <close> = mpctl.open_port(arg)
return mpctl.repl.run_streaming(port, code, tonumber(arg.timeout) or 60)
