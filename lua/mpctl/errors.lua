-- mpctl.errors: PLACEHOLDER for the `core` helper's module of the same name (PLAN.md, Contract 1),
-- with the same API, so the firmware code can raise structured errors before core's lands. On
-- `git merge core` this file is replaced by core's version as it is.
local M = {}

M.Error = {}
M.Error.__index = M.Error
M.Error.__tostring = function(e) return e.msg end

function M.new(t)
  local e = setmetatable({}, M.Error)
  for k, v in pairs(t) do e[k] = v end
  e.kind = e.kind or "internal"
  local text = tostring(e.detail or e.kind)
  if e.where and e.where ~= "" then text = e.where .. ": " .. text end
  if e.seen then text = text .. " (seen: " .. e.seen .. ")" end
  if e.hint then text = text .. "; " .. e.hint end
  e.msg = e.msg or text
  if e.kind == "usage" then e.usage = true end
  return e
end

function M.raise(kind, where, detail, extra)
  local t = { kind = kind, where = where, detail = detail }
  for k, v in pairs(extra or {}) do t[k] = v end
  error(M.new(t), 0)
end

function M.kind(e)
  if type(e) == "table" and getmetatable(e) == M.Error then return e.kind end
  return "internal"
end

function M.is(e, kind) return M.kind(e) == kind end

function M.wrap(e)
  if type(e) == "table" and getmetatable(e) == M.Error then return e end
  return M.new({ kind = "internal", detail = tostring(e) })
end

return M
