-- mpctl.repl.link: the REPL client's byte I/O on an mpctl port — writes, and reads through an
-- input buffer of its own (self.rbuf), counting bytes (self.tx, self.rx) and calling
-- self.trace(dir, bytes) for every byte.
--
-- Why a second buffer above the port's: the device may send one byte per write, so reads
-- accumulate in a list and are joined once, and read_until must be able to stream what it reads
-- to a callback (exec's on_output). It goes once the C port offers counters, a trace hook and a
-- streaming read_until (the `core` work of issue 9).
local time = require("mpctl.time")
local errors = require("mpctl.repl.errors")
local errs = require("mpctl.errors")

local raise, escape = errors.raise, errors.escape
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
  self.tx = self.tx + #data
  if self.trace then self.trace("tx", data) end
end

-- Every read from the port goes through here, so rx and the trace see every byte.
function L:_read_port(max, timeout)
  local s = self.port:read(max, timeout)
  if s ~= "" then
    self.rx = self.rx + #s
    if self.trace then self.trace("rx", s) end
  end
  return s
end

-- Reads what arrives within `left` seconds (at least one byte, or "" on timeout).
function L:_recv(left)
  local s = self:_read_port(65536, left > 0 and left or 0)
  if s == "" and self.port.is_eof and self.port:is_eof() then
    raise("reset", string.format("repl %s: device hung up (end of file) while waiting", self.name),
      {eof = true})
  end
  return s
end

function L:_timeout(what, timeout, seen)
  raise("timeout", string.format('repl %s: timeout after %.1f s waiting for %s; last bytes seen: "%s"',
    self.name, timeout, what, escape(seen or "")), {what = what, seen = seen or ""})
end

-- Everything before delim (delim consumed). With sink, bytes are handed to sink(piece) as they
-- come instead of being returned (delim must then be one byte).
function L:_read_until(delim, timeout, what, sink)
  local buf = self.rbuf
  local i = buf:find(delim, 1, true)
  if i then
    self.rbuf = buf:sub(i + #delim)
    local head = buf:sub(1, i - 1)
    if sink then sink(head) return "" end
    return head
  end
  local parts, n = {}, 0
  if sink then
    if buf ~= "" then sink(buf) end
    buf = ""
  end
  if buf ~= "" then n = 1; parts[1] = buf end
  self.rbuf = ""
  local keep = #delim - 1
  local tail = keep > 0 and buf:sub(-keep) or ""
  local seen_tail = buf
  local deadline = now() + timeout
  while true do
    local left = deadline - now()
    if left <= 0 then
      if not sink then self.rbuf = table.concat(parts) end
      self:_timeout(what or string.format('"%s"', escape(delim)), timeout, seen_tail)
    end
    local ok, s = pcall(self._recv, self, left)
    if not ok then
      if not sink then self.rbuf = table.concat(parts) end
      error(s, 0)
    end
    if s ~= "" then
      seen_tail = (seen_tail .. s):sub(-64)
      local probe = tail .. s
      local j = probe:find(delim, 1, true)
      if j then
        if sink then
          if j > 1 then sink(probe:sub(#tail + 1, j - 1)) end
          self.rbuf = probe:sub(j + #delim)
          return ""
        end
        n = n + 1; parts[n] = s
        local all = table.concat(parts)
        local at = #all - #probe + j
        self.rbuf = all:sub(at + #delim)
        return all:sub(1, at - 1)
      end
      if sink then sink(s) else n = n + 1; parts[n] = s end
      tail = keep > 0 and probe:sub(-keep) or ""
    end
  end
end

function L:_read_exact(count, timeout, what)
  local deadline = now() + timeout
  local parts, have = {self.rbuf}, #self.rbuf
  self.rbuf = ""
  while have < count do
    local left = deadline - now()
    if left <= 0 then
      local seen = table.concat(parts)
      self.rbuf = seen
      self:_timeout(what or (count .. " bytes"), timeout, seen)
    end
    local s = self:_recv(left)
    parts[#parts + 1] = s
    have = have + #s
  end
  local all = table.concat(parts)
  self.rbuf = all:sub(count + 1)
  return all:sub(1, count)
end

-- True when a byte is ready now (used while streaming, to pick up flow-control bytes early).
function L:_ready()
  if self.rbuf ~= "" then return true end
  local s = self:_read_port(65536, 0)
  if s ~= "" then
    self.rbuf = s
    return true
  end
  return false
end

-- Reads and discards until the line stays quiet for `quiet` seconds (bounded by `limit`).
function L:_drain(quiet, limit)
  local parts = {self.rbuf}
  self.rbuf = ""
  local deadline = now() + limit
  while now() < deadline do
    local s = self:_read_port(65536, quiet)
    if s == "" then break end
    parts[#parts + 1] = s
  end
  return table.concat(parts)
end

return L
