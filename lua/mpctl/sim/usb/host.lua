--[[ mpctl.sim.usb.host: a simulated USB bus served through umockdev (src/lusbsim.c does the usbfs
ioctls). Device models plug into ports of a root hub; every client that runs with the umockdev
preload and UMOCKDEV_DIR (libusb, dfu-util, lsusb, mpctl itself) sees them as real devices.

  local host = require("mpctl.sim.usb.host").new{ log = fn }
  local slot = host:plug(model, { port = 1 })   -- enumerates; uevent "add"
  host:unplug(slot)                             -- uevent "remove"; the model's open handles get ENODEV
  host:step(timeout)                            -- serves one request (or waits up to timeout)
  host:close()

The model interface (docs/simulators.md, "USB device models"):
  model.usb                         -- a mpctl.sim.usb.device (descriptors, standard requests)
  model:control(setup, data)        -- class/vendor control request: setup = 8 bytes; data = OUT
                                    --   bytes or nil for IN. Returns "ok", reply | "stall" | "nodev"
  model:bulk_out(ep, data)          -- returns "ok" | "stall" | "nodev"
  model:bulk_in(ep, length)         -- returns "ok", data | "stall" | "nodev"
  model:set_alt(iface, alt)         -- optional; returns "ok" | "stall"
  model:reset() / model:clear_halt(ep)   -- optional
  model:tick(now)                   -- optional, called every loop: returns nil, or an action:
                                    --   { unplug = true, replace = <new model> | nil }
  model:on_plug(host, slot) / model:on_unplug(host, slot)   -- optional (a tty behind a CDC model)
  model.gone                        -- true: every request answers "nodev" (a disconnect)
]]
local usbsim = require("mpctl.usbsim")
local time = require("mpctl.time")

local device = require("mpctl.sim.usb.device")

local M = {}
M.__index = M

local BUS = 1

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ slots = {}, next_devnum = 2, children = {}, tty_minors = {},
    log = opts.log or function() end }, M)
  self.tb = usbsim.testbed()
  -- the root hub: no device node (nothing opens it), but it makes 1-N paths and parents real
  local hub = device.new { vid = 0x1d6b, pid = 0x0002, class = 9, protocol = 1, bcd_device = 0x0601,
    configs = { { attributes = 0xe0, max_power = 0, interfaces = { { class = 9,
      endpoints = { { address = 0x81, attributes = 3, max_packet = 4, interval = 12 } } } } } } }
  self.tb:add(table.concat({
    "P: /devices/usb1", "E: SUBSYSTEM=usb", "E: DEVTYPE=usb_device", "E: DRIVER=usb",
    "A: busnum=1\\n", "A: devnum=1\\n", "A: speed=480\\n", "A: bConfigurationValue=1\\n",
    "A: idVendor=1d6b\\n", "A: idProduct=0002\\n", "H: descriptors=" .. hex(hub:descriptors()), "" }, "\n"))
  return self
end

function M:root() return self.tb:root() end

-- umockdev's text format: one device; the node under /dev is what libusb opens (usbfs).
local function sysfs_text(dev, port, devnum)
  local t = dev.t
  local lines = {
    "P: /devices/usb1/1-" .. port,
    string.format("N: bus/usb/%03d/%03d", BUS, devnum),
    "E: SUBSYSTEM=usb", "E: DEVTYPE=usb_device", "E: DRIVER=usb",
    string.format("E: DEVNAME=/dev/bus/usb/%03d/%03d", BUS, devnum),
    string.format("E: BUSNUM=%03d", BUS), string.format("E: DEVNUM=%03d", devnum),
    string.format("E: PRODUCT=%x/%x/%x", t.vid, t.pid, t.bcd_device or 0x100),
    string.format("A: busnum=%d\\n", BUS), string.format("A: devnum=%d\\n", devnum),
    "A: speed=12\\n", "A: bConfigurationValue=1\\n",
    string.format("A: idVendor=%04x\\n", t.vid), string.format("A: idProduct=%04x\\n", t.pid),
    string.format("A: bcdDevice=%04x\\n", t.bcd_device or 0x100),
    "A: devpath=" .. port .. "\\n",
  }
  for _, k in ipairs({ "manufacturer", "product", "serial" }) do
    if t[k] then lines[#lines + 1] = "A: " .. k .. "=" .. t[k] .. "\\n" end
  end
  lines[#lines + 1] = "H: descriptors=" .. hex(dev:descriptors())
  lines[#lines + 1] = ""
  return table.concat(lines, "\n")
end

--- Plugs model into a root-hub port; returns its slot.
function M:plug(model, opts)
  opts = opts or {}
  local port = opts.port or 1
  local devnum = self.next_devnum
  self.next_devnum = devnum + 1
  local node = string.format("/dev/bus/usb/%03d/%03d", BUS, devnum)
  local slot = { model = model, port = port, devnum = devnum, node = node,
    syspath = "/sys/devices/usb1/1-" .. port }
  -- attach first, so a client reacting to the "add" uevent finds the node served
  slot.id = self.tb:attach(node)
  self.tb:add(sysfs_text(model.usb, port, devnum))
  self.slots[slot.id] = slot
  if model.on_plug then model:on_plug(self, slot) end
  self.log(string.format("plugged %04x:%04x at usb:1-%d (%s)", model.usb.t.vid, model.usb.t.pid, port, node))
  return slot
end

function M:unplug(slot)
  if not self.slots[slot.id] then return end
  self.slots[slot.id] = nil
  slot.model.gone = true
  if slot.model.on_unplug then pcall(slot.model.on_unplug, slot.model, self, slot) end
  self.tb:detach(slot.id)
  -- umockdev 0.17's remove_device does not recurse: the entries below the device (a CDC
  -- interface, its tty) go first, deepest (last added) first, or their /sys/bus links stay and
  -- the next add of the same interface name aborts umockdev
  local prefix = slot.syspath .. "/"
  for i = #self.children, 1, -1 do
    local c = self.children[i]
    if c.syspath:sub(1, #prefix) == prefix then
      table.remove(self.children, i)
      self.tb:remove(c.syspath)
      -- without a "dev" attribute umockdev leaves the node; the kernel would not
      if c.node then os.remove(self.tb:root() .. c.node) end
    end
  end
  self.tb:remove(slot.syspath)
  os.remove(self.tb:root() .. slot.node) -- umockdev keeps the node; the kernel would not
  self.log(string.format("unplugged usb:1-%d", slot.port))
end

--- Adds a sysfs/dev entry below a plugged device (e.g. the tty of a CDC interface); unplugging the
--- device removes it (and its node, named by an "N: " line).
function M:add_child(text)
  local syspath = self.tb:add(text)
  local node = text:match("\nN: ([^\n=]+)")
  self.children[#self.children + 1] = { syspath = syspath, node = node and ("/dev/" .. node) }
  return syspath
end

--- The next free minor of a tty driver ("ttyACM" -> "ttyACM0", 0; then "ttyACM1", 1; ...).
--- Linux gives a re-enumerated CDC ACM port the lowest minor nobody holds, so a board that
--- comes back usually gets /dev/ttyACM0 again, and /dev/ttyACM1 while the old node is still
--- open. umockdev 0.17 cannot give the name back: remove_device() leaves the node's pty in its
--- table (dev_fd) and a second add of the same node fails an assertion and aborts the whole
--- simulator. So each appearance in one run takes a minor never used before, which is what
--- Linux does while a client still holds the old node; clients find the port by its USB id
--- through sysfs (mpctl.usb tty_of), never by assuming ttyACM0.
function M:tty_minor(driver)
  local n = self.tty_minors[driver] or 0
  self.tty_minors[driver] = n + 1
  return driver .. n, n
end
function M:dev_fd(node) return self.tb:dev_fd(node) end
function M:remove(syspath) self.tb:remove(syspath) end

local function dispatch(model, req)
  if model.gone then return "nodev" end
  local op = req.op
  if op == "control" then
    local st, reply = model.usb:standard(req.setup, req.data)
    if st == nil then
      if not model.control then return "stall" end
      st, reply = model:control(req.setup, req.data)
    end
    return st, reply
  elseif op == "bulk" then
    if req.ep & 0x80 ~= 0 then
      if not model.bulk_in then return "stall" end
      return model:bulk_in(req.ep, req.length)
    end
    if not model.bulk_out then return "stall" end
    return model:bulk_out(req.ep, req.data)
  elseif op == "set_alt" then
    model.usb.alt[req.iface] = req.alt
    if model.set_alt then return model:set_alt(req.iface, req.alt) end
    return "ok"
  elseif op == "reset" then
    if model.reset then return model:reset() end
    return "ok"
  elseif op == "clear_halt" then
    if model.clear_halt then return model:clear_halt(req.ep) end
    return "ok"
  end
  return "ok" -- claim / release
end

--- Serves one request (waiting up to timeout for it) and runs the models' timers.
function M:step(timeout)
  local req = self.tb:next(timeout or 0)
  if req then
    local slot = self.slots[req.id]
    local st, reply = "nodev", nil
    if slot then
      local ok, a, b = pcall(dispatch, slot.model, req)
      if ok then st, reply = a or "ok", b
      else
        io.stderr:write("sim usb: model error: ", tostring(a), "\n")
        st = "stall"
      end
    end
    self.tb:reply(st, reply)
    -- what crossed the bus (for the bench): data stages only, not setup packets
    self.moved_out = (self.moved_out or 0) + (req.data and #req.data or 0)
    self.moved_in = (self.moved_in or 0) + (reply and #reply or 0)
    self.transfers = (self.transfers or 0) + 1
  end
  local now = time.now()
  local due = {}
  for _, slot in pairs(self.slots) do
    if slot.model.pump then slot.model:pump() end
    if slot.model.tick then
      local action = slot.model:tick(now)
      if action and action.unplug then due[#due + 1] = { slot, action } end
    end
  end
  -- (re-)plugging changes self.slots: done after the walk over it
  for _, d in ipairs(due) do
    self:unplug(d[1])
    if d[2].replace then self:plug(d[2].replace, { port = d[1].port }) end
  end
  return req ~= nil
end

function M:close()
  for _, slot in pairs(self.slots) do
    if slot.model.on_unplug then pcall(slot.model.on_unplug, slot.model, self, slot) end
  end
  self.slots = {}
  if self.tb then self.tb:close(); self.tb = nil end
end
M.__close = M.close

return M
