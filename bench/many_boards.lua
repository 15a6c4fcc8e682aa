--- Many boards: 8 simulated ESP32s flashed by one mpctl command vs one board alone, and vs 8
--- esptool-js processes started in parallel, with the CPU time each board costs.
-- @option boards: how many boards (default 8)
-- @option baud: flashing baud rate (default 921600)
-- @option size: image size in KB (default 1536)
-- @option node: node executable (default node)
-- @option esptool: yes|no; also flash with esptool-js (default yes; no: mpctl's rows only, e.g. boards=32)
--
-- Run: mpctl --allow-exec bench/many_boards.lua [boards=8] [baud=921600]
-- Every board is its own `mpctl sim esp32 --listen rfc2217://127.0.0.1:0 app=none` (datasheet
-- flash timings, wire paced at baud/10 bytes/s; app=none: no MicroPython process after the
-- reset, for both tools), started fresh (blank flash) for each case. The image is the generated
-- 1.5 MB firmware-like one of bench/esp_flash.lua, written at 0x1000. The simulators run on the
-- same 2 cores as the flashers, so the parallel cases also measure how little CPU each side
-- needs. CPU times come from wait4's rusage of each process (mpctl's children are the per-board
-- processes; the simulators are not their children, so they are not counted). Nothing here
-- passes or fails on time.

local fs, time, ui = mpctl.fs, mpctl.time, mpctl.ui
local proc = require("mpctl.proc")
local imagegen = require("mpctl.esp.imagegen")
local support = require("support")

local N = tonumber(arg.boards) or 8
local baud = tonumber(arg.baud) or 921600
local size = (tonumber(arg.size) or 1536) * 1024
local node = arg.node or "node"
local with_esptool = arg.esptool ~= false and arg.esptool ~= "no"
local exe = mpctl.exe
local flash_js = (mpctl.datadir or ".") .. "/tests/peers/esptool_js/flash.mjs"

local dir = fs.tmpdir()
local img_path = fs.join(dir, "fw.bin")
fs.write(img_path, imagegen.generate { chip = "esp32", size = size })

-- n fresh simulators (their "interrupted by SIGTERM" on stop is not news: stderr to /dev/null)
local function serve(n)
  local urls, stops = {}, {}
  for i = 1, n do
    local p = proc.spawn { argv = { exe, "sim", "esp32", "--listen", "rfc2217://127.0.0.1:0", "app=none",
      "seed=" .. (100 + i) }, pty = false, stderr = "null" }
    local port = mpctl.serial.wrap_fd(p:stdout_fd(), "sim stdout")
    urls[i] = assert(port:read_until("\n", 10):match("(rfc2217://[%d%.]+:%d+)"), "simulator printed no address")
    stops[i] = function()
      port:close() p:kill() p:wait(5)
      local ru = p:rusage() or { user = 0, system = 0 }
      p:close()
      return ru.user + ru.system
    end
  end
  -- stop() -> the simulators' CPU seconds, all together
  return urls, function()
    local cpu = 0
    for _, s in ipairs(stops) do cpu = cpu + s() end
    return cpu
  end
end

-- Starts argv with output into a file; returns a handle with :finish() -> code, text, wall, cpu.
local function launch(argv, tag)
  local out = fs.join(dir, tag .. ".out")
  local sh = {}
  for i, a in ipairs(argv) do sh[i] = support.shq(a) end
  local t0 = time.now()
  local p = proc.spawn { argv = { "/bin/sh", "-c", "exec " .. table.concat(sh, " ") .. " >" .. support.shq(out) .. " 2>&1" },
    pty = false }
  return {
    finish = function()
      local code = p:wait(600)
      local wall = time.now() - t0
      if code == nil then p:kill("KILL") p:wait(5) end
      local ru = p:rusage() or { user = 0, system = 0 }
      p:close()
      return code, fs.read(out), wall, ru.user + ru.system
    end,
  }
end

local function mpctl_argv(urls)
  local a = { exe, "--json", "esp32_flash", "firmware=" .. img_path, "baud=" .. baud, "repl=no" }
  for _, u in ipairs(urls) do a[#a + 1] = "--port" a[#a + 1] = u end
  return a
end

local function check_mpctl(code, text, what)
  if code ~= 0 then error(what .. " failed (" .. tostring(code) .. "): " .. text:sub(-600), 0) end
end

-- 1. One board alone (the plain single-board run).
local urls, stop = serve(1)
local code, text, wall1, cpu1 = launch(mpctl_argv(urls), "one").finish()
stop()
check_mpctl(code, text, "mpctl, one board")

-- 2. N boards, one mpctl command.
urls, stop = serve(N)
local codeN, textN, wallN, cpuN = launch(mpctl_argv(urls), "many").finish()
local sims_cpu = stop()
check_mpctl(codeN, textN, "mpctl, " .. N .. " boards")
local child_cpu, board_walls, passed = 0, {}, 0
for line in textN:gmatch("[^\n]+") do
  local ok, ev = pcall(ui.json_decode, line)
  if ok and type(ev) == "table" and ev.event == "board_end" then
    if ev.result == "pass" then passed = passed + 1 end
    if type(ev.cpu) == "table" then child_cpu = child_cpu + ev.cpu.user + ev.cpu.system end
    board_walls[#board_walls + 1] = ev.seconds
  end
end
if passed ~= N then error(string.format("only %d of %d boards passed", passed, N), 0) end
table.sort(board_walls)

-- 3. N esptool-js processes started in parallel, and one alone for its own ratio.
local function esptool_js(urls_)
  local t0 = time.now()
  local runs = {}
  for i, u in ipairs(urls_) do
    runs[i] = launch({ node, flash_js, "--port", u, "--image", img_path, "--baud", tostring(baud), "--offset", "4096" },
      "ejs" .. i)
  end
  local cpu_all, ok_n = 0, 0
  for _, r in ipairs(runs) do
    local c, out, _, cpu = r.finish()
    cpu_all = cpu_all + cpu
    local ok, j = pcall(ui.json_decode, out:match("([^\n]*)\n?$") or "")
    if c == 0 and ok and type(j) == "table" and j.ok then ok_n = ok_n + 1 end
  end
  return time.now() - t0, cpu_all, ok_n
end
local wallE, ejs_cpu, ejs_ok, wallE1, cpuE1, ejs1_ok
if with_esptool then
  urls, stop = serve(N)
  wallE, ejs_cpu, ejs_ok = esptool_js(urls)
  stop()
  urls, stop = serve(1)
  wallE1, cpuE1, ejs1_ok = esptool_js(urls)
  stop()
end

print(string.format("%d simulated ESP32 boards (timing typ, wire paced), %d baud, %d-byte image at 0x1000; 2 cores shared by %d simulators and the flashers",
  N, baud, size, N))
print()
print("case                         wall s   vs 1 board   CPU s (all)   CPU s per board   boards ok")
print(string.format("mpctl, 1 board               %6.2f   %10s   %11.2f   %15.2f   1/1", wall1, "1.00", cpu1, cpu1))
print(string.format("mpctl, %d boards, 1 command   %6.2f   %10.2f   %11.2f   %15.2f   %d/%d", N, wallN, wallN / wall1, cpuN,
  cpuN / N, passed, N))
if with_esptool then
  print(string.format("esptool-js, 1 process        %6.2f   %10s   %11.2f   %15.2f   %d/1", wallE1, "1.00", cpuE1, cpuE1,
    ejs1_ok))
  print(string.format("esptool-js, %d processes      %6.2f   %10.2f   %11.2f   %15.2f   %d/%d", N, wallE, wallE / wallE1, ejs_cpu,
    ejs_cpu / N, ejs_ok, N))
  print()
  print(string.format("mpctl %d boards vs esptool-js %d processes: wall %.2f, CPU %.2f", N, N, wallN / wallE, cpuN / math.max(ejs_cpu, 1e-9)))
end
print(string.format("mpctl per board: %.2f s CPU in the board's own process, %.2f s in the supervisor (its share)",
  child_cpu / N, (cpuN - child_cpu) / N))
print(string.format("the %d simulators used %.1f s of CPU in that run (%.2f s per board), on the same 2 cores",
  N, sims_cpu, sims_cpu / N))
print(string.format("board times in the %d-board run: fastest %.2f s, slowest %.2f s", N, board_walls[1], board_walls[#board_walls]))
local per_core = wall1 / (cpuN / N)
print(string.format("CPU per board / one board's wall time = %.3f of a core: about %d boards' flashers per core (%d on 2 cores) before CPU, not the wire, sets the pace",
  (cpuN / N) / wall1, math.floor(per_core), math.floor(2 * per_core)))
fs.remove(dir, { recursive = true })
