-- mpctl.repl.link: the REPL client's byte I/O on an mpctl port, straight on the port's own input
-- buffer (read_until that can stream to a callback, read_exact, unread, pending), its byte
-- counters (self.tx / self.rx, relative to attach) and its trace hook (opts.trace). What this
-- module adds: errors in the REPL's words (which wait timed out, the bytes seen, raw), and a
-- device hang-up reported as kind "eof".
local time = require("mpctl.time")
local errors = require("mpctl.repl.errors")
local errs = require("mpctl.errors")

local raise = errors.raise
local now = time.now

local L = {}

function L:_write(data)
  local ok, err = pcall(self.port.write, self.port, data)
  if not ok then
    local k = errs.kind(err)
    if k == "interrupted" then error(err, 0) end
    local eof = k == "eof" or (self.port.is_eof and select(2, pcall(self.port.is_eof, self.port)) == true)
    if eof then
      raise("reset", string.format("repl %s: device hung up (%s)", self.name, tostring(err)), {eof = true})
    end
    raise("io", string.format("repl %s: %s", self.name, tostring(err)))
  end
end

-- Bytes the port holds already (none is waited for); they are taken out of its buffer.
function L:_take_buffered()
  local n = self.port:pending()
  if n == 0 then return "" end
  return self.port:read(n, 0)
end

-- Puts bytes back in front of the port's buffer (read again by the next read).
function L:_unread(s)
  if s ~= "" then self.port:unread(s) end
end

-- The bytes the port holds, without taking them (for error messages).
function L:_peek()
  local s = self:_take_buffered()
  self:_unread(s)
  return s
end

function L:_read_port(max, timeout)
  return self.port:read(max, timeout)
end

-- Reads what arrives within `left` seconds (at least one byte, or "" on timeout).
function L:_recv(left)
  local s = self.port:read(65536, left > 0 and left or 0)
  if s == "" and self.port:is_eof() then
    raise("reset", string.format("repl %s: device hung up (end of file) while waiting", self.name),
      {eof = true})
  end
  return s
end

function L:_timeout_message(what, timeout, seen)
  return string.format('repl %s: timeout after %.1f s waiting for %s; last bytes seen: "%s"',
    self.name, timeout, what, errors.escape(seen or ""))
end

function L:_timeout(what, timeout, seen)
  raise("timeout", self:_timeout_message(what, timeout, seen), {what = what, seen = seen or ""})
end

-- A failed wait of the port in the REPL's words: timeout (with the bytes seen), hang-up, or as it is.
function L:_wait_failed(err, what, timeout, seen)
  local k = errs.kind(err)
  if k == "timeout" then self:_timeout(what, timeout, seen) end
  if k == "eof" then
    raise("reset", string.format("repl %s: device hung up (end of file) while waiting for %s", self.name, what),
      {eof = true})
  end
  error(err, 0)
end

-- Everything before delim (delim consumed). With sink, bytes are handed to sink(piece) as they
-- come instead of being returned.
function L:_read_until(delim, timeout, what, sink)
  what = what or string.format('"%s"', errors.escape(delim))
  local tail = ""
  local feed = sink and function(piece)
    tail = (tail .. piece):sub(-64)
    sink(piece)
  end
  local ok, got = pcall(self.port.read_until, self.port, delim, math.max(timeout, 0), feed)
  if not ok then self:_wait_failed(got, what, timeout, (tail .. self:_peek()):sub(-64)) end
  if sink then return "" end
  return got:sub(1, #got - #delim)
end

function L:_read_exact(count, timeout, what)
  local ok, got = pcall(self.port.read_exact, self.port, count, math.max(timeout, 0))
  if not ok then self:_wait_failed(got, what or (count .. " bytes"), timeout, self:_peek()) end
  return got
end

-- True when a byte is ready now (used while streaming, to pick up flow-control bytes early).
function L:_ready()
  if self.port:pending() > 0 then return true end
  local s = self.port:read(65536, 0)
  if s ~= "" then
    self:_unread(s)
    return true
  end
  return false
end

-- Reads and discards until the line stays quiet for `quiet` seconds (bounded by `limit`).
function L:_drain(quiet, limit)
  local parts = {self:_take_buffered()}
  local deadline = now() + limit
  while now() < deadline do
    local s = self.port:read(65536, quiet)
    if s == "" then break end
    parts[#parts + 1] = s
  end
  return table.concat(parts)
end

return L
