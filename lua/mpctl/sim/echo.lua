-- mpctl.sim.echo: the smallest simulator, for testing ports. It echoes every byte and reports
-- each control change the client makes (baud, DTR, RTS, break, purge) as a line
-- "EVENT <kind> <value>\n" written back before the echo of data that arrived with it, so a test
-- can check that sim:// carries signals to the device end in order. Ends when the client hangs up.
--
--   mpctl sim echo --listen rfc2217://127.0.0.1:0      (or as the far end of sim://echo)
-- opts: quiet=1 stops the EVENT lines; exit=N exits at once with status N (tests EOF handling);
-- announce=1 prints a listener's port (or pty path) on stdout, so a test can connect to it;
-- pid=1 first writes "PID <n>\n" to the port; linger=1 keeps running after the client hangs up
-- (both for testing that closing a sim:// port reaps the child, by SIGTERM if need be).
local serve = require("mpctl.sim.serve")

local M = {}

local function report(port, opts)
  for _, ev in ipairs(port:events()) do
    if opts.quiet ~= "1" then
      port:write(string.format("EVENT %s %s\n", ev.kind, tostring(ev.value)))
    end
  end
end

local function serve_port(port, opts)
  while not port:is_eof() do
    local data = port:read(65536, 0.2)
    report(port, opts)
    if data ~= "" then port:write(data) end
  end
  return 0
end

-- One client: the far end of sim://echo, or a client of the listener.
local function session(port, opts)
  if opts.pid == "1" then
    local f = assert(io.open("/proc/self/stat", "r"))
    port:write("PID " .. f:read("n") .. "\n")
    f:close()
  end
  -- the client hanging up while we write ends the session normally
  local ok, err = pcall(serve_port, port, opts)
  if not ok and not port:is_eof() then error(err, 0) end
  while opts.linger == "1" do require("mpctl.time").sleep(1) end
end

function M.serve(target, opts)
  opts = opts or {}
  if opts.exit then return tonumber(opts.exit) end
  opts._name = "sim echo"
  -- announce=1 prints a listener's port number (or pty path) rather than its URL
  local announce = opts.announce == "1" and function(t) return tostring(t.path or t.port) end or false
  return serve.serve(target, opts, session, { announce = announce })
end

return M
