--[[ mpctl.sim.usb.dfu11: a plain USB DFU 1.1 device (no ST extensions), as a device model for
mpctl.sim.usb.host: the kind of DFU bootloader many boards (and MicroPython's mboot without DfuSe)
present. Used to check that mpctl and dfu-util also speak the spec without DfuSe.

DFU 1.1 (USB DFU class spec 1.1): DNLOAD blocks are numbered from 0 and written one after another
from the start of the image area; UPLOAD returns the image area in wLength pieces, a short piece
ends the upload; a zero-length DNLOAD ends the download (manifestation). Functional descriptor:
bmAttributes 0x07 (download, upload, manifestation tolerant), wDetachTimeOut 1000 ms,
wTransferSize 1024, bcdDFUVersion 0x0110. Ids: 1209:0001, the pid.codes test PID.
Memory: SIZE bytes of NOR-like storage erased on the first block of a download.
]]
local device = require("mpctl.sim.usb.device")
local dfu = require("mpctl.sim.usb.dfu_class")

local M = {}
M.__index = M

local ST = dfu.status
M.TRANSFER = 1024
M.SIZE = 256 * 1024

function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ opts = opts, mem = opts.mem or { data = "" }, writing = nil }, M)
  self.class = dfu.new(self)
  self.usb = device.new {
    vid = 0x1209, pid = 0x0001, bcd_device = 0x0100,
    manufacturer = "mpctl", product = "DFU 1.1 test device", serial = opts.serial or "DFU11-0001",
    configs = { { interfaces = { { class = 0xFE, subclass = 1, protocol = 2, name = "Image",
      extra = dfu.functional(0x07, 1000, M.TRANSFER, 0x0110) } } } },
  }
  return self
end

function M:download(block, data)
  if block == 0 then self.writing = {} end
  if not self.writing or block ~= #self.writing then return ST.errADDRESS end -- blocks in order
  local total = 0
  for _, b in ipairs(self.writing) do total = total + #b end
  if total + #data > M.SIZE then return ST.errADDRESS end
  self.writing[#self.writing + 1] = data
  return ST.OK, 0, 0
end

function M:manifest()
  if self.writing then
    self.mem.data = table.concat(self.writing)
    self.writing = nil
  end
  return 0, false
end

function M:upload(block, length)
  local d = self.mem.data
  return ST.OK, d:sub(block * length + 1, block * length + length)
end

function M:control(setup, data) return self.class:control(setup, data) end

return M
