--[[ mpctl.sim.micropython: the real MicroPython (the WebAssembly port from npm) behind a port.

    mpctl sim micropython --listen pty        -> prints /dev/pts/N; any program can open it
    --port sim://micropython                   -> the same behind a sim:// port
    options: heapsize=N[k|m] (node's -X heapsize), node=PATH (node binary)

`node micropython.mjs` runs on a pty of its own in raw mode (it needs a tty: it calls setRawMode;
ONLCR would turn line ends into \r\r\n and break raw-REPL entry). Bytes are pumped both ways
unchanged. When the node process exits — MicroPython's soft reset ends it — a new one is started,
so the client sees a fresh banner, which is what a soft reset looks like on this target (the
in-memory filesystem is gone afterwards). When the client hangs up, the process is killed so the
next client starts from a clean interpreter.

The package is looked up in $MPCTL_NODE_MODULES, else <datadir>/node_modules (scripts/setup runs
`npm ci` there).
]]
local serial = require("mpctl.serial")
local proc = require("mpctl.proc")
local time = require("mpctl.time")

local M = {}

local PKG = "@micropython/micropython-webassembly-pyscript/micropython.mjs"

function M.script_path()
  local dirs = {}
  local env = os.getenv("MPCTL_NODE_MODULES")
  if env and env ~= "" then dirs[#dirs + 1] = env end
  local info = debug.getregistry()["mpctl.info"]
  if info and info.datadir then dirs[#dirs + 1] = info.datadir .. "/node_modules" end
  for _, d in ipairs(dirs) do
    local p = d .. "/" .. PKG
    local f = io.open(p, "rb")
    if f then
      f:close()
      -- micropython.mjs starts its REPL only when process.argv[1] is the module's own real path
      -- (it compares it with import.meta.url), so a symlinked node_modules would give a process
      -- that loads and prints nothing: hand node the resolved path.
      local ok, real = pcall(require("mpctl.fs").realpath, p)
      return ok and real or p
    end
  end
  error("sim micropython: cannot find " .. PKG .. " (looked in " .. table.concat(dirs, ", ")
    .. "); run scripts/setup or set MPCTL_NODE_MODULES", 0)
end

--- Starts one MicroPython process on a raw pty. Returns {proc=, port=} (port: the pty master).
function M.spawn(opts)
  opts = opts or {}
  local argv = {opts.node or "node", M.script_path()}
  if opts.heapsize then
    argv[#argv + 1] = "-X"
    argv[#argv + 1] = "heapsize=" .. opts.heapsize
  end
  local p = proc.spawn{argv = argv, pty = true, stderr = "stdout"}
  local port = serial.wrap_fd(p:fd(), "micropython-wasm")
  return {proc = p, port = port}
end

function M.stop(dev)
  if not dev then return end
  pcall(dev.port.close, dev.port)
  pcall(dev.proc.kill, dev.proc)
  pcall(dev.proc.wait, dev.proc, 2)
  pcall(dev.proc.close, dev.proc)
end

local function exited(dev)
  local ok, code = pcall(dev.proc.wait, dev.proc, 0)
  return ok and code ~= nil
end

local function eof(port)
  local ok, r = pcall(port.is_eof, port)
  return ok and r
end

-- Pumps bytes between client and a MicroPython process until the client hangs up.
function M.session(client, opts)
  local dev = M.spawn(opts)
  local function restart()
    M.stop(dev)
    dev = M.spawn(opts)
  end
  local ok, err = pcall(function()
    while true do
      local ready = serial.poll({client, dev.port}, 0.5)
      for _, obj in ipairs(ready) do
        if obj == client then
          local s = client:read(65536, 0)
          if s == "" then
            if eof(client) then return end
          else
            -- a process that just died cannot take bytes; they go to its successor
            local wok = pcall(dev.port.write, dev.port, s, 5)
            if not wok then restart(); dev.port:write(s, 5) end
          end
        else
          local rok, s = pcall(dev.port.read, dev.port, 65536, 0)
          if not rok or (s == "" and eof(dev.port)) then
            restart()
          elseif s ~= "" then
            client:write(s, 10)
          end
        end
      end
      if #ready == 0 and exited(dev) then restart() end
      if #ready == 0 and eof(client) then return end
    end
  end)
  M.stop(dev)
  if not ok and not tostring(err):find("hung up", 1, true) and not tostring(err):find("closed", 1, true) then
    io.stderr:write("sim micropython: session ended: ", tostring(err), "\n")
  end
end

--- Serves listener (accepting one client after another) or an already connected port.
function M.serve(target, opts)
  opts = opts or {}
  M.serve_with(target, opts, M.session)
end

-- Shared by the fixtures: a listener is announced on stdout (one line) and served forever;
-- a port (the far end of sim://) is served until its client hangs up.
function M.serve_with(target, opts, session)
  local is_listener = pcall(function() return target.accept ~= nil and target.accept end)
    and target.accept ~= nil
  if not is_listener then
    session(target, opts)
    return 0
  end
  -- the pty path, or the URL with the port actually bound (port 0 asks the system for one)
  local where = target.path
  if not where then
    local url, port = target.url, target.port
    where = (url and port) and url:gsub(":%d+$", ":" .. port) or tostring(target)
  end
  io.stdout:write(where, "\n")
  io.stdout:flush()
  while true do
    local client = target:accept(1)
    if not client then
      time.sleep(0.2)   -- a pty listener hands out its one master once; accept then returns nil at once
    else
      session(client, opts)
      if client ~= target then pcall(client.close, client) end
    end
  end
end

return M
