--- RP2040 flashing: PICOBOOT vs the BOOTSEL drive, full flash and a reflash after a one-sector change, on the simulated Pico (timing on), with ratios.
-- @option size: image size in KB (default 650)
-- @option change: offset of the one-sector change for the reflash (default 0x50000)
--
-- Run: mpctl --allow-exec bench/rp2_flash.lua [size=650]
-- Each cell runs `mpctl sim pico timing=on flash=F stats=S [drive=D] -- sh -c 'mpctl rp2_flash ...'`:
-- the RP2040 boot ROM model with the W25Q16JV's typical times (4 KiB sector erase 45 ms, page
-- program 0.4 ms: lua/mpctl/sim/rp2/flash.lua), served through umockdev; wall time is taken inside
-- the simulator session (start of rp2_flash to its exit: BOOTSEL found, written, rebooted, the CDC
-- port seen; repl=no), so the simulator's own start is excluded. The image is a MicroPython-sized
-- bootable UF2 (mpctl.rp2.target.demo_image made into a UF2 by mpctl.rp2.uf2). Full flash: blank
-- flash. Reflash: the board already holds the image; a copy with 16 bytes changed at `change` is
-- flashed again. PICOBOOT: read each sector first, erase and write only those that differ, read
-- back what was written; the drive: the whole UF2 copied, the boot ROM erases and programs every
-- page it gets (no read-back, no skipping: the ROM has no way to know what is there already).
-- Sectors erased and bytes moved over USB come from the simulator (stats=). Prints the table;
-- never pass/fail on time.

local fs, ui = mpctl.fs, mpctl.ui
local uf2 = require("mpctl.rp2.uf2")
local size = (tonumber(arg.size) or 650) * 1024
local change = tonumber(arg.change or "0x50000")
local exe = mpctl.exe

local dir = fs.tmpdir()
local function write(path, data) local f = assert(io.open(path, "wb")); f:write(data); f:close() end
local function read(path) local f = io.open(path, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local board = mpctl.board("RPI_PICO")
local img = require("mpctl.rp2.target").demo_image(board, size, 42)
local img2 = img:sub(1, change) .. string.rep("\x5a", 16) .. img:sub(change + 17)
write(fs.join(dir, "fw.uf2"), uf2.build({ { offset = 0x10000000, data = img } }, { family = uf2.FAMILY.RP2040 }))
write(fs.join(dir, "fw2.uf2"), uf2.build({ { offset = 0x10000000, data = img2 } }, { family = uf2.FAMILY.RP2040 }))

-- One cell: rp2_flash by `method` on the simulator holding `flash_in` (nil: blank); returns
-- seconds, the simulator's stats, the flash afterwards.
local function cell(method, file, flash_in)
  local flash = fs.join(dir, "flash.bin")
  os.remove(flash)
  if flash_in then write(flash, flash_in) end
  local stats = fs.join(dir, "stats.json")
  local drive = fs.join(dir, "drive")
  local extra = method == "drive" and (" drive=" .. q(drive)) or ""
  local inner = "s=$(date +%s%N); " .. q(exe) .. " rp2_flash repl=no method=" .. method .. extra .. " firmware=" .. q(file) ..
    " >/dev/null 2>&1; rc=$?; e=$(date +%s%N); echo ELAPSED $((e-s)) $rc"
  local cmd = string.format("%s sim pico quiet=yes timing=on flash=%s stats=%s%s -- sh -c %s 2>&1",
    q(exe), q(flash), q(stats), method == "drive" and (" drive=" .. q(drive)) or "", q(inner))
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local ns, rc = out:match("ELAPSED (%d+) (%d+)")
  if not ns or rc ~= "0" then error(method .. " failed: " .. out:sub(-600), 0) end
  return tonumber(ns) / 1e9, ui.json_decode(read(stats)), read(flash)
end

local rows = {}
local function run(label, method, file, flash_in, want)
  local secs, st, flash = cell(method, file, flash_in)
  if flash:sub(1, #want) ~= want then error(method .. ": flash does not hold the image after " .. label, 0) end
  rows[#rows + 1] = { label = label, method = method, secs = secs, st = st, uf2_bytes = #read(file) }
  return flash
end

io.stdout:write(string.format("image: %d KB bootable RP2040 image as a %d-block UF2, one-sector change at 0x%08X\n",
  size // 1024, (size + 255) // 256, 0x10000000 + change))
local holding = run("full flash", "picoboot", fs.join(dir, "fw.uf2"), nil, img)
run("full flash", "drive", fs.join(dir, "fw.uf2"), nil, img)
run("reflash, one sector changed", "picoboot", fs.join(dir, "fw2.uf2"), holding, img2)
run("reflash, one sector changed", "drive", fs.join(dir, "fw2.uf2"), holding, img2)

local full = rows[1].secs
io.stdout:write("\n| case | method | wall s | / full PICOBOOT | sectors erased | pages programmed | bytes moved |\n")
io.stdout:write("|---|---|---|---|---|---|---|\n")
for _, r in ipairs(rows) do
  -- bytes moved: over USB for PICOBOOT (the simulator's count, both directions); the UF2 file for
  -- the drive (the simulated drive is a folder, so the copy does not cross the USB model)
  local moved = r.method == "drive" and r.uf2_bytes or (r.st.bytes_out or 0) + (r.st.bytes_in or 0)
  io.stdout:write(string.format("| %s | %s | %.2f | %.2f | %d | %d | %d%s |\n", r.label, r.method, r.secs, r.secs / full,
    r.st.sectors_erased, r.st.pages_programmed or 0, moved, r.method == "drive" and " (UF2 file)" or " (USB)"))
  ui.event { event = "bench_rp2", case = r.label, method = r.method, seconds = r.secs, ratio = r.secs / full,
    sectors_erased = r.st.sectors_erased, bytes = (r.st.bytes_out or 0) + (r.st.bytes_in or 0) }
end
io.stdout:write(string.format("\nreflash after a one-sector change over PICOBOOT: %.3f x a full PICOBOOT flash (target <= 0.15)\n",
  rows[3].secs / full))
fs.remove(dir, { recursive = true })
