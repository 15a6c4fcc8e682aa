--[[ mpctl.sim.micropython: the real MicroPython (the WebAssembly port from npm) behind a port.

    mpctl sim micropython --listen pty        -> prints /dev/pts/N; any program can open it
    --port sim://micropython                   -> the same behind a sim:// port
    options: heapsize=N[k|m] (node's -X heapsize), node=PATH (node binary)

`node micropython.mjs` runs on a pty of its own in raw mode (it needs a tty: it calls setRawMode;
ONLCR would turn line ends into \r\r\n and break raw-REPL entry). Bytes are pumped both ways
unchanged (with machine=yes, a `machine` module is injected at each start and its hardware events
are taken out of the output). When the node process exits — MicroPython's soft
reset ends it — a new one is started, so the client sees a fresh banner, which is what a soft
reset looks like on this target (the in-memory filesystem is gone afterwards). One process serves
the simulator's whole life: clients of a listener that come one after another share its
interpreter and its files, as with a board that stays powered. Options: machine=yes injects the
simulated boards' `machine` module (mpctl.sim.board.inject; off by default: this simulator is the
published WebAssembly port as it is), trace=FILE (its hardware events), led=N (the LED's pin, 2),
temp=C (the I2C sensor's temperature, 24).

Not paced, on purpose: the WebAssembly port has no serial line on any real device, so there is no
rate to model; this is the logic-only target (what the REPL does, and protocol cost without a wire).
Wire speed is modelled by the simulated boards that have one: sim://esp32 (mpctl.sim.esp.wire),
the Pyboard's USB CDC port (mpctl.sim.usb.cdc) and sim://rawrepl?throttle=true.

The package is looked up in $MPCTL_NODE_MODULES, else <datadir>/node_modules (scripts/setup runs
`npm ci` there).
]]
local serial = require("mpctl.serial")
local proc = require("mpctl.proc")
local serve = require("mpctl.sim.serve")

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

---------------------------------------------------------------------------------------------
-- The board: one MicroPython process for the simulator's life (so its files are kept while
-- clients come and go, as a powered board keeps them), restarted when it ends (its soft reset
-- and machine.reset() end it; the in-memory files are lost then). At each start the `machine`
-- module is injected (mpctl.sim.board.inject); events from it go to the trace file.

local Board = {}
Board.__index = Board

local function yes(v)
  return v == true or v == "1" or v == "yes" or v == "true" or v == "on"
end

function M.board(opts)
  local b = setmetatable({opts = opts}, Board)
  if opts.trace then b.trace = assert(io.open(opts.trace, "a")) end
  b:start()
  return b
end

function Board:log(fmt, ...)
  if self.trace then
    self.trace:write(string.format("%.6f ", require("mpctl.time").now()), string.format(fmt, ...), "\n")
    self.trace:flush()
  end
end

function Board:start()
  local dev = M.spawn(self.opts)
  self.dev = dev
  local inject = require("mpctl.sim.board.inject")
  local code = inject.setup_code({led = tonumber(self.opts.led) or 2, temp = tonumber(self.opts.temp) or 24.0,
    i2c = 0x48, uid = {bytes = "\2\0\0\0\0\1"}, freq = 160000000})
  if not yes(self.opts.machine) then
    -- the plain WebAssembly port, as published: no machine module, output untouched
    self.inj = {ready = function() return true end, output = function(_, s) return s end}
    self:log("app started")
    return
  end
  self.inj = inject.new(code, function(s) pcall(dev.port.write, dev.port, s, 5) end,
    function(ev)
      self:log("board: %s", ev)
      if ev == "reset" then self.reset_asked = true end
    end,
    function(...) self:log(...) end, true)
  self:log("app started")
end

function Board:stop()
  M.stop(self.dev)
  self.dev = nil
end

function Board:restart()
  self:stop()
  self:start()
end

function Board:close()
  self:stop()
  if self.trace then self.trace:close() self.trace = nil end
end

-- Bytes from the client (after the injector's, which were written first).
function Board:input(s)
  -- a process that just died cannot take bytes; they go to its successor
  local wok = pcall(self.dev.port.write, self.dev.port, s, 5)
  if not wok then self:restart(); pcall(self.dev.port.write, self.dev.port, s, 5) end
end

-- Output of the process for the client ("" while injecting); false once the process has ended.
function Board:output()
  local rok, s = pcall(self.dev.port.read, self.dev.port, 65536, 0)
  if not rok or (s == "" and eof(self.dev.port)) then return false end
  local out = self.inj:output(s)
  if self.reset_asked then
    self.reset_asked = false
    return false
  end
  return out
end

-- Pumps bytes between client and the board until the client hangs up.
function M.session(client, opts, board)
  local own = board == nil
  board = board or M.board(opts)
  local ok, err = pcall(function()
    while true do
      local ready = serial.poll({client, board.dev.port}, 0.5)
      for _, obj in ipairs(ready) do
        if obj == client then
          local s = client:read(65536, 0)
          if s == "" then
            if eof(client) then return end
          else
            board:input(s)
          end
        else
          local out = board:output()
          if out == false then
            board:restart()
          elseif out ~= "" then
            client:write(out, 10)
          end
        end
      end
      if #ready == 0 and exited(board.dev) then board:restart() end
      if #ready == 0 and eof(client) then return end
    end
  end)
  if own then board:close() end
  if not ok and not tostring(err):find("hung up", 1, true) and not tostring(err):find("closed", 1, true) then
    io.stderr:write("sim micropython: session ended: ", tostring(err), "\n")
  end
end

--- Serves a listener (one client after another) or an already connected port (mpctl.sim.serve).
function M.serve(target, opts)
  opts = opts or {}
  opts._name = "sim micropython"
  local board = M.board(opts)
  local ok, err = pcall(serve.serve, target, opts, function(port) M.session(port, opts, board) end)
  board:close()
  if not ok then error(err, 0) end
  return 0
end

return M
