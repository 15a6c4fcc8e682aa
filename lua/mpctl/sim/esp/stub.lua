-- mpctl.sim.esp.stub: the commands only the flasher stub has, answered as esptool's stub does
-- (anchors.md §3.1, serial-protocol.rst "Reading Flash"):
--  * ERASE_FLASH 0xD0 (no args), ERASE_REGION 0xD1 `<II` offset, size (4 KiB multiples);
--  * READ_FLASH 0xD2 `<IIII` offset, length, packet size, max un-acked packets: a normal
--    response, then raw SLIP frames of `packet size` bytes; the host acknowledges each with a
--    4-byte little-endian frame holding the total bytes received so far; once everything is
--    acknowledged the stub sends the 16-byte raw MD5 of the data read;
--  * RUN_USER_CODE 0xD3: leaves the stub and boots the app (no response).
-- Everything else the stub answers like the ROM handlers in rom.lua, with 2 status bytes and
-- its own 0xC* error codes; unknown opcodes get status 1, 0xFF (not implemented).
local rom = require("mpctl.sim.esp.rom")

local M = {}
local OP = rom.OP
local H = {}
M.handlers = H

local function bad(dev, cmd, code) dev:respond(cmd.op, 0, "", code) end

H[OP.ERASE_FLASH] = function(dev, cmd)
  dev:after_flash(function()
    dev:busy(dev.flash:erase_all())
    dev.files = nil           -- MicroPython's filesystem was in that flash too
    dev:persist()
    dev:respond(cmd.op, 0, "")
  end)
end

H[OP.ERASE_REGION] = function(dev, cmd)
  if #cmd.data < 8 then return bad(dev, cmd, 0xC0) end
  local offset, size = string.unpack("<I4I4", cmd.data)
  if offset % 4096 ~= 0 or size % 4096 ~= 0 then return bad(dev, cmd, 0xC2) end
  if offset + size > dev.flash.size then return bad(dev, cmd, 0xC4) end
  dev:after_flash(function()
    dev:busy(dev.flash:erase(offset, size))
    dev:persist()
    dev:respond(cmd.op, 0, "")
  end)
end

H[OP.READ_FLASH] = function(dev, cmd)
  if #cmd.data < 16 then return bad(dev, cmd, 0xC0) end
  local offset, length, packet, window = string.unpack("<I4I4I4I4", cmd.data)
  if packet == 0 or window == 0 then return bad(dev, cmd, 0xC0) end
  if offset + length > dev.flash.size then return bad(dev, cmd, 0xC4) end
  dev:after_flash(function()
    dev:respond(cmd.op, 0, "")
    dev.ld.reading = {
      offset = offset, length = length, packet = packet, window = window,
      sent = 0, acked = 0, md5 = dev.hash.new("md5"),
    }
    M.pump_read(dev)
  end)
end

H[OP.RUN_USER_CODE] = function(dev, _cmd)
  dev:reboot_after_output("flash", "run")
end

-- Send READ_FLASH packets while the window allows.
function M.pump_read(dev)
  local r = dev.ld.reading
  if not r then return end
  while r.sent < r.length and (r.sent - r.acked) < r.packet * r.window do
    local n = math.min(r.packet, r.length - r.sent)
    local data = dev.flash:read(r.offset + r.sent, n)
    r.md5:update(data)
    dev:busy(dev.flash:read_time(n))
    dev:send_frame(data)
    r.sent = r.sent + n
  end
  if r.acked >= r.length then
    dev:send_frame(r.md5:digest())
    dev.ld.reading = nil
  end
end

-- A frame received while READ_FLASH is streaming: the host's 4-byte acknowledgement.
-- Returns true when the frame was consumed as an acknowledgement.
function M.on_ack(dev, payload)
  local r = dev.ld.reading
  if not r or #payload ~= 4 then return false end
  local total = string.unpack("<I4", payload)
  if total > r.acked and total <= r.sent then r.acked = total end
  M.pump_read(dev)
  return true
end

return M
