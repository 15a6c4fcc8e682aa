--[[ mpctl.sim.usb.device: the part every simulated USB device shares — descriptors built from a
table, and the standard (USB 2.0 chapter 9) requests answered from them. Device models
(stm32_dfu.lua, dfu11.lua, cdc.lua, later an RP2040 in BOOTSEL) describe themselves with a table and
handle their class/vendor requests; this module answers GET_DESCRIPTOR, SET_CONFIGURATION,
GET_STATUS and friends so no model repeats them.

This is simulator code: it shares nothing with the client side (lua/mpctl/dfu, src/lusb.c), so a
mistake on one side cannot hide the same mistake on the other. Layouts: USB 2.0 spec §9.6.

  local dev = device.new{ vid=, pid=, bcd_device=, class=, max_packet0=, manufacturer=, product=,
                          serial=, configs = { { attributes=, max_power=, interfaces = {
                            { class=, subclass=, protocol=, name=, alts = { ... } or nil,
                              endpoints = { {address=, attributes=, max_packet=, interval=} },
                              extra = <class-specific descriptor bytes> } } } } }
  dev:descriptors()      -> device descriptor .. every configuration (the sysfs "descriptors" blob)
  dev:standard(setup, data) -> status, reply | nil (not a standard request)
]]
local M = {}
M.__index = M

local pack = string.pack

-- A string descriptor (type 3): UTF-16LE; ASCII is all the models use.
local function string_descriptor(s)
  local u = s:gsub(".", "%0\0")
  return pack("<BB", 2 + #u, 3) .. u
end

function M.new(t)
  local self = setmetatable({ t = t, strings = { }, config = 0, alt = {} }, M)
  self.i_manufacturer = t.manufacturer and self:string_index(t.manufacturer) or 0
  self.i_product = t.product and self:string_index(t.product) or 0
  self.i_serial = t.serial and self:string_index(t.serial) or 0
  return self
end

function M:string_index(s)
  for i, v in ipairs(self.strings) do if v == s then return i end end
  self.strings[#self.strings + 1] = s
  return #self.strings
end

function M:device_descriptor()
  local t = self.t
  return pack("<BBI2BBBBI2I2I2BBBB", 18, 1, t.usb_version or 0x0200, t.class or 0, t.subclass or 0,
    t.protocol or 0, t.max_packet0 or 64, t.vid, t.pid, t.bcd_device or 0x0100,
    self.i_manufacturer, self.i_product, self.i_serial, #t.configs)
end

-- Every alt setting of an interface: {alt settings} given, or the interface itself as alt 0.
local function alts_of(itf)
  return itf.alts or { itf }
end

function M:config_descriptor(index)
  local c = self.t.configs[index]
  local body = {}
  for n, itf in ipairs(c.interfaces) do
    for a, alt in ipairs(alts_of(itf)) do
      local eps = alt.endpoints or itf.endpoints or {}
      body[#body + 1] = pack("<BBBBBBBBB", 9, 4, n - 1, a - 1, #eps, alt.class or itf.class,
        alt.subclass or itf.subclass or 0, alt.protocol or itf.protocol or 0,
        alt.name and self:string_index(alt.name) or 0)
      body[#body + 1] = alt.extra or ""
      for _, ep in ipairs(eps) do
        body[#body + 1] = pack("<BBBBI2B", 7, 5, ep.address, ep.attributes, ep.max_packet, ep.interval or 0)
      end
    end
  end
  local rest = table.concat(body)
  return pack("<BBI2BBBBB", 9, 2, 9 + #(c.extra or "") + #rest, #c.interfaces, index, 0,
    c.attributes or 0x80, c.max_power or 50) .. (c.extra or "") .. rest
end

function M:descriptors()
  local out = { self:device_descriptor() }
  for i = 1, #self.t.configs do out[#out + 1] = self:config_descriptor(i) end
  return table.concat(out)
end

-- Answers chapter-9 requests (bmRequestType type bits 00). Returns status, reply; nil when the
-- request is not standard (the model handles it).
function M:standard(setup, data)
  local rt, req, value, index, length = string.unpack("<BBI2I2I2", setup)
  if (rt >> 5) & 3 ~= 0 then return nil end
  local function reply(s) return "ok", s:sub(1, length) end
  if req == 6 then -- GET_DESCRIPTOR
    local dtype, di = value >> 8, value & 0xff
    if dtype == 1 then return reply(self:device_descriptor()) end
    if dtype == 2 then
      if di >= #self.t.configs then return "stall" end
      return reply(self:config_descriptor(di + 1))
    end
    if dtype == 3 then
      if di == 0 then return reply(pack("<BBI2", 4, 3, 0x0409)) end -- LANGID: English (US)
      local s = self.strings[di]
      if not s then return "stall" end
      return reply(string_descriptor(s))
    end
    return "stall"
  elseif req == 0 then -- GET_STATUS: self-powered off, remote wakeup off
    return reply("\0\0")
  elseif req == 8 then -- GET_CONFIGURATION
    return reply(string.char(self.config))
  elseif req == 9 then -- SET_CONFIGURATION
    self.config = value
    return "ok"
  elseif req == 10 then -- GET_INTERFACE
    return reply(string.char(self.alt[index] or 0))
  elseif req == 11 then -- SET_INTERFACE
    self.alt[index] = value
    return "ok"
  elseif req == 1 or req == 3 then -- CLEAR_FEATURE / SET_FEATURE
    return "ok"
  end
  return "stall"
end

return M
