-- A port object for client-side unit tests: records control-line changes and writes, and
-- serves queued input. Implements the methods mpctl.slip and mpctl.esp use.
local M = {}
local P = {}
P.__index = P

function M.new(name)
  return setmetatable({ name = name or "fake", inbuf = "", written = {}, lines = {}, rate = 115200,
    dtr = false, rts = false, on_write = nil }, P)
end

function P:feed(bytes) self.inbuf = self.inbuf .. bytes end
function P:read(n, _timeout)
  local s = self.inbuf:sub(1, n)
  self.inbuf = self.inbuf:sub(n + 1)
  return s
end
function P:unread(s) self.inbuf = s .. self.inbuf end
function P:is_eof() return false end
function P:pending() return #self.inbuf end
function P:write(s)
  self.written[#self.written + 1] = s
  if self.on_write then self.on_write(self, s) end
  return #s
end
function P:flush_input() self.inbuf = "" end
function P:baud() return self.rate end
function P:set_baud(b)
  if self.refuse and b > self.refuse then error("serial " .. self.name .. ": baud " .. b .. " not supported", 0) end
  self.rate = b
end
function P:set_dtr(v) self.dtr = v; self.lines[#self.lines + 1] = { "dtr", v } end
function P:set_rts(v) self.rts = v; self.lines[#self.lines + 1] = { "rts", v } end
function P:set_signals(t)
  self.dtr, self.rts = t.dtr, t.rts
  self.lines[#self.lines + 1] = { "both", t.dtr, t.rts }
end

return M
