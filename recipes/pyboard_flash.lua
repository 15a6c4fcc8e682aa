--- Flash MicroPython onto a Pyboard or an STM32 board over USB DFU and prove it runs.
-- @option firmware: FILE|demo; image to write: .dfu, .hex or .bin (default: the release for the board; demo = a generated test image)
-- @option version: VERSION; release to download when firmware= is not given (default latest)
-- @option address: integer; where a .bin goes (default: the start of the board's flash, 0x08000000)
-- @option backup: FILE; save the whole flash to FILE first
-- @option verify: yes|no = yes; read back everything written and compare
-- @option repl: yes|no = yes; after leaving DFU, wait for MicroPython's USB port and run print('hello')
-- @option unprotect: yes|no = no; remove read protection first (the chip erases ALL of its flash)
-- @option timeout: seconds = 15; how long to wait for the REPL after leaving DFU
-- @option wait: seconds = 120; how long to wait for a board to appear in DFU mode
--
--   mpctl pyboard_flash firmware=PYBV11-20250415-v1.25.0.dfu
--   mpctl pyboard_flash --port usb:0483:df11 firmware=build/firmware.dfu
--   mpctl pyboard_flash --port /dev/ttyACM0 version=1.25.0     (a board running MicroPython: machine.bootloader())
--   mpctl pyboard_flash --port sim://pyboard firmware=demo     (the simulated Pyboard)

local dfu_target = require("mpctl.dfu.target")
local dfu_file = require("mpctl.dfu.file")
local time, fs = mpctl.time, mpctl.fs
local t0 = time.now()

local function on(v, default)
  if v == nil then return default end
  return v == true or v == "yes" or v == "on" or v == "true" or v == "1"
end

-- 1. Which board, which image: refused here, before any device is touched, when it is wrong.
local board = mpctl.board(arg.board or "PYBV11")
if board.family ~= "dfu" then mpctl.usage_error(board.id .. " is not a DFU board (family " .. board.family .. ")") end
local dfu_ids = {}
for _, u in ipairs(board.usb) do if u.mode == "dfu" then dfu_ids = u break end end
local parts, firmware
if arg.firmware == "demo" then
  local image = dfu_target.demo_image(board)
  parts = { { offset = board.offset, data = image, name = "demo image" } }
  firmware = { file = "demo image (generated)", sha256 = mpctl.hash.hex(mpctl.hash.sha256(image)) }
else
  if arg.firmware then
    if not fs.exists(arg.firmware) then mpctl.usage_error("firmware file " .. arg.firmware .. " not found") end
    firmware = { file = arg.firmware, path = arg.firmware, sha256 = mpctl.hash.file(arg.firmware, "sha256") }
  else
    firmware = mpctl.firmware.get(board, arg.version or "latest")
  end
  parts = dfu_file.load(firmware.path, { address = tonumber(arg.address), base = board.offset,
    vid = dfu_ids.vid, pid = dfu_ids.pid })
end
local size = 0
for _, p in ipairs(parts) do size = size + #p.data end
if board.flash_size and size > board.flash_size then
  mpctl.fail(string.format("%s is %d bytes, more than %s's %d KiB of flash", firmware.file, size, board.id, board.flash_size // 1024))
end

-- 2. Into the DFU bootloader: the DFU device present, or MicroPython told to go there, or the person.
local t <close> = dfu_target.connect { board = board, port = arg.port, log = mpctl.log,
  opts = { wait = tonumber(arg.wait) } }
local id = t:identify()
mpctl.log("%s in DFU mode (usb %s at usb:%s, serial %s), %d KiB flash at 0x%08X", board.id, id.usb, id.path,
  id.id or "?", id.flash_size // 1024, id.flash_base)

local record = { board = board.id, chip = board.chip, device = id.id, port = arg.port or ("usb:" .. id.path),
  firmware = { file = firmware.file, sha256 = firmware.sha256, version = firmware.version, path = firmware.path },
  result = "ok" }
local _ <close> = setmetatable({}, { __close = function(_, err)
  if err then
    local interrupted = type(err) == "table" and err.kind == "interrupted"
    record.result, record.error = interrupted and "interrupted" or "failed", tostring(type(err) == "table" and err.msg or err)
    record.offset = type(err) == "table" and err.offset or nil
    record.duration = time.now() - t0
    pcall(mpctl.history.record, record)
  end
end })

-- 3. Refuse an image that does not fit the device's memory map, before anything is erased.
t:check_image(parts)
if on(arg.unprotect, false) then
  mpctl.log("removing read protection: the chip erases all of its flash and resets")
  t:unprotect()
end

-- 4. Keep what was on flash.
if arg.backup then
  local data = t:read(id.flash_base, id.flash_size)
  fs.write(arg.backup, data) -- atomic: a temporary file renamed into place
  record.backup = { flash = arg.backup }
  mpctl.log("backup: %d KiB of flash saved to %s", #data // 1024, arg.backup)
end

-- 5. Write what changed, verify what was written.
local verify = on(arg.verify, true)
local st = t:write(parts, { verify = verify })
mpctl.check(not verify or st.verified, "flash reads back equal to the image")
mpctl.log("%d bytes at 0x%08X: %d sectors erased and written, %d already held the image; %d bytes over USB, %.1f s",
  st.raw, parts[1].offset, st.sectors_erased, st.sectors_skipped, st.wire, st.seconds)
mpctl.ui.event { event = "dfu_flash", board = board.id, bytes = st.raw, written = st.written, wire = st.wire,
  sectors_erased = st.sectors_erased, sectors_skipped = st.sectors_skipped, seconds = st.seconds,
  verified = st.verified }

-- 6. Leave DFU; the board starts MicroPython and shows its USB serial port.
local app = t:reset_to_app { timeout = tonumber(arg.timeout) or 15 }
mpctl.log("MicroPython's USB serial port: %s", app)

-- 7. Prove it runs: the same check as verify_repl.
if on(arg.repl, true) then
  local port <close> = mpctl.serial.open(app, { baud = 115200 })
  mpctl.repl.verify(port, { name = app, timeout = tonumber(arg.timeout) or 15 })
end
record.duration = time.now() - t0
mpctl.history.record(record)
