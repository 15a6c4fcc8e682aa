--[[ mpctl.sim.rp2.board: one simulated Pico (RP2040) or Pico 2 (RP2350) on the simulated USB bus:
the flash, the BOOTSEL drive folder, the counters, and which USB model is plugged in — the boot ROM
in BOOTSEL (mpctl.sim.usb.rp2_boot) or MicroPython's CDC port (mpctl.sim.usb.cdc as 2E8A:0005).

Options (Contract R, docs/simulators.md "RP2 boards"): start=bootsel|app, timing=on|off,
flash=FILE (loaded at start when it exists, saved at exit), drive=DIR, stats=FILE (JSON at exit),
fault=disconnect|stall with fault_at=N (the Nth PICOBOOT FLASH_ERASE/WRITE command), serial=S,
quiet=yes, node=PATH (the node binary MicroPython runs on), boards=N (more boards in BOOTSEL on
ports 2..N, own flash, no drive). Anything else is a usage error.

Leaving BOOTSEL (REBOOT, REBOOT2, a completed UF2 copy, a disconnect) takes the normal boot path:
MicroPython comes up when the flash holds an image the chip's ROM would boot (the rule is in
mpctl.sim.rp2.chips: RP2040 a boot2 whose CRC-32 matches, RP2350 an IMAGE_DEF block), else the
board is back in BOOTSEL and the log says why. machine.bootloader() in MicroPython brings BOOTSEL
back. The MicroPython port's strings are MicroPython's rp2 defaults (micropython
shared/tinyusb/mp_usbd.h: "MicroPython", "Board in FS mode", "Board CDC"), the id 2E8A:0005
(micropython ports/rp2/mpconfigport.h).
]]
local M = {}
M.__index = M

local function usage(name, msg, hint)
  require("mpctl.errors").raise("usage", "sim " .. name, msg, { hint = hint })
end

local KNOWN = { start = true, timing = true, flash = true, drive = true, stats = true, fault = true,
  fault_at = true, serial = true, quiet = true, node = true, boards = true }

local function check_opts(name, opts)
  for k in pairs(opts) do
    if not KNOWN[k] then
      local keys = {}
      for n in pairs(KNOWN) do keys[#keys + 1] = n end
      table.sort(keys)
      usage(name, "no option " .. tostring(k) .. "=", "options: " .. table.concat(keys, ", ") .. " (docs/simulators.md \"RP2 boards\")")
    end
  end
  local allowed = { start = { bootsel = true, app = true }, timing = { on = true, off = true },
    fault = { disconnect = true, stall = true }, quiet = { yes = true, no = true } }
  for k, set in pairs(allowed) do
    if opts[k] ~= nil and not set[tostring(opts[k])] then
      local keys = {}
      for v in pairs(set) do keys[#keys + 1] = v end
      table.sort(keys)
      usage(name, string.format("%s=%s is not known", k, tostring(opts[k])), k .. "= takes " .. table.concat(keys, "|"))
    end
  end
  local n = tonumber(opts.boards or 1)
  if not n or n < 1 or n > 8 or n % 1 ~= 0 then
    usage(name, "boards=" .. tostring(opts.boards) .. " is not a number of boards from 1 to 8", "e.g. boards=2")
  end
  if opts.fault and not tonumber(opts.fault_at) then
    usage(name, "fault=" .. opts.fault .. " needs fault_at=N", "e.g. fault_at=3: the third flash erase/write command")
  end
end

--- chip: mpctl.sim.rp2.chips entry; opts: the k=v options.
function M.new(chip, opts)
  check_opts(chip.sim, opts)
  local quiet = opts.quiet == "yes" or opts.quiet == true
  local log = quiet and function() end or function(msg) io.stderr:write("sim ", chip.sim, ": ", msg, "\n") end
  local flash = require("mpctl.sim.rp2.flash").new(chip.flash_size)
  if opts.flash then
    local fs = require("mpctl.fs")
    local img = fs.exists(opts.flash) and fs.read(opts.flash)
    if img then
      if #img > chip.flash_size then
        usage(chip.sim, string.format("flash=%s holds %d bytes, more than the %d-byte flash", opts.flash, #img, chip.flash_size),
          "give a flash image of at most " .. chip.flash_size .. " bytes")
      end
      flash:load(img)
    end
  end
  local self = setmetatable({ chip = chip, opts = opts, flash = flash, log = log, ram = {},
    timing = opts.timing == "on" or opts.timing == true, serial = opts.serial,
    fault_kind = opts.fault, fault = opts.fault, fault_at = tonumber(opts.fault_at),
    stats = { commands = 0, by_command = {} } }, M)
  if opts.drive then
    local drive = require("mpctl.sim.rp2.drive")
    drive.check(opts.drive)
    self.uf2 = require("mpctl.sim.rp2.uf2").new(chip, flash, log)
    self.drive = drive.new(opts.drive, chip, self.uf2, log)
  end
  return self
end

function M:bootsel()
  return require("mpctl.sim.usb.rp2_boot").new(self)
end

-- The board's unique id, which MicroPython's rp2 port gives as its USB serial number
-- (pico_get_unique_board_id): on an RP2040 the flash chip's unique id (the RP2040 has none of its
-- own: pico-examples issue #6), so it differs from the ROM's BOOTSEL serial; on an RP2350 the
-- chip's id, the same string its BOOTSEL device shows (picotool pull request #84).
function M:unique_id()
  if self.chip.name == "rp2040" then
    return self.serial or string.format("E6614C311B7A7A%02X", 0x36 + (self.index or 1))
  end
  return self.serial or self.chip.serial
end

-- MicroPython's CDC port, with machine.bootloader() leading back to BOOTSEL.
function M:app()
  return require("mpctl.sim.usb.cdc").new { vid = 0x2E8A, pid = 0x0005, bcd_device = 0x0100,
    product = "Board in FS mode", control_name = "Board CDC", data_name = "Board CDC",
    serial = self:unique_id(),
    log = self.log, node = self.opts.node, bootloader_name = "BOOTSEL boot ROM",
    on_bootloader = function() return self:bootsel() end }
end

--- The model after a reboot: kind "bootsel", or "boot" (the normal boot path).
function M:after_reboot(kind)
  if kind == "boot" then
    local ok, why = self.chip.valid(self.flash)
    if ok then
      self.log("flash holds a bootable image: MicroPython's CDC port 2E8A:0005")
      return self:app()
    end
    self.log("back in BOOTSEL: " .. why)
  end
  return self:bootsel()
end

--- The simulator entry `mpctl.sim.<name>` (pico, pico2) for a chip of mpctl.sim.rp2.chips.
function M.entry(name, chip)
  local E = { usb = true }
  function E.build(opts) return M.build(require("mpctl.sim.rp2.chips")[chip], opts) end
  --- `mpctl sim <name> [k=v ...] [-- COMMAND ...]` (called by cmd_sim with the parsed command line)
  function E.run(parsed) return require("mpctl.sim.usb.run").run(parsed, name, E.build) end
  return E
end

--- Builds the bus: returns host, save (run at exit: stats=FILE, flash=FILE).
function M.build(chip, opts)
  local board = M.new(chip, opts)
  local host = require("mpctl.sim.usb.host").new { log = board.log }
  local first = opts.start == "app" and board:app() or board:bootsel()
  host:plug(first, { port = 1 })
  -- boards=N: more boards in BOOTSEL on ports 2..N, each with its own (unsaved) flash and no drive.
  -- Every RP2040 shows the same BOOTSEL serial (the ROM builds it from its own revision, not the
  -- chip: usb_boot_device.c usb_boot_device_init), so only the port tells them apart; RP2350s differ.
  for i = 2, tonumber(opts.boards or 1) do
    local o = { quiet = opts.quiet, timing = opts.timing, node = opts.node }
    if chip.name == "rp2350" then o.serial = string.format("%s%02X", chip.serial:sub(1, -3), i) end
    local extra = M.new(chip, o)
    extra.index = i
    host:plug(extra:bootsel(), { port = i })
  end
  local function save()
    if opts.stats then
      local f = assert(io.open(opts.stats, "wb"))
      local s, fl = board.stats, board.flash
      f:write(require("mpctl.ui").json_encode { sectors_erased = fl.sectors_erased,
        bytes_programmed = fl.bytes_programmed, pages_programmed = fl.pages_programmed,
        bytes_read = fl.bytes_read, commands = s.commands, by_command = s.by_command,
        uf2_blocks = board.uf2 and board.uf2.stats.blocks or 0,
        uf2_blocks_written = board.uf2 and board.uf2.stats.written or 0,
        bytes_out = host.moved_out or 0, bytes_in = host.moved_in or 0, transfers = host.transfers or 0 }, "\n")
      f:close()
    end
    if board.drive then board.drive:unmount() end
    if not opts.flash then return end
    local tmp = opts.flash .. ".tmp"
    local f = assert(io.open(tmp, "wb"))
    f:write(board.flash:image())
    f:close()
    assert(os.rename(tmp, opts.flash))
  end
  return host, save, board
end

return M
