-- mpctl.sim.esp.wire: the UART line between the host's USB-UART bridge and the chip, both ways.
--
--  * Output: what the chip sends is queued with the time it may start (after the CPU work that
--    produced it) and written at the line rate, baud/10 bytes per second for 8N1 (anchors §2.1),
--    in pieces of ~4 ms so a reader sees a steady stream. The queue also carries the chip's own
--    steps that must happen after earlier output: a baud change once its reply is out, a reboot,
--    a callback.
--  * Input: bytes from the host land in the chip's UART one byte time after another at the
--    host's rate, whatever mode the chip is in (loader or application); land(now) returns what
--    has landed by now. What the chip does with it (the loader's SLIP decoder, MicroPython's
--    stdin buffer) is the caller's business.
--  * Host and chip at different rates (or a bridge asked for more than it can do): output
--    arrives as noise of the same length, input is lost (the caller checks line_ok).
--  * wire=off (timing=off): no pacing at all, for fast functional tests.
-- Rates come from dev:wire_rate("in"|"out") so a native USB port can run at USB speed instead.
local time = require("mpctl.time")

local M = {}
local W = {}
W.__index = W

-- dev provides wire_rate(dir), line_ok(), noise(n), boot(mode, cause), log(fmt, ...),
-- stats.bytes_out; paced = whether to pace at all.
function M.new(dev, paced)
  local self = setmetatable({ dev = dev, paced = paced }, W)
  self:clear()
  return self
end

-- Power cycle: nothing queued, nothing in flight.
function W:clear()
  self.out, self.out_head = {}, 1
  self.out_free = 0          -- when the output line is free again
  self.landing = {}          -- { data, t0, t1 } chunks on their way in
  self.in_free = 0           -- when the input line is free again
end

function W:enqueue(item, not_before)
  item.at = math.max(item.at or 0, not_before or 0, time.now())
  self.out[#self.out + 1] = item
end

function W:pending_out() return self.out_head <= #self.out end

-- Writes what is due to port; returns the time of the next output step (or nil).
function W:pump(port)
  local dev = self.dev
  local now = time.now()
  while self.out_head <= #self.out do
    local e = self.out[self.out_head]
    if e.at > now then return e.at end
    if e.baud then
      dev.baud_fixed = e.baud
      dev:log("chip baud -> %d", e.baud)
      self.out_head = self.out_head + 1
    elseif e.reboot then
      self.out_head = self.out_head + 1
      dev:boot(e.reboot, e.cause)       -- clears this queue and starts a new one
      return self:pump(port)
    elseif e.fn then
      self.out_head = self.out_head + 1
      e.fn()
    else
      local rate = dev:wire_rate("out")
      if self.paced and self.out_free > now then return self.out_free end
      local pos = e.pos or 1
      local n = #e.data - pos + 1
      if self.paced then n = math.min(n, math.max(16, math.floor(rate * 0.004))) end
      local piece = e.data:sub(pos, pos + n - 1)
      if e.cut and pos + n - 1 >= e.cut then
        -- a reset fault: the board loses power part-way through this frame
        piece = piece:sub(1, math.max(0, e.cut - pos))
      end
      if not dev:line_ok() then piece = dev:noise(#piece) end
      local wok, werr = pcall(port.write, port, piece, 30)
      if not wok then
        -- The client went away mid-output (it closed the port while the board talked).
        dev:log("write failed: %s", tostring(werr))
        dev.hung_up = true
        return nil
      end
      dev.stats.bytes_out = dev.stats.bytes_out + #piece
      if self.paced then self.out_free = math.max(self.out_free, now) + #piece / rate end
      if e.cut and pos + n - 1 >= e.cut then
        self.out_head = self.out_head + 1
        if e.on_cut then e.on_cut() end
        return self:pump(port)
      end
      if pos + n > #e.data then self.out_head = self.out_head + 1 else e.pos = pos + n end
      if self.paced then now = time.now() end
    end
  end
  self.out, self.out_head = {}, 1
  return nil
end

-- Bytes from the host, arrived at `now`: they take #data byte times on the line.
function W:arrive(data, now)
  if #data == 0 then return end
  if not self.paced then
    self.landing[#self.landing + 1] = { data = data, t0 = now, t1 = now }
    return
  end
  local t0 = math.max(self.in_free, now)
  local t1 = t0 + #data / self.dev:wire_rate("in")
  self.in_free = t1
  self.landing[#self.landing + 1] = { data = data, t0 = t0, t1 = t1 }
end

-- What has landed in the chip's UART by `now` (bytes in order), and the time the last of them
-- landed.
function W:land(now)
  local parts, last = {}, nil
  while #self.landing > 0 do
    local c = self.landing[1]
    if c.t1 <= now then
      parts[#parts + 1] = c.data
      last = c.t1
      table.remove(self.landing, 1)
    else
      if c.t0 < now then
        local k = math.floor(#c.data * (now - c.t0) / (c.t1 - c.t0))
        if k > 0 then
          parts[#parts + 1] = c.data:sub(1, k)
          c.data = c.data:sub(k + 1)
          c.t0 = c.t0 + k * (c.t1 - c.t0) / (k + #c.data)
          last = c.t0
        end
      end
      break
    end
  end
  return table.concat(parts), last
end

-- When more input will have landed (for the event loop's poll timeout), or nil.
function W:next_in(now)
  local c = self.landing[1]
  if not c then return nil end
  return math.min(c.t1, now + 0.004)
end

return M
