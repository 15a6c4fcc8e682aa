--- Run a local Python script on the board, streaming its output (exit 1 on a device traceback).
-- @raw-args
-- @option timeout: seconds = 3600; how long the script may run
--
-- mpctl run --port /dev/ttyACM0 blink.py

local file = arg[1]
if not file then mpctl.usage_error("run needs a script: mpctl run --port P script.py") end
local f = io.open(file, "rb")
if not f then mpctl.usage_error("run: cannot open " .. file) end
local code = f:read("a")
f:close()
local port <close> = mpctl.open_port(arg)
return mpctl.repl.run_streaming(port, code, tonumber(arg.timeout) or 3600)
