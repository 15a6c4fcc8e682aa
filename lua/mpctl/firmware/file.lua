--[[ mpctl.firmware.file: reading a firmware file a person named, safely.

    file.check(path) -> size        raises unless path is a regular file (or "-")
    file.load(path[, opts]) -> data  opts.max: refuse more bytes than this (the flash size);
                                     path "-" reads standard input, up to opts.max (default 64 MiB)

A FIFO, a device such as /dev/zero, a folder or a socket named as firmware would hang the read
or never end it; they are refused before they are opened (kind "refused"), and so is a file larger
than the flash it is meant for. Only the first max+1 bytes are ever read, so a file that grows
while it is read cannot take the memory either.
]]
local fs = require("mpctl.fs")
local errors = require("mpctl.errors")

local M = {}

M.STDIN_MAX = 64 * 1024 * 1024

local function size_text(n)
  if n >= 1024 * 1024 and n % (1024 * 1024) == 0 then return string.format("%d MB", n // (1024 * 1024)) end
  if n >= 1024 and n % 1024 == 0 then return string.format("%d KB", n // 1024) end
  return string.format("%d bytes", n)
end

function M.check(path, opts)
  opts = opts or {}
  if path == "-" then return nil end
  if type(path) ~= "string" or path == "" then
    errors.raise("usage", "firmware=", "no firmware file given")
  end
  local st = fs.stat(path)
  if not st then
    errors.raise("not_found", path, "firmware file " .. path .. " does not exist",
      { hint = "check the path, or give version=X.Y.Z to download a release" })
  end
  if st.type ~= "file" then
    local what = st.type == "dir" and "a folder" or "not a regular file (a FIFO, device or socket)"
    errors.raise("refused", path, string.format("firmware file %s is %s; mpctl reads only regular files " ..
      "(or - for standard input)", path, what), { hint = "save the image to a file first" })
  end
  if opts.max and st.size > opts.max then
    errors.raise("refused", path, string.format("firmware file %s is %d bytes, more than the %s flash it is for",
      path, st.size, size_text(opts.max)))
  end
  return st.size
end

function M.load(path, opts)
  opts = opts or {}
  M.check(path, opts)
  local max = opts.max or (path == "-" and M.STDIN_MAX) or nil
  local f, data
  if path == "-" then
    f = io.stdin
  else
    local err
    f, err = io.open(path, "rb")
    if not f then errors.raise("access", path, "cannot open firmware file: " .. tostring(err)) end
  end
  if max then
    data = f:read(max + 1) or ""
  else
    data = f:read("a") or ""
  end
  if f ~= io.stdin then f:close() end
  if max and #data > max then
    errors.raise("refused", path == "-" and "standard input" or path, string.format("firmware is more than %s " ..
      "(%s); refusing it", size_text(max), opts.max and "the size of the flash" or "the limit for standard input"))
  end
  return data
end

return M
