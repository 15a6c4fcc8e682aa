--- File transfer (mpctl.repl put/get) on a simulated board's own paced port: the ESP32's UART in
--- application mode, or the Pyboard's USB CDC port.
-- @option board: esp32 | pyboard (default esp32)
-- @option sizes: comma-separated file sizes in KB (default 16,64)
-- @option port: an already served port (used by the pyboard run inside `mpctl sim pyboard`)
-- @option trace: the simulator's trace file (overruns are counted from it)
--
-- Run: mpctl --allow-exec bench/board_transfer.lua [board=esp32|pyboard] [sizes=16,64]
-- esp32: `sim://esp32` with a bootable flash (boots the real WebAssembly MicroPython), wire paced at
-- 115200/10 B/s both ways, MicroPython's 260-byte input FIFO in front of the REPL.
-- pyboard: re-runs itself under `mpctl sim pyboard start=app trace=F -- ...` and opens /dev/ttyACM0:
-- USB full-speed CDC pacing (486 KiB/s in, 506 KiB/s out) with stm32 MicroPython's 1024-byte ring.
-- Random (incompressible) data; put then get of the same file. Prints seconds, throughput, % of the
-- wire rate, wire bytes per file byte and bytes the board lost to its input buffer (from its trace).
-- The WebAssembly MicroPython behind both cannot read stdin from code, so transfers are base64
-- through the plain raw REPL. Nothing here passes or fails on time.

local fs, time = mpctl.fs, mpctl.time
local repl = mpctl.repl
local board = arg.board or "esp32"
local sizes = {}
for s in tostring(arg.sizes or "16,64"):gmatch("%d+") do sizes[#sizes + 1] = tonumber(s) * 1024 end
local root = mpctl.datadir or "."

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

if board == "pyboard" and not arg.port then
  -- the board exists only inside `mpctl sim pyboard`: run this bench there
  local dir = fs.tmpdir()
  local trace = fs.join(dir, "trace")
  local cmd = string.format("%s sim pyboard start=app quiet=yes trace=%s -- %s --allow-exec %s board=pyboard port=/dev/ttyACM0 trace=%s sizes=%s",
    shq(mpctl.exe), shq(trace), shq(mpctl.exe), shq(root .. "/bench/board_transfer.lua"), shq(trace),
    shq(arg.sizes or "16,64"))
  local ok, how, code = os.execute(cmd)
  fs.remove(dir, { recursive = true })
  if not ok then error("bench under sim pyboard failed: " .. tostring(how) .. " " .. tostring(code), 0) end
  return
end

local function random_bytes(n) return require("mpctl.test").random_bytes(n, 4242) end

local function lost(trace)
  if not trace or not fs.exists(trace) then return "n/a" end
  local n = 0
  for k in fs.read(trace):gmatch("overrun: (%d+) bytes lost") do n = n + tonumber(k) end
  return n
end

local port, trace, rate_in, rate_out, what, dir
if board == "esp32" then
  dir = fs.tmpdir()
  trace = fs.join(dir, "trace")
  local flash = dofile(root .. "/tests/sim/simboard.lua").app_flash(dir)
  port = mpctl.serial.open("sim://esp32?flash_size=1MB&boot_delay=0&flash_file=" .. flash .. "&trace=" .. trace,
    { baud = 115200 })
  rate_in, rate_out = 11520, 11520
  what = "sim esp32, application mode, UART 115200 (11 520 B/s each way), 260-byte input FIFO"
elseif board == "pyboard" then
  trace = arg.trace
  local deadline = time.now() + 20
  repeat
    local ok, p = pcall(mpctl.serial.open, arg.port)
    if ok then port = p else time.sleep(0.1) end
  until port or time.now() > deadline
  assert(port, arg.port .. " did not appear")
  rate_in, rate_out = 486 * 1024, 506 * 1024
  what = "sim pyboard, USB CDC (486 KiB/s to the board, 506 KiB/s from it), 1024-byte ring"
else
  error("board must be esp32 or pyboard", 0)
end

local r = repl.attach(port, { timeout = 30, owns_port = true })
print(what)
print(string.format("%-4s %-12s %7s  %9s  %11s  %8s  %9s  %s", "dir", "mode", "bytes", "seconds", "B/s", "% wire", "wire B/B", "lost"))
local function show(dir, s, size, rate, lost_n)
  print(string.format("%-4s %-12s %7d  %9.2f  %11.0f  %7.2f%%  %9.3f  %s", dir, s.mode, size, s.seconds, s.rate,
    100 * s.rate / rate, s.wire_per_byte, tostring(lost_n)))
end
local function lost_during(fn)
  local before = lost(trace)
  local a, b = fn()
  local after = lost(trace)
  return a, b, type(before) == "number" and after - before or before
end
for _, size in ipairs(sizes) do
  local data = random_bytes(size)
  local path = "/bench.bin"
  local s, _, l = lost_during(function() return r:put(data, path, { force = true, timeout = 60 + 4 * size / 1000 }) end)
  show("put", s, size, rate_in, l)
  local back, g, l2 = lost_during(function() return r:get(path, { timeout = 60 + 4 * size / 1000 }) end)
  mpctl.check(back == data, string.format("get %d bytes round trip", size))
  show("get", g, size, rate_out, l2)
end
r:close()
if dir then fs.remove(dir, { recursive = true }) end
