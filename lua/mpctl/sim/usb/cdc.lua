--[[ mpctl.sim.usb.cdc: MicroPython's stm32 USB CDC port (F055:9800, "Pyboard Virtual Comm Port"),
as a device model for mpctl.sim.usb.host, with the real MicroPython (the WebAssembly build from npm,
as mpctl.sim.micropython runs it) behind /dev/ttyACM0.

The USB side is the CDC ACM descriptor set (USB CDC 1.2 / PSTN: communication interface class 2
subclass 2 protocol 1 with header, call management, ACM and union functional descriptors and an
interrupt endpoint; data interface class 0x0A with two bulk endpoints). The bytes of the serial
stream do not travel as bulk URBs: like the kernel's cdc_acm driver, umockdev puts a tty node in
front of the interface (a pty), and this model pumps bytes between that pty and MicroPython.

machine.bootloader() / pyb.bootloader(): the WebAssembly build has no bootloader to jump to, so the
model watches what the client sends for that call (raw REPL or friendly) and, when it is executed,
drops off the bus and hands over to on_bootloader() (the ROM DFU model), as the firmware would.
Ids: micropython ports/stm32/mpconfigboard_common.h (F055:9800), anchors.md §3.5.
]]
local device = require("mpctl.sim.usb.device")

local M = {}
M.__index = M

local pack = string.pack

local function cdc_functional()
  return pack("<BBBI2", 5, 0x24, 0x00, 0x0110) -- header, bcdCDC 1.10
    .. pack("<BBBBB", 5, 0x24, 0x01, 0x00, 0x01) -- call management: data interface 1
    .. pack("<BBBB", 4, 0x24, 0x02, 0x02) -- ACM: line coding and serial state
    .. pack("<BBBBB", 5, 0x24, 0x06, 0x00, 0x01) -- union: master 0, slave 1
end

function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ opts = opts, log = opts.log or function() end, seen = "" }, M)
  -- vid/pid/bcd_device/product/control_name/data_name: another port's identity (the simulated
  -- Pico's MicroPython, 2E8A:0005: mpctl.sim.rp2.board); the Pyboard's by default
  self.usb = device.new {
    vid = opts.vid or 0xF055, pid = opts.pid or 0x9800, bcd_device = opts.bcd_device or 0x0200,
    class = 0xEF, subclass = 2, protocol = 1,
    manufacturer = "MicroPython", product = opts.product or "Pyboard Virtual Comm Port in FS Mode",
    serial = opts.serial or "3276345E3233",
    configs = { { attributes = 0x80, max_power = 250, interfaces = {
      { class = 2, subclass = 2, protocol = 1, name = opts.control_name or "Pyboard CDC control", extra = cdc_functional(),
        endpoints = { { address = 0x83, attributes = 3, max_packet = 8, interval = 255 } } },
      { class = 0x0A, subclass = 0, protocol = 0, name = opts.data_name or "Pyboard CDC data",
        endpoints = { { address = 0x01, attributes = 2, max_packet = 64 }, { address = 0x81, attributes = 2, max_packet = 64 } } },
    } } },
  }
  return self
end

-- Line coding requests from an ACM driver (SET_LINE_CODING 0x20, GET 0x21, SET_CONTROL_LINE_STATE 0x22).
function M:control(setup, data)
  local _, req, _, _, length = string.unpack("<BBI2I2I2", setup)
  if req == 0x20 then self.coding = data; return "ok" end
  if req == 0x21 then return "ok", (self.coding or pack("<I4BBB", 115200, 0, 0, 8)):sub(1, length) end
  if req == 0x22 then return "ok" end
  return "stall"
end

function M:on_plug(host, slot)
  local p = slot.syspath
  self.tty_syspath = p .. "/1-" .. slot.port .. ":1.0/tty/ttyACM0"
  host:add_child(table.concat({
    "P: " .. (p:gsub("^/sys", "")) .. "/1-" .. slot.port .. ":1.0",
    "E: SUBSYSTEM=usb", "E: DEVTYPE=usb_interface", "E: DRIVER=cdc_acm",
    "A: bInterfaceNumber=00\\n", "A: bInterfaceClass=02\\n", "A: bInterfaceSubClass=02\\n",
    "A: bInterfaceProtocol=01\\n", "A: interface=" .. (self.opts.control_name or "Pyboard CDC control") .. "\\n", "", }, "\n"))
  host:add_child(table.concat({
    "P: " .. (self.tty_syspath:gsub("^/sys", "")), "N: ttyACM0", "L: device=../../../1-" .. slot.port .. ":1.0",
    "E: SUBSYSTEM=tty", "E: DEVNAME=/dev/ttyACM0", "E: MAJOR=166", "E: MINOR=0", "", }, "\n"))
  local serial = require("mpctl.serial")
  local master, slave = host:dev_fd("/dev/ttyACM0")
  self.tty = serial.wrap_fd(master, "ttyACM0 (pty master)")
  if slave >= 0 then self.hold = serial.wrap_fd(slave, "ttyACM0 (held slave)") end
  self.mp = require("mpctl.sim.micropython").spawn { node = self.opts.node }
  self.log("MicroPython runs behind /dev/ttyACM0")
end

function M:on_unplug(host)
  if self.mp then require("mpctl.sim.micropython").stop(self.mp); self.mp = nil end
  if self.tty then pcall(self.tty.close, self.tty); self.tty = nil end
  if self.hold then pcall(self.hold.close, self.hold); self.hold = nil end
  if self.tty_syspath then pcall(host.remove, host, self.tty_syspath); self.tty_syspath = nil end
end

local BOOTLOADER_CALL = "bootloader()"

-- Moves bytes both ways without blocking; notices machine.bootloader() being run.
function M:pump()
  if not self.mp or self.gone then return end
  local ok, s = pcall(self.tty.read, self.tty, 65536, 0)
  if ok and s ~= "" then
    self.seen = (self.seen .. s):sub(-256)
    pcall(self.mp.port.write, self.mp.port, s, 5)
    -- executed: the raw REPL runs on Ctrl-D, the friendly one on Enter
    if self.seen:find(BOOTLOADER_CALL, 1, true) and (s:find("\4", 1, true) or s:find("\r", 1, true)) then
      self.bootloader = true
    end
  end
  local ok2, r = pcall(self.mp.port.read, self.mp.port, 65536, 0)
  if ok2 and r ~= "" then pcall(self.tty.write, self.tty, r, 5) end
  if not ok2 then
    -- MicroPython's soft reset ends the process: start a fresh one, as the board reboots
    require("mpctl.sim.micropython").stop(self.mp)
    self.mp = require("mpctl.sim.micropython").spawn { node = self.opts.node }
  end
end

function M:tick()
  if self.bootloader and self.opts.on_bootloader then
    self.bootloader = nil
    self.log("machine.bootloader(): back to the " .. (self.opts.bootloader_name or "ROM DFU bootloader"))
    return { unplug = true, replace = self.opts.on_bootloader() }
  end
end

return M
