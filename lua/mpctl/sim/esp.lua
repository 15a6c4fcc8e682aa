--[[ mpctl.sim.esp: simulated ESP32 / ESP32-S2 / -S3 / -C3 / -C6 / ESP8266 dev boards.

    mpctl sim esp32 --listen rfc2217://127.0.0.1:0 [k=v ...]   (prints the address it listens on)
    --port "sim://esp32?flash_file=board.bin&timing=off"      (same simulator behind sim://)

What is simulated (options and facts in docs/simulators.md), one module per part in esp/:
  * options.lua: the k=v options, checked;
  * boot.lua: the DTR/RTS auto-reset circuit (or the USB-Serial/JTAG reset logic);
  * rom.lua, stub.lua: the ROM serial bootloader and, after a stub upload, the flasher stub;
  * flash.lua: a SPI NOR flash with datasheet erase/program times, kept in a file if asked;
  * wire.lua: the UART both ways, paced at baud/10 bytes per second, noise on a baud mismatch;
  * faults.lua: seeded faults on the loader's frames (drop, corrupt, stall, reset; rx/tx);
  * app.lua: after a normal boot of a valid image, the real MicroPython REPL (WebAssembly)
    behind MicroPython's 260-byte input buffer;
  * device.lua: the board tying them together; session.lua: serving one connected port.
]]
local device = require("mpctl.sim.esp.device")
local session = require("mpctl.sim.esp.session")
local serve = require("mpctl.sim.serve")

local M = {}

M.new = device.new
M.Dev = device.Dev
M.USB_FS_BYTES_PER_S = device.USB_FS_BYTES_PER_S
M.parse_opts = require("mpctl.sim.esp.options").parse

-- One board for the simulator's life: every client (one after another) meets the same flash.
function M.serve(target, opts)
  local dev = device.new(opts)
  opts._name = "sim esp"
  local ok, err = pcall(serve.serve, target, opts, function(port) session.run(dev, port) end,
    { after = function() dev:persist() end })
  dev:close()
  if not ok then error(err, 0) end
  return 0
end

-- Per-chip entry points (mpctl.sim.esp32 etc.).
function M.for_chip(key)
  local function with_chip(opts)
    opts = opts or {}
    opts.chip = opts.chip or key
    return opts
  end
  return {
    serve = function(target, opts) return M.serve(target, with_chip(opts)) end,
    new = function(opts) return M.new(with_chip(opts)) end,
  }
end

return M
