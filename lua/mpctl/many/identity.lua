-- mpctl.many.identity: who a board is, so that the same board is recognised when it comes back
-- under another name (a reset that re-enumerates /dev/ttyACM0 as /dev/ttyACM1, a cable moved to
-- the next port of the same hub) and so a station never flashes it twice.
--
-- Three facts, strongest last:
--   usb_path   where the device sits on the bus ("1-1.4": bus 1, root port 1, hub port 4), read
--              from sysfs (/sys/class/tty/NAME/device resolves to .../1-1.4/1-1.4:1.0); stable
--              while the cable stays in the same socket, whatever tty name the kernel hands out
--   usb        "VID:PID:SERIAL" from the USB descriptors (libserialport's list); unique per
--              device when the bridge has a real serial number (CP2102, FTDI, native USB
--              MicroPython boards: their serial is the chip's unique id)
--   device     the chip's own MAC / unique id, read over the wire once connected (mpctl.attempt
--              reports it as the `board` event): the board itself, whatever cable or port
-- A board's key is the strongest fact known; same() compares every fact both sides know.
local fs = require("mpctl.fs")

local M = {}

-- The USB location of a local tty ("1-1.4"), or of a usb:PATH port (a bootloader device without
-- a tty: the same board later comes back as a tty at that path), or nil (not USB, not Linux, a
-- pty, another URL).
function M.usb_path(port)
  local at = type(port) == "string" and port:match("^usb:(%d+%-[%d%.]+)$")
  if at then return at end
  local name = type(port) == "string" and port:match("^/dev/([%w_%-%.]+)$")
  if not name then return nil end
  local ok, real = pcall(fs.realpath, "/sys/class/tty/" .. name .. "/device")
  if not ok or type(real) ~= "string" then return nil end
  return M.usb_path_of(real)
end

-- The USB path in a sysfs device folder: the interface folder is "<path>:<config>.<interface>"
-- (the kernel's naming, Documentation/usb: "bus-port.port...:config.interface").
function M.usb_path_of(sysfs)
  return sysfs:match("/(%d+%-[%d%.]+):%d+%.%d+$")
end

-- The facts known before connecting, from a serial.list() row (or just the URL).
function M.of_port(url, row)
  local id = { port = url, usb_path = M.usb_path(url) }
  if row and row.vid then
    id.usb = string.format("%04X:%04X", row.vid, row.pid) .. (row.serial and (":" .. row.serial) or "")
    id.usb_serial = row.serial
  end
  return id
end

-- The key a board is filed under: device (MAC) when known, else USB serial, else USB path, else
-- the port's name (a simulator, an RFC 2217 URL: nothing better is known before connecting).
function M.key(id)
  if id.device then return "device:" .. id.device end
  if id.usb_serial then return "usb:" .. id.usb end
  if id.usb_path then return "usbpath:" .. id.usb_path end
  return "port:" .. tostring(id.port)
end

-- Whether a and b are the same board: a fact both know decides (device first: two boards can
-- share a USB path one after the other, never a MAC); with none in common, different.
function M.same(a, b)
  if a.device and b.device then return a.device == b.device end
  if a.usb_serial and b.usb_serial then return a.usb == b.usb end
  if a.usb_path and b.usb_path then return a.usb_path == b.usb_path end
  return a.port ~= nil and a.port == b.port
end

return M
