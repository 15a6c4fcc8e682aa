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
local serial = require("mpctl.serial")

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

function M.serve(target, opts)
  opts = opts or {}
  if opts.exit then return tonumber(opts.exit) end
  if getmetatable(target) and tostring(target):match("^mpctl%.listener") then
    -- a listener: serve one client at a time, forever (until killed)
    if opts.announce == "1" then
      io.stdout:write(tostring(target.path or target.port), "\n")
      io.stdout:flush()
    end
    while true do
      local port = target:accept(1)
      if port then
        -- a client that vanishes mid-write ends its session, not the simulator
        pcall(serve_port, port, opts)
        port:close()
      end
    end
  end
  if opts.pid == "1" then
    local f = assert(io.open("/proc/self/stat", "r"))
    target:write("PID " .. f:read("n") .. "\n")
    f:close()
  end
  -- the client hanging up while we write ends the session normally
  local ok, err = pcall(serve_port, target, opts)
  if not ok and not target:is_eof() then error(err, 0) end
  while opts.linger == "1" do require("mpctl.time").sleep(1) end
  return 0
end

return M
