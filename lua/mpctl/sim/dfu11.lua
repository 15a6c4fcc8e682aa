--[[ mpctl.sim.dfu11: a plain USB DFU 1.1 device (1209:0001, mpctl.sim.usb.dfu11) on a simulated
USB bus. `mpctl sim dfu11 [flash=FILE] -- COMMAND ...` runs COMMAND with the device plugged in.
flash=FILE: the image area is loaded from FILE at start (when it exists) and saved there at exit.
]]
local M = { usb = true }

function M.build(opts)
  local host = require("mpctl.sim.usb.host").new {
    log = (opts.quiet == "yes") and function() end or function(m) io.stderr:write("sim dfu11: ", m, "\n") end }
  local mem = { data = "" }
  if opts.flash then
    local f = io.open(opts.flash, "rb")
    if f then mem.data = f:read("a"); f:close() end
  end
  host:plug(require("mpctl.sim.usb.dfu11").new { mem = mem, serial = opts.serial }, { port = 1 })
  local function save()
    if not opts.flash then return end
    local f = assert(io.open(opts.flash .. ".tmp", "wb"))
    f:write(mem.data)
    f:close()
    assert(os.rename(opts.flash .. ".tmp", opts.flash))
  end
  return host, save
end

function M.run(parsed)
  return require("mpctl.sim.usb.run").run(parsed, "dfu11", M.build)
end

return M
