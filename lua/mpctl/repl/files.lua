-- mpctl.repl.files: device file operations (ls, stat, sha256, rm, rmdir, mkdir, touch, df) through the
-- helpers of device.py, and OSErrors turned into errors that name the operation, the path and the
-- reason in words. Methods of the object mpctl.repl.attach returns.
local errors = require("mpctl.repl.errors")
local errno = require("mpctl.repl.errno")
local pysrc = require("mpctl.repl.pysrc")

local raise, quote = errors.raise, pysrc.quote

local F = {}

-- Temporary files of put (mpctl/repl/transfer.lua); ls hides them, the next put removes them.
function F.is_temporary(name)
  return name:sub(-7) == ".mpctl~" or name:sub(-8) == ".mpctl~z"
end

function F:_ensure_helpers()
  if self.helpers then return end
  self:exec(pysrc.load("device"))
  self.helpers = true
end

-- An error line of device.py ("!44 ENOENT") as an error: kind "not_found" for ENOENT, else
-- "device"; .op, .path, .reason ("no such file"), .errno, .errno_name; the text reads
-- "<op>: :<path>: <reason> (OSError <n> <NAME> on <port>)".
function F:_oserror(op, path, line)
  local n, dev_name = line:match("^!(%-?%d+) ?(%S*)")
  local reason, name = errno.describe(n, dev_name, self.wasm)
  raise(name == "ENOENT" and "not_found" or "device",
    string.format("%s: :%s: %s (OSError %s%s on %s)", op, path, reason, n, name and (" " .. name) or "", self.name),
    {op = op, path = path, reason = reason, errno = tonumber(n), errno_name = name,
     exception = "OSError: " .. tostring(n)})
end

-- Runs a helper call that prints result lines or one error line; returns the output.
function F:_call(op, path, code)
  self:_ensure_helpers()
  local out = self:exec(code)
  if out:sub(1, 1) == "!" then self:_oserror(op, path, out) end
  return out
end

--- Lists a device folder: { {name=, size=|nil for dirs, type="file"|"dir"}, ... } sorted by name;
-- a file lists itself (with its path as the name). Temporary files of cut-short puts are hidden
-- unless opts.all.
function F:ls(path, opts)
  path = path or "/"
  local out = self:_call("ls", path, "_mpctl_ls(" .. quote(path) .. ")")
  local list = {}
  for line in out:gmatch("[^\r\n]+") do
    local t, size, name = line:match("^(%d+) (%-?%d+) (.*)$")
    if t and (opts and opts.all or not F.is_temporary(name)) then
      local dir = (tonumber(t) & 0x4000) ~= 0
      list[#list + 1] = {
        name = name,
        type = dir and "dir" or "file",
        size = (not dir and tonumber(size) >= 0) and tonumber(size) or nil,   -- a dir's size means nothing
      }
    end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

--- {size=, type=} of a device path, or nil when it is absent (ENOENT, ENOTDIR, or an errno nobody
-- knows); other errors (EIO ...) raise.
function F:stat(path)
  local ok, out = pcall(self._call, self, "stat", path, "_mpctl_st(" .. quote(path) .. ")")
  if not ok then
    if errors.is_error(out) and (out.errno_name == nil or out.errno_name == "ENOENT" or out.errno_name == "ENOTDIR") then return nil end
    error(out, 0)
  end
  local mode, size = out:match("^(%d+) (%d+)")
  if not mode then return nil end
  mode = tonumber(mode)
  return {type = (mode & 0x4000) ~= 0 and "dir" or "file", size = tonumber(size)}
end

--- sha256 of a device file, computed on the device: hex, or nil if absent; raises
-- kind="unsupported" if the device has no hashlib.
function F:sha256(path)
  self:_ensure_helpers()
  local out = self:exec("print(_mpctl_h(" .. quote(path) .. "))")
  local h = out:match("^(%S+)")
  if h == "?" then return nil end
  if h == "-" then raise("unsupported", "repl " .. self.name .. ": device has no hashlib") end
  return h
end

local function op(self, what, name, path)
  self:_call(what, path, "_mpctl_op(" .. quote(name) .. "," .. quote(path) .. ")")
end

function F:rm(path, opts)
  op(self, "rm", (opts and opts.recursive) and "rmr" or "remove", path)
end

function F:rmdir(path)
  op(self, "rmdir", "rmdir", path)
end

function F:mkdir(path, opts)
  op(self, "mkdir", (opts and opts.exist_ok) and "mkdirs" or "mkdir", path)
end

--- Creates the device file `path` when absent; an existing file keeps its bytes (mpremote touch).
function F:touch(path)
  op(self, "touch", "touch", path)
end

--- Size of the filesystem holding `path` (os.statvfs): {size=, used=, free=} in bytes, or nil
-- when the port has no os.statvfs.
function F:df(path)
  local out = self:_call("df", path, "_mpctl_df(" .. quote(path) .. ")")
  if out:match("^%-") then return nil end
  local bsize, blocks, bfree = out:match("^(%d+) (%d+) (%d+)")
  if not bsize then raise("device", "df: :" .. path .. ": unexpected answer " .. out) end
  bsize, blocks, bfree = tonumber(bsize), tonumber(blocks), tonumber(bfree)
  return {size = bsize * blocks, used = bsize * (blocks - bfree), free = bsize * bfree}
end

return F
