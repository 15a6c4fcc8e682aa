-- mpctl.repl.errors: the REPL client's error values and the text helpers its messages use.
--
-- Every error is a table with a __tostring and a .message (so handlers that print tostring(e) or
-- e.message work) and a .kind (device, timeout, reset, protocol, unsupported, io); is_error(e[, kind])
-- tests for one. The kinds are described in mpctl/repl/init.lua.
local M = {}

-- Printable form of bytes seen on the wire (the last `max`, control bytes escaped).
function M.escape(s, max)
  max = max or 64
  if #s > max then s = s:sub(-max) end
  return (s:gsub("[^\32-\126]", function(c)
    if c == "\r" then return "\\r" elseif c == "\n" then return "\\n" end
    return string.format("\\x%02x", c:byte())
  end):gsub('"', '\\"'))
end

local ErrMT = {}
ErrMT.__index = ErrMT
ErrMT.__tostring = function(e) return e.message end

function M.raise(kind, message, fields)
  local e = fields or {}
  e.kind, e.message = kind, message
  error(setmetatable(e, ErrMT), 0)
end

function M.is_error(v, kind)
  return getmetatable(v) == ErrMT and (kind == nil or v.kind == kind)
end

-- The exception line of a MicroPython traceback: the last non-blank line.
function M.exception_line(tb)
  local last
  for line in tb:gmatch("[^\r\n]+") do
    if line:find("%S") then last = line end
  end
  return last or tb
end

return M
