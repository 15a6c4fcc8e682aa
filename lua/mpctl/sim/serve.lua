-- mpctl.sim.serve: how every simulator meets its clients (`mpctl sim NAME --listen URL` and the far
-- end of sim://NAME). One place decides what the target is:
--   * a listener (rfc2217://, socket://, pty): print the address it listens on as the first line
--     of stdout (the URL with the port actually bound, or the /dev/pts path), then serve one
--     client after another until killed;
--   * an already connected port (fd://3 behind sim://): serve it until its client hangs up.
-- session(port, opts, ctx) serves one client; ctx is the per-simulator state the caller keeps for
-- the simulator's whole life (a flash image, a filesystem), so it outlives each connection.
local time = require("mpctl.time")

local M = {}

-- Listeners are userdata whose type name starts with "mpctl.listener" (SERIAL_LISTENER_MT in src/serial_port.h).
function M.is_listener(t)
  return tostring(t):match("^mpctl%.listener") ~= nil
end

-- The address clients should use: the pty path, or the URL with the port actually bound (port 0
-- asks the system for one).
function M.address(l)
  if l.path then return l.path end
  local url = l.url or "socket://127.0.0.1:0"
  if l.port then url = url:gsub(":%d+$", ":" .. l.port) end
  return url
end

local function ended_quietly(err)
  local s = tostring(err)
  return s:find("hung up", 1, true) or s:find("closed", 1, true)
end

-- Serves target with session(port, opts). opts._name labels errors ("sim esp: ..."). For a
-- connected port the session's error propagates; for a listener it is reported and the next
-- client is served. hooks (optional): after(port) runs when a client has gone; announce =
-- false prints nothing, a function(target) -> string prints that instead of the address.
function M.serve(target, opts, session, hooks)
  hooks = hooks or {}
  local name = opts and opts._name or "sim"
  if not M.is_listener(target) then
    local ok, err = pcall(session, target, opts)
    if hooks.after then hooks.after(target) end
    if not ok and not ended_quietly(err) then error(err, 0) end
    return 0
  end
  if hooks.announce ~= false then
    io.stdout:write(hooks.announce and hooks.announce(target) or M.address(target), "\n")
    io.stdout:flush()
  end
  while true do
    local port = target:accept(1)
    if port then
      local ok, err = pcall(session, port, opts)
      if hooks.after then hooks.after(port) end
      pcall(port.close, port)
      if not ok and not ended_quietly(err) then io.stderr:write(name, ": ", tostring(err), "\n") end
    elseif target.path then
      -- a pty listener hands out its one master once; accept then returns nil at once
      time.sleep(0.2)
    end
  end
end

return M
