--- ESP fault matrix: how often a flash recovers from wire faults, mpctl vs esptool-js, same simulator.
-- @option seeds: integer = 3; seeds per cell
-- @option kinds: TEXT = drop,corrupt; fault kinds (drop, corrupt, stall, reset)
-- @option rates: TEXT = 0.02,0.08; fault probabilities per SLIP frame
-- @option peer: yes|no = yes; also run esptool-js (node) on the same faults
-- @option node: TEXT = node; node executable
--
-- Run: mpctl --allow-exec bench/fault_matrix.lua [seeds=3] [kinds=drop,corrupt,stall,reset]
-- Each case flashes a 48 KiB image onto a fresh simulated board (timing=off) whose 1 MB flash
-- holds known previous content, with seeded faults (tests/esp/faultmatrix.lua; the same runner
-- the test suite asserts the invariant with), then compares the board's flash file with what
-- the tool said. Columns: recovered = exit 0 and the flash right (image in place, the rest as it
-- was); failed = a clean error; WRONG = exit 0 with the flash not right (must be 0 for mpctl);
-- touched = failed runs that left flash outside the image changed, and whether the tool said so.
-- esptool-js runs only in stub mode on the ESP32 (its default). Prints tables; asserts nothing.

local fs, ui = mpctl.fs, mpctl.ui
local proc = require("mpctl.proc")
local datadir = mpctl.datadir or "."
package.path = datadir .. "/tests/esp/?.lua;" .. package.path
local matrix = require("faultmatrix")

local function list(s, num)
  local t = {}
  for w in tostring(s):gmatch("[^,%s]+") do t[#t + 1] = num and tonumber(w) or w end
  return t
end
local seeds = math.tointeger(tonumber(arg.seeds) or 3)
local kinds = list(arg.kinds or "drop,corrupt")
local rates = list(arg.rates or "0.02,0.08", true)
local peer = arg.peer ~= false and arg.peer ~= "no"
local node = arg.node or "node"
local exe = mpctl.exe
local flash_js = datadir .. "/tests/peers/esptool_js/flash.mjs"

local cells, order = {}, {}
local function cell(tool, c)
  local key = string.format("%-10s %-7s %-5s %-7s %-4s %-5g", tool, c.chip, c.mode, c.kind, c.dir, c.rate)
  if not cells[key] then
    cells[key] = { n = 0, ok = 0, failed = 0, wrong = 0, touched = 0, told = 0, unverified = 0 }
    order[#order + 1] = key
  end
  return cells[key]
end

-- esptool-js on a served simulator with the same fault settings.
local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function esptool_js(c, dir)
  local img = matrix.image(c.chip)
  local img_path = fs.join(dir, "fw.bin")
  fs.write(img_path, img)
  local flash = fs.join(dir, "flash.bin")
  local prev = matrix.previous_content(matrix.FLASH, c.seed)
  fs.write(flash, prev)
  -- stderr to /dev/null: the simulator says "interrupted by SIGTERM" when it is stopped below
  local sim = proc.spawn { argv = { "/bin/sh", "-c", 'exec "$@" 2>/dev/null', "sh", exe, "sim", c.chip, "--listen",
    "rfc2217://127.0.0.1:0", "timing=off", "flash_size=1MB", "flash_file=" .. flash, "seed=" .. c.seed,
    c.kind .. "=" .. c.rate, "fault_dir=" .. c.dir, "stall_ms=400" }, pty = false }
  local sport = mpctl.serial.wrap_fd(sim:stdout_fd(), "sim stdout")
  local url = sport:read_until("\n", 10):match("(rfc2217://[%d%.]+:%d+)")
  local out = fs.join(dir, "out")
  local p = proc.spawn { argv = { "/bin/sh", "-c", "exec " .. shq(node) .. " " .. shq(flash_js) .. " --port " .. shq(url)
    .. " --image " .. shq(img_path) .. " --baud 921600 --offset 0x1000 >" .. shq(out) .. " 2>&1" }, pty = false }
  local code = p:wait(120)
  if code == nil then p:kill("KILL") p:wait(5) end
  p:close()
  sport:close() sim:kill() sim:wait(5) sim:close()
  local ok, j = pcall(ui.json_decode, (fs.read(out):match("[^\n]*\n?$") or ""))
  local said_ok = code == 0 and ok and type(j) == "table" and j.ok
  local f = fs.read(flash)
  local stop = 0x1000 + #img
  local sector_end = stop + (-stop) % 4096
  local right = f:sub(0x1001, stop) == img
  local outside_same = f:sub(1, 0x1000) == prev:sub(1, 0x1000) and f:sub(sector_end + 1) == prev:sub(sector_end + 1)
  return said_ok, right and outside_same, not outside_same
end

local t0 = mpctl.time.now()
for _, c in ipairs(matrix.cases { seeds = seeds, kinds = kinds, rates = rates }) do
  local r = matrix.run(c)
  local x = cell("mpctl", c)
  x.n = x.n + 1
  if r.violation then x.wrong = x.wrong + 1 end
  if r.outcome == "ok" and not r.violation then x.ok = x.ok + 1
  elseif r.outcome == "unverified" then x.unverified = x.unverified + 1
  elseif r.outcome == "failed" then
    x.failed = x.failed + 1
    if r.touched then
      x.touched = x.touched + 1
      if r.msg and r.msg:find("outside it changed", 1, true) or (r.msg or ""):find("Flash outside the image changed", 1, true) then
        x.told = x.told + 1
      end
    end
  end
  if peer and c.chip == "esp32" and c.mode == "stub" then
    local dir = fs.tmpdir()
    local said_ok, right, touched = esptool_js(c, dir)
    fs.remove(dir, { recursive = true })
    local y = cell("esptool-js", c)
    y.n = y.n + 1
    if said_ok and right then y.ok = y.ok + 1
    elseif said_ok then y.wrong = y.wrong + 1
    else
      y.failed = y.failed + 1
      if touched then y.touched = y.touched + 1 end
    end
  end
end

print(string.format("ESP fault matrix: %d seeds per cell, 48 KiB image, 1 MB flash with previous content, %.0f s",
  seeds, mpctl.time.now() - t0))
print()
print("tool       chip    mode  fault   dir  rate   runs  recovered  failed  WRONG  unverified  touched(told)")
for _, key in ipairs(order) do
  local x = cells[key]
  print(string.format("%s  %4d  %8.0f%%  %6d  %5d  %10d  %7d(%d)", key, x.n, 100 * x.ok / x.n, x.failed, x.wrong,
    x.unverified, x.touched, x.told))
end
print()
print("esptool (anchors.md §2, issue 8): recovers from corrupted and dropped data packets (per-block")
print("retries, WRITE_BLOCK_ATTEMPTS=3), fails on resets, verifies only the image's own MD5, so a damaged")
print("FLASH_DEFL_BEGIN that moves a write is reported as success. esptool-js rows above: measured here.")
print("unverified = ESP8266 ROM mode (no MD5 in that ROM): exit 0 says 'not verified'.")
