-- mpctl.errors: structured errors shared by the C modules and the Lua library.
--
-- An error is a table with the metatable `errors.Error`:
--   kind    what sort of failure (the list below); code branches on this, never on text
--   where   the port URL, file or device it happened on (optional)
--   detail  what happened
--   seen    the last bytes received, escaped (optional)
--   hint    what to do next (optional)
--   msg     the whole readable text; tostring(e) returns it
-- plus free extra fields (offset, traceback, exception, signal, ...).
--
-- The C side (src/common.c, mpctl_raise) builds the same tables with the same metatable (kept
-- in the Lua registry under "mpctl.error"), so `getmetatable(e) == errors.Error` holds for
-- errors from either side.

local M = {}

-- The kinds, with the exit code the CLI gives each (usage 2, interrupted 130, others 1).
M.KINDS = {
  timeout = "no answer within the time allowed",
  eof = "the other end closed the connection (device reset, simulator exited, cable pulled)",
  busy = "the port or device is in use by another program",
  not_found = "no such port, device, file or firmware",
  access = "permission denied",
  io = "an operating-system I/O error",
  protocol = "the peer answered with something the protocol does not allow",
  interrupted = "stopped by Ctrl-C, SIGTERM or SIGHUP",
  usage = "mpctl was called wrongly (bad option, unknown recipe)",
  device = "the MicroPython device raised an exception (a traceback)",
  failed = "a check failed (mpctl.fail / mpctl.check)",
  refused = "bad input refused before anything was written (wrong chip, too big, corrupt file)",
  unsupported = "the port, device or file asks for something mpctl does not do",
  internal = "a bug: a plain error string or an unexpected failure",
}

-- The metatable is made in C (src/common.c): __tostring gives msg, and for code written when
-- errors were strings, `"x: " .. e`, #e and e:find(...) work on msg.
local native = require("mpctl.interrupt")
local Error = native.Error
M.Error = Error

local function compose(t)
  local text = t.detail ~= nil and tostring(t.detail) or t.kind
  if t.where and t.where ~= "" and text:sub(1, #t.where) ~= t.where
      and not text:find(t.where, 1, true) then
    text = t.where .. ": " .. text
  end
  if t.seen then text = text .. '; last bytes seen: "' .. t.seen .. '"' end
  if t.hint then text = text .. "; " .. t.hint end
  return text
end

-- errors.new{kind=, where=, detail=, seen=, hint=, msg=, ...} -> e  (msg composed when absent)
function M.new(t)
  assert(type(t) == "table", "errors.new wants a table")
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  e.kind = e.kind or "internal"
  if M.KINDS[e.kind] == nil then
    error("errors.new: unknown kind '" .. tostring(e.kind) .. "'", 2)
  end
  e.msg = e.msg or compose(e)
  if e.kind == "usage" then e.usage = true end -- for code that still tests e.usage
  return setmetatable(e, Error)
end

-- errors.raise(kind, where, detail[, extra]): raises a new error (no position prefix).
function M.raise(kind, where, detail, extra)
  local t = {}
  if extra then for k, v in pairs(extra) do t[k] = v end end
  t.kind, t.where, t.detail = kind, where, detail
  error(M.new(t), 0)
end

function M.is_error(e)
  return getmetatable(e) == Error
end

-- errors.kind(e) -> the kind; "internal" for anything that is not an error object.
function M.kind(e)
  if getmetatable(e) == Error then return e.kind end
  return "internal"
end

function M.is(e, kind)
  return M.kind(e) == kind
end

-- errors.wrap(e) -> an error object: error objects as they are, a string (or anything else)
-- becomes kind "internal" with its text.
function M.wrap(e)
  if getmetatable(e) == Error then return e end
  if type(e) == "table" then
    local msg = rawget(e, "msg") or rawget(e, "message")
    if msg ~= nil then
      local kind = rawget(e, "kind")
      if M.KINDS[kind] == nil then kind = rawget(e, "usage") and "usage" or "internal" end
      local w = M.new({ kind = kind, detail = tostring(msg), msg = tostring(msg) })
      for k, v in pairs(e) do if w[k] == nil then w[k] = v end end
      return w
    end
  end
  local text = tostring(e)
  return M.new({ kind = "internal", detail = text, msg = text })
end

-- Exit code for an error: usage 2, interrupted 130, everything else 1.
function M.exit_code(e)
  local k = M.kind(M.wrap(e))
  if k == "usage" then return 2 end
  if k == "interrupted" then return 130 end
  return 1
end

-- errors.shield(fn, ...) -> fn's results. Runs fn with interruption held off: a Ctrl-C that
-- arrives meanwhile (or arrived before and is still pending) is raised after fn returns, not
-- inside it. For the few short, bounded things that must finish after an interrupt: writing the
-- history record, finishing the progress line, closing ports and simulator children.
function M.shield(fn, ...)
  native.hold()
  local r = table.pack(pcall(fn, ...))
  native.release()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

return M
