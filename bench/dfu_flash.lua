--- DFU flashing: mpctl vs dfu-util 0.11 on the same simulated Pyboard (timing on), with ratios.
-- @option size: image size in KB (default 500)
-- @option change: offset of the one-sector change for the reflash (default 0x30000, inside a 128 KiB sector)
--
-- Run: mpctl --allow-exec bench/dfu_flash.lua [size=500]
-- Each cell runs `mpctl sim pyboard timing=on flash=F stats=S -- sh -c '...'`: the STM32F405 ROM
-- model with datasheet erase/program times (DS8626, typical), served through umockdev; the tool's
-- wall time is taken inside the simulator session (start of the tool to its exit, simulator start
-- excluded). Full flash: blank flash, a MicroPython-like image (mpctl.dfu.target.demo_image) written
-- at 0x08000000 and left with :leave. Reflash: the board already holds the image; a copy with a
-- 16-byte change at `change` is flashed again. dfu-util runs as `dfu-util -a 0 -s 0x08000000:leave -D`;
-- mpctl through its dfu target driver (tests/fixtures/dfu/write.lua leave=yes: read back,
-- erase and program the sectors that differ, verify, leave). Prints tables; never pass/fail on time.

local fs, ui = mpctl.fs, mpctl.ui
local size = (tonumber(arg.size) or 500) * 1024
local change = tonumber(arg.change or "0x30000")
local exe = mpctl.exe
local root = mpctl.datadir or "."
local fixture = root .. "/tests/fixtures/dfu/write.lua"

local dir = fs.tmpdir()
local function write(path, data) local f = assert(io.open(path, "wb")); f:write(data); f:close() end
local function read(path) local f = io.open(path, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local img = require("mpctl.dfu.target").demo_image(mpctl.board("PYBV11"), size, 42)
local img2 = img:sub(1, change) .. string.rep("\x5a", 16) .. img:sub(change + 17)
write(fs.join(dir, "fw.bin"), img)
write(fs.join(dir, "fw2.bin"), img2)

local TOOLS = {
  ["dfu-util"] = function(file) return "dfu-util -a 0 -s 0x08000000:leave -D " .. q(file) .. " >/dev/null 2>&1" end,
  mpctl = function(file) return q(exe) .. " " .. q(fixture) .. " leave=yes firmware=" .. q(file) end,
}

-- One cell: runs the tool on the simulator holding `flash` (nil: blank); returns seconds, stats, flash.
local function cell(tool, file, flash_in)
  local flash = fs.join(dir, tool .. "-flash.bin")
  os.remove(flash)
  if flash_in then write(flash, flash_in) end
  local stats = fs.join(dir, "stats.json")
  local inner = "s=$(date +%s%N); " .. TOOLS[tool](file) .. "; rc=$?; e=$(date +%s%N); echo ELAPSED $((e-s)) $rc"
  local cmd = string.format("%s sim pyboard quiet=yes timing=on flash=%s stats=%s -- sh -c %s 2>&1",
    q(exe), q(flash), q(stats), q(inner))
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local ns, rc = out:match("ELAPSED (%d+) (%d+)")
  if not ns or rc ~= "0" then error(tool .. " failed: " .. out:sub(-600), 0) end
  return tonumber(ns) / 1e9, ui.json_decode(read(stats)), read(flash)
end

local rows = {}
local function run(label, file, flash_in, want)
  local r = { label = label }
  for _, tool in ipairs({ "dfu-util", "mpctl" }) do
    local secs, st, flash = cell(tool, file, flash_in)
    if flash:sub(1, #want) ~= want then error(tool .. ": flash does not hold the image after " .. label, 0) end
    r[tool] = { secs = secs, st = st }
  end
  rows[#rows + 1] = r
  return r
end

io.stdout:write(string.format("image: %d KB MicroPython-like, one-sector change at 0x%08X\n", size // 1024, 0x08000000 + change))
run("full flash", fs.join(dir, "fw.bin"), nil, img)
local _, _, holding = cell("mpctl", fs.join(dir, "fw.bin"), nil)
run("reflash, one sector changed", fs.join(dir, "fw2.bin"), holding, img2)

io.stdout:write("\n| case | dfu-util s | mpctl s | mpctl / dfu-util | sectors erased (dfu-util / mpctl) | bytes moved (dfu-util / mpctl) |\n")
io.stdout:write("|---|---|---|---|---|---|\n")
for _, r in ipairs(rows) do
  local a, b = r["dfu-util"], r.mpctl
  io.stdout:write(string.format("| %s | %.2f | %.2f | %.2f | %d / %d | %d / %d |\n", r.label, a.secs, b.secs, b.secs / a.secs,
    a.st.sectors_erased, b.st.sectors_erased, a.st.bytes_out + a.st.bytes_in, b.st.bytes_out + b.st.bytes_in))
  mpctl.ui.event { event = "bench_dfu", case = r.label, dfu_util = a.secs, mpctl = b.secs, ratio = b.secs / a.secs }
end
fs.remove(dir, { recursive = true })
