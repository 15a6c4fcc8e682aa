--[[ mpctl.sim.pyboard: a simulated Pyboard (STM32F405) on a simulated USB bus (umockdev).

    mpctl sim pyboard -- COMMAND ...     runs COMMAND with the board plugged in; its exit status is ours
    mpctl sim pyboard                    serves until Ctrl-C; prints the environment a client needs
    options (k=v before --): start=dfu|app  timing=on|off  fault=stall|error|disconnect fault_at=N seed=S
                             flash=FILE (loaded at start when it exists, saved at exit)  serial=S
                             boards=N (N ROM bootloaders on ports 1..N)  stats=FILE (sectors erased, bytes programmed, bytes moved: JSON at exit)
                             trace=FILE (the CDC port's bytes with the simulator's clock)  cdc_flow=none|rts  cdc_rx=1024

timing: the ROM's erase/program times are off unless timing=on; the CDC port (MicroPython) is paced
at USB full-speed CDC rates (486 KiB/s to the board, 506 KiB/s from it) unless timing=off.

The board starts in its ROM DFU bootloader (the DFU/BOOT0 jumper at 3V3): 0483:DF11, model in
mpctl.sim.usb.stm32_dfu. After a DfuSe leave with a valid vector table at 0x08000000 it re-enumerates
as MicroPython's CDC port F055:9800 (/dev/ttyACM0) with the real MicroPython (WebAssembly, npm) on it
(mpctl.sim.usb.cdc); machine.bootloader() there brings the ROM back. Any libusb program run under it
(dfu-util, lsusb, mpctl) sees the board as real hardware: docs/simulators.md.
]]
local M = { usb = true }

local function log_to_stderr(quiet)
  if quiet then return function() end end
  return function(msg) io.stderr:write("sim pyboard: ", msg, "\n") end
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Builds the board: returns host, and a function that saves the flash.
function M.build(opts)
  local host_mod = require("mpctl.sim.usb.host")
  local stm32 = require("mpctl.sim.usb.stm32_dfu")
  local cdc = require("mpctl.sim.usb.cdc")
  local log = log_to_stderr(opts.quiet == "yes" or opts.quiet == true)
  cdc.check(opts) -- the CDC port's options, refused now rather than after a DFU leave
  local host = host_mod.new { log = log }
  local flash = stm32.new_flash()
  if opts.flash then
    local img = read_file(opts.flash)
    if img then
      for p = 0, #img // 2048 - 1 do
        local page = img:sub(p * 2048 + 1, p * 2048 + 2048)
        if page ~= string.rep("\255", 2048) then flash.pages[p] = page end
      end
    end
  end
  local rom_opts = {}
  for k, v in pairs(opts) do rom_opts[k] = v end
  rom_opts.flash = flash
  local function rom(f)
    local o = {}
    for k, v in pairs(rom_opts) do o[k] = v end
    o.flash = f
    return stm32.new(o)
  end
  rom_opts.next_model = function(f)
    return cdc.new { serial = opts.serial, log = log, node = opts.node, heapsize = opts.heapsize,
      timing = opts.timing, trace = opts.trace, cdc_flow = opts.cdc_flow, cdc_rx = opts.cdc_rx,
      on_bootloader = function() return rom(f) end }
  end
  if opts.start == "app" then
    host:plug(rom_opts.next_model(flash), { port = 1 })
  else
    host:plug(stm32.new(rom_opts), { port = 1 })
  end
  -- boards=N: more ROM bootloaders on ports 2..N (own flash, serials ...0002, ...), for tests of
  -- "several DFU devices: name one"
  for i = 2, tonumber(opts.boards) or 1 do
    local o = {}
    for k, v in pairs(rom_opts) do o[k] = v end
    o.flash, o.serial = stm32.new_flash(), string.format("3276345E%04d", i)
    host:plug(stm32.new(o), { port = i })
  end
  local function save()
    if opts.stats then
      -- stats=FILE: what the board saw, as one JSON line (bench/dfu_flash.lua)
      local f = assert(io.open(opts.stats, "wb"))
      f:write(require("mpctl.ui").json_encode { sectors_erased = flash.sectors_erased,
        bytes_programmed = flash.bytes_programmed, bytes_out = host.moved_out or 0, bytes_in = host.moved_in or 0,
        transfers = host.transfers or 0 }, "\n")
      f:close()
    end
    if not opts.flash then return end
    local tmp = opts.flash .. ".tmp"
    local f = assert(io.open(tmp, "wb"))
    f:write(stm32.flash_read(flash, 0x08000000, 1024 * 1024))
    f:close()
    assert(os.rename(tmp, opts.flash))
  end
  return host, save, flash
end

--- `mpctl sim pyboard [k=v ...] [-- COMMAND ...]` (called by cmd_sim with the parsed command line).
function M.run(parsed)
  return require("mpctl.sim.usb.run").run(parsed, "pyboard", M.build)
end

return M
