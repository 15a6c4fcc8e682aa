--- Run a local Python script on the board, streaming its output (exit 1 on a device traceback).
-- @raw-args
-- @option timeout: seconds = 3600; how long the script may run
--
-- mpctl run --port /dev/ttyACM0 blink.py

local file = arg[1]
if not file then mpctl.usage_error("run needs a script: mpctl run --port P script.py") end
local f, why = io.open(file, "rb")
if not f then
  -- io.open's reason: "No such file or directory", "Permission denied", "Is a directory" ...
  require("mpctl.errors").raise("not_found", nil, string.format("run: cannot open %s: %s", file,
    tostring(why):match(": ([^:]+)$") or tostring(why)), {path = file})
end
local code, rerr = f:read("a")
f:close()
if not code then require("mpctl.errors").raise("io", nil, string.format("run: cannot read %s: %s", file, tostring(rerr))) end
local port <close> = mpctl.open_port(arg)
-- a traceback names the script and its lines, not <stdin>
return mpctl.repl.run_streaming(port, code, {timeout = tonumber(arg.timeout) or 3600,
  filename = file:match("[^/]+$")})
