--- Flash MicroPython onto a Pyboard or an STM32 board over USB DFU and prove it runs.
-- @option firmware: FILE|demo; image to write: .dfu, .hex or .bin (default: the release for the board; demo = a generated test image)
-- @option version: VERSION; release to download when firmware= is not given (default latest)
-- @option address: integer; where a .bin goes (default: the start of the board's flash, 0x08000000)
-- @option backup: FILE|flash; keep what was on flash first: flash = a backup folder (what mpctl rollback restores), FILE = the whole flash as one raw file
-- @option verify: yes|no = yes; read back everything written and compare
-- @option repl: yes|no = yes; after leaving DFU, wait for MicroPython's USB port and run print('hello')
-- @option unprotect: yes|no = no; remove read protection first (the chip erases ALL of its flash)
-- @option timeout: seconds = 15; how long to wait for the REPL after leaving DFU
-- @option wait: seconds = 120; how long to wait for a board to appear in DFU mode
-- @family: dfu
-- @option test: yes|no = no; after the REPL check, run mpctl's starter post-flash test (LED, temperature, filesystem, memory)
--
--   mpctl pyboard_flash firmware=PYBV11-20250415-v1.25.0.dfu
--   mpctl pyboard_flash --port usb:0483:df11 firmware=build/firmware.dfu
--   mpctl pyboard_flash --port /dev/ttyACM0 version=1.25.0     (a board running MicroPython: machine.bootloader())
--   mpctl pyboard_flash --port sim://pyboard firmware=demo     (the simulated Pyboard)

local target, backup = mpctl.target, mpctl.backup

-- 1. Which board, which image: refused here, before any device is touched, when it is wrong.
local board = mpctl.board(arg.board or "PYBV11")
if board.family ~= "dfu" then mpctl.usage_error(board.id .. " is not a DFU board (family " .. board.family .. ")") end
local firmware = target.image(board, arg.firmware, arg.version, { address = tonumber(arg.address) })
local parts = firmware.parts
local size = 0
for _, p in ipairs(parts) do size = size + #p.data end
if board.flash_size and size > board.flash_size then
  mpctl.fail(string.format("%s is %d bytes, more than %s's %d KiB of flash", firmware.file, size, board.id, board.flash_size // 1024))
end

-- Whatever happens from here on goes into the history (mpctl history, mpctl rollback).
local record <close> = mpctl.attempt { board = board.id, port = arg.port, firmware = target.image_record(firmware) }

-- 2. Into the DFU bootloader: the DFU device present, or MicroPython told to go there, or the person.
local t <close> = target.connect(board, arg.port, { wait = arg.wait })
record:target(t)
local id = t:identify()
record.port = record.port or ("usb:" .. id.path)
mpctl.log("%s in DFU mode (usb %s at usb:%s, serial %s), %d KiB flash at 0x%08X", board.id, id.usb, id.path,
  id.id or "?", id.flash_size // 1024, id.flash_base)

-- 3. Refuse an image that does not fit the device's memory map, before anything is erased.
t:check_image(parts)
if arg.unprotect then
  mpctl.log("removing read protection: the chip erases all of its flash and resets")
  t:unprotect()
end

-- 4. Keep what was on flash: the same backup folder (or raw file) as for every family.
record.backup = backup.flash_before(t, arg.backup)

-- 5. Write what changed, verify what was written.
local st = t:write(parts, { verify = arg.verify })
mpctl.verified(st, "flash reads back equal to the image")
mpctl.log("%d bytes at 0x%08X: %d sectors erased and written, %d already held the image; %d bytes over USB, %.1f s",
  st.raw, parts[1].offset, st.sectors_erased, st.sectors_skipped, st.wire, st.seconds)
mpctl.ui.event { event = "dfu_flash", board = board.id, bytes = st.raw, written = st.written, wire = st.wire,
  sectors_erased = st.sectors_erased, sectors_skipped = st.sectors_skipped, seconds = st.seconds,
  verified = st.verified }

-- 6. Leave DFU; the board starts MicroPython and shows its USB serial port.
local app = t:reset_to_app { timeout = arg.timeout }
mpctl.log("MicroPython's USB serial port: %s", app)

-- 7. Prove it runs: the same check as verify_repl.
if arg.repl then
  local port <close> = mpctl.serial.open(app, { baud = 115200 })
  local info = mpctl.repl.verify(port, { name = app, timeout = arg.timeout, test = arg.test, board = board })
  record.firmware.version = record.firmware.version or info.version
else
  mpctl.skip("REPL answers print('hello')", "repl=no")
end
