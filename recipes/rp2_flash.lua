--- Flash MicroPython onto a Raspberry Pi Pico / Pico W / Pico 2 (RP2040, RP2350) and prove it runs.
-- @option firmware: FILE|demo; image to write: .uf2, .elf or .bin (default: the release for the board; demo = a generated test image)
-- @option version: VERSION; release to download when firmware= is not given (default latest)
-- @option address: integer; where a .bin goes (default: the start of flash, 0x10000000)
-- @option method: picoboot|drive; how to write: PICOBOOT over USB (read first, verified; the default when the USB device can be opened) or a UF2 copied onto the BOOTSEL drive (no read-back)
-- @option drive: FILE; the BOOTSEL drive's folder (default: looked for under /media, /run/media and /mnt)
-- @option backup: FILE|flash; keep what was on flash first (PICOBOOT only): flash = a backup folder (what mpctl rollback restores), FILE = the whole flash as one raw file
-- @option verify: yes|no = yes; read back every sector written and compare (PICOBOOT)
-- @option repl: yes|no = yes; after the reboot, wait for MicroPython's USB port and run print('hello')
-- @option timeout: seconds = 15; how long to wait for the REPL after the reboot
-- @option wait: seconds = 120; how long to wait for a board to appear in BOOTSEL
-- @family: rp2
--
--   mpctl rp2_flash firmware=RPI_PICO-20250415-v1.25.0.uf2          (the one Pico in BOOTSEL)
--   mpctl rp2_flash --port /dev/ttyACM0 version=1.25.0                (a Pico running MicroPython: machine.bootloader())
--   mpctl rp2_flash --board RPI_PICO2 method=drive drive=/media/me/RP2350 firmware=fw.uf2
--   mpctl rp2_flash --port sim://pico firmware=demo                   (the simulated Pico)

local rp2 = require("mpctl.rp2.target")
local target, backup = mpctl.target, mpctl.backup

-- A simulated Pico (--port sim://pico): the whole command runs on the simulated bus from here,
-- so what follows is said once.
if arg.port and arg.port:match("^sim://") then target.simulated(arg.port) end

-- 1. Which board, which image: a UF2 for another chip is refused here, before any device is touched.
local board_id = arg.board
if not board_id then
  local why
  board_id, why = rp2.guess_board(arg.firmware)
  mpctl.log("no --board: assuming %s (%s; a Pico W or Pico 2 W needs --board)", board_id, why)
end
local board = mpctl.board(board_id)
if board.family ~= "rp2" then mpctl.usage_error(board.id .. " is not an RP2 board (family " .. board.family .. ")") end
local firmware = target.image(board, arg.firmware, arg.version, { address = tonumber(arg.address) })
local parts = firmware.parts
local first, last = target.extent(parts)
if first < board.offset or last > board.offset + board.flash_size then
  mpctl.fail(string.format("%s covers 0x%08X..0x%08X, outside %s's %d KiB of flash at 0x%08X; nothing was written",
    firmware.file, first, last, board.id, board.flash_size // 1024, board.offset))
end

-- Whatever happens from here on goes into the history (mpctl history, mpctl rollback).
local record <close> = mpctl.attempt { board = board.id, port = arg.port, firmware = target.image_record(firmware) }

-- 2. Into BOOTSEL: the board already there, or MicroPython told to go there, or the person.
local t <close> = target.connect(board, arg.port, { wait = arg.wait, method = arg.method, drive = arg.drive })
record:target(t)
local id = t:identify()
record.port = record.port or ("usb:" .. tostring(id.path))
record.method = id.method
mpctl.log("%s in BOOTSEL (usb %s at usb:%s, USB serial %s, board id %s), %d KiB flash at 0x%08X, writing over %s",
  board.id, id.usb, tostring(id.path), id.usb_serial or "?", id.id or "known once MicroPython runs", id.flash_size // 1024, id.flash_base,
  id.method == "drive" and ("the drive " .. id.drive) or "PICOBOOT")

-- 3. Refuse an image that does not fit, before anything is erased.
t:check_image(parts)

-- 4. Keep what was on flash: the same backup folder (or raw file) as for every family.
if arg.backup and id.method == "drive" then
  mpctl.fail("backup=" .. arg.backup .. ": the BOOTSEL drive cannot read the flash; use method=picoboot for a backup (nothing was written)")
end
record.backup = backup.flash_before(t, arg.backup)

-- 5. Write what changed, verify what was written (PICOBOOT); or copy the UF2 (drive: not read back).
local st = t:write(parts, { verify = arg.verify })
mpctl.verified(st, "flash reads back equal to the image")
if st.method == "drive" then
  mpctl.log("%d bytes copied to the BOOTSEL drive as a UF2 (%d bytes) in %.1f s; the boot ROM wrote them and rebooted " ..
    "(nothing was read back: the REPL below is the check)", st.raw, st.sent, st.seconds)
else
  mpctl.log("%d bytes at 0x%08X: %d of %d sectors erased and written, %d already held the image; %d bytes over USB, %.1f s",
    st.raw, first, st.sectors_erased, st.sectors, st.sectors_skipped, st.wire, st.seconds)
end
target.report(t, { parts = parts }, st)

-- 6. Reboot into MicroPython; its USB serial port (2E8A:0005) appears.
local app = t:reset_to_app { timeout = arg.timeout }
mpctl.log("MicroPython's USB serial port: %s", app)
-- an RP2040's id is its flash chip's, which only MicroPython shows (its ROM's serial is the same
-- on every board): the history and a station's "never twice" learn it here
record.device = record.device or t:identify().id

-- 7. Prove it runs: the same check as verify_repl.
if arg.repl then
  local port <close> = mpctl.serial.open(app, { baud = 115200 })
  local info = mpctl.repl.verify(port, { name = app, timeout = arg.timeout })
  -- the drive method has no read-back: the version the board reports is what says the new
  -- firmware runs (when the file says which version it is)
  if firmware.version and info.version then
    mpctl.check(info.version == firmware.version or info.version:find(firmware.version, 1, true) == 1,
      string.format("the board runs MicroPython %s, the version written", firmware.version),
      string.format("it reports %s", info.version))
  else
    mpctl.skip("the board reports the version written", firmware.version and "the board did not say its version" or
      "the firmware file does not say its version")
  end
  record.firmware.version = record.firmware.version or info.version
else
  mpctl.skip("REPL answers print('hello')", "repl=no")
end
