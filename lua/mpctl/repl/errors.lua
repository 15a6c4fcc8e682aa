-- mpctl.repl.errors: the REPL client's error values and the text helpers its messages use.
--
-- Every error is an mpctl.errors object (kind, where, detail, msg; PLAN contract 1) that also
-- carries .message (the same text, for older handlers). Kinds: device, timeout, eof (the device
-- hung up; the REPL's older name "reset" is still accepted by is_error), protocol, unsupported,
-- not_found, io. The kinds are described in mpctl/repl/init.lua.
local errs = require("mpctl.errors")

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

local ALIAS = {reset = "eof"}

-- raise(kind, message[, fields]): message is the whole text ("repl <port>: ..."); fields may
-- carry where/detail/seen and anything else (traceback, exception, sha256, ...).
function M.raise(kind, message, fields)
  local t = fields or {}
  t.kind = ALIAS[kind] or kind
  t.detail = t.detail or message
  t.msg, t.message = message, message
  if type(t.seen) ~= "string" then t.seen = nil end
  local seen = t.seen
  t.seen = nil               -- our message already shows the bytes seen, escaped
  local e = errs.new(t)
  e.seen = seen
  error(e, 0)
end

function M.is_error(v, kind)
  return errs.is_error(v) and (kind == nil or v.kind == (ALIAS[kind] or kind))
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
