--- Run a local Python script on the board, streaming its output (exit 1 on a device traceback).
-- @raw-args
-- @option timeout: seconds the script may run (default 3600; write --timeout=N)
--
-- mpctl run --port /dev/ttyACM0 blink.py

local file = arg[1]
if not file then mpctl.usage_error("run needs a script: mpctl run --port P script.py") end
local f = io.open(file, "rb")
if not f then mpctl.usage_error("run: cannot open " .. file) end
local code = f:read("a")
f:close()
local port = mpctl.open_port(arg)
local r = mpctl.repl.attach(port)
local ok, err = pcall(r.exec, r, code, {
  timeout = tonumber(arg.timeout) or 3600,
  on_output = function(s) io.stdout:write(s) io.stdout:flush() end,
})
r:close()
if not ok then
  if mpctl.repl.is_error(err, "device") then
    io.stderr:write((err.traceback:gsub("\r\n", "\n")))
    return 1
  end
  error(err, 0)
end
