--- ESP32 flashing: mpctl vs esptool-js on the same served simulator (timing on), with ratios.
-- @option bauds: comma-separated rates (default 460800,921600)
-- @option size: image size in KB (default 1536)
-- @option runs: repetitions per full-flash cell, each on a fresh simulator; the best is kept (default 1)
-- @option node: node executable (default node)
--
-- Run: mpctl --allow-exec bench/esp_flash.lua [bauds=460800,921600] [size=1536]
-- Serves `mpctl sim esp32 --listen rfc2217://127.0.0.1:0` (datasheet flash timings, wire paced
-- at baud/10 bytes/s) and flashes a generated 1.5 MB firmware-like image (mpctl.esp.imagegen,
-- deflate ratio ~0.65 like MicroPython) at 0x1000 with both tools as separate processes, each on
-- a freshly started simulator (blank flash). Then a one-block change is flashed onto the board
-- that already holds the image. Prints tables; nothing here passes or fails on time.

local fs, time, ui, zlib = mpctl.fs, mpctl.time, mpctl.ui, mpctl.zlib
local proc = require("mpctl.proc")
local imagegen = require("mpctl.esp.imagegen")

local bauds = {}
for b in tostring(arg.bauds or "460800,921600"):gmatch("%d+") do bauds[#bauds + 1] = tonumber(b) end
local size = (tonumber(arg.size) or 1536) * 1024
local runs = tonumber(arg.runs) or 1
local node = arg.node or "node"
local exe = mpctl.exe
local datadir = mpctl.datadir or "."
local flash_js = datadir .. "/tests/peers/esptool_js/flash.mjs"
local OFFSET = 0x1000

local dir = fs.tmpdir()
local img = imagegen.generate { chip = "esp32", size = size }
local img_path = fs.join(dir, "fw.bin")
fs.write(img_path, img)
local touched = imagegen.touch_block(img, math.min(0x80000, #img // 2))
local touched_path = fs.join(dir, "fw2.bin")
fs.write(touched_path, touched)

local support = require("support")
local function run(argv, timeout) return support.run(dir, argv, timeout or 300) end
local function serve() return support.serve_esp32(exe) end

local function mpctl_flash(url, path, baud)
  local code, out, err, wall = run { exe, "--json", "esp32_flash", "--port", url, "firmware=" .. path,
    "baud=" .. baud, "repl=no" }
  local ev
  for l in out:gmatch("[^\n]+") do
    local ok, j = pcall(ui.json_decode, l)
    if ok and type(j) == "table" and j.event == "esp_flash" then ev = j end
  end
  if code ~= 0 or not ev then error("mpctl esp32_flash failed (" .. tostring(code) .. "): " .. err:sub(-400), 0) end
  return { wall = wall, connect = ev.connect_seconds, write = ev.write_seconds, wire = ev.wire_total,
    write_wire = ev.wire, baud = ev.baud, written = ev.written, sent = ev.sent }
end

local function esptool_js_flash(url, path, baud)
  local code, out, err, wall = run { node, flash_js, "--port", url, "--image", path, "--baud", tostring(baud),
    "--offset", tostring(OFFSET) }
  local ok, j = pcall(ui.json_decode, out:match("[^\n]*\n?$") or "")
  if code ~= 0 or not ok or type(j) ~= "table" or not j.ok then
    error("esptool-js failed (" .. tostring(code) .. "): " .. out:sub(-300) .. err:sub(-300), 0)
  end
  return { wall = wall, connect = j.connect_s, write = j.write_s, wire = j.wire_tx_bytes,
    write_wire = j.write_wire_bytes, baud = j.baud_used }
end

-- Best of `runs`, each on its own freshly started simulator: a second run on the same one would
-- find the image already on flash and write nothing.
local function fresh(fn, path, baud)
  local r
  for _ = 1, runs do
    local url, stop = serve()
    local ok, x = pcall(fn, url, path, baud)
    stop()
    if not ok then error(x, 0) end
    if not r or x.wall < r.wall then r = x end
  end
  return r
end

print(string.format("image: %d bytes (generated, esp32 at 0x%X); sim esp32 with timing=typ, wire at baud/10 B/s",
  #img, OFFSET))
print()

-- 1. Compression alone: bytes to send.
local z9 = #zlib.compress(img, 9)
local z12 = #zlib.compress(img, 12)
local py9
do
  local code, out = run { "/usr/bin/python3", "-c",
    "import sys,zlib; print(len(zlib.compress(open(sys.argv[1],'rb').read(), 9)))", img_path }
  if code == 0 then py9 = tonumber(out:match("%d+")) end
end
print("deflate            bytes      ratio   vs zlib -9")
if py9 then print(string.format("zlib -9 (python)   %-9d  %.4f  1.000   (what esptool sends)", py9, py9 / #img)) end
print(string.format("libdeflate -9      %-9d  %.4f  %.3f", z9, z9 / #img, py9 and z9 / py9 or 0))
print(string.format("libdeflate -12     %-9d  %.4f  %.3f   (what mpctl sends)", z12, z12 / #img, py9 and z12 / py9 or 0))
print()

-- 2. Full flash onto blank flash.
local rows = {}
for _, baud in ipairs(bauds) do
  local m = fresh(mpctl_flash, img_path, baud)
  local e = fresh(esptool_js_flash, img_path, baud)
  rows[#rows + 1] = { baud = baud, m = m, e = e }
end
print("full flash (1 process each, blank flash)")
print("baud     tool        wall s  connect s  write s  wire bytes  wall ratio  wire ratio  floor s  wall/floor")
for _, r in ipairs(rows) do
  local floor_m = r.m.wire * 10 / r.m.baud
  local floor_e = r.e.wire * 10 / r.e.baud
  print(string.format("%-8d mpctl       %6.2f  %9.2f  %7.2f  %10d  %10.3f  %10.3f  %7.2f  %10.3f", r.baud, r.m.wall,
    r.m.connect or 0, r.m.write, r.m.wire, r.m.wall / r.e.wall, r.m.wire / r.e.wire, floor_m, r.m.wall / floor_m))
  print(string.format("%-8d esptool-js  %6.2f  %9.2f  %7.2f  %10d  %10s  %10s  %7.2f  %10.3f", r.baud, r.e.wall,
    r.e.connect or 0, r.e.write, r.e.wire, "1", "1", floor_e, r.e.wall / floor_e))
end
print("floor = all bytes mpctl (or esptool-js) sent × 10 / baud; wall includes process start-up")
print()

-- 3. One-block change onto a board that holds the image.
local top = bauds[#bauds]
local url, stop = serve()
local ok, err = pcall(function()
  local full = mpctl_flash(url, img_path, top)
  -- one run: a second one would find the change already on flash
  local one = mpctl_flash(url, touched_path, top)
  local ejs = esptool_js_flash(url, touched_path, top)
  print(string.format("one-block reflash at %d (image differs from flash in 256 bytes + app checksum/SHA-256)", top))
  print("tool        wall s  write s  sectors written  wire bytes  vs full flash (wall)")
  print(string.format("mpctl       %6.2f  %7.2f  %15d  %10d  %.3f", one.wall, one.write, one.written // 4096, one.wire,
    one.wall / full.wall))
  print(string.format("esptool-js  %6.2f  %7.2f  %15s  %10d  %.3f", ejs.wall, ejs.write, "all", ejs.wire, ejs.wall / full.wall))
  print(string.format("(mpctl full flash on the same server: %.2f s)", full.wall))
end)
stop()
if not ok then print("one-block reflash: " .. tostring(err)) end
print()

-- 4. Process start-up.
local function startup(argv)
  local bestw
  for _ = 1, 5 do
    local _, _, _, w = run(argv)
    if not bestw or w < bestw then bestw = w end
  end
  return bestw
end
local s_m = startup { exe, "--version" }
fs.write(fs.join(dir, "noop.lua"), "local _ = mpctl.esp\n")
local s_l = startup { exe, "--allow-exec", fs.join(dir, "noop.lua") }
local s_n = startup { node, "-e", "0" }
local s_j = startup { node, "--input-type=module", "-e", "import 'esptool-js'" }
print("process start-up (best of 5)")
print(string.format("mpctl --version                 %6.3f s", s_m))
print(string.format("mpctl script loading mpctl.esp  %6.3f s", s_l))
print(string.format("node -e 0                       %6.3f s", s_n))
print(string.format("node importing esptool-js       %6.3f s", s_j))
fs.remove(dir, { recursive = true })
