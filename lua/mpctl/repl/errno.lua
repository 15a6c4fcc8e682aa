-- mpctl.repl.errno: OSError numbers from the device turned into names and words.
--
-- The device reports an errno number and, when its `errno` module has one, the name from its own
-- table (device.py's _mpctl_e), which is right on every port whatever numbering its libc uses
-- (MicroPython's internal numbers follow Linux; ESP-IDF's newlib differs for a few, e.g.
-- ENOTEMPTY 90). Two cases need the host: a device without an `errno` module (the Linux numbers
-- below, which MicroPython's py/mperrno.h uses when MICROPY_USE_INTERNAL_ERRNO is on), and the
-- WebAssembly build, whose OSErrors carry Emscripten's numbers (WASI's errno numbering: ENOENT 44,
-- EEXIST 20, ... measured on the npm build 1.27.0) while its errno module has MicroPython's table,
-- so the name it reports is wrong and is ignored.
local M = {}

local LINUX = {
  [1] = "EPERM", [2] = "ENOENT", [5] = "EIO", [9] = "EBADF", [11] = "EAGAIN", [12] = "ENOMEM",
  [13] = "EACCES", [16] = "EBUSY", [17] = "EEXIST", [18] = "EXDEV", [19] = "ENODEV",
  [20] = "ENOTDIR", [21] = "EISDIR", [22] = "EINVAL", [24] = "EMFILE", [27] = "EFBIG",
  [28] = "ENOSPC", [30] = "EROFS", [36] = "ENAMETOOLONG", [39] = "ENOTEMPTY", [110] = "ETIMEDOUT",
}

local EMSCRIPTEN = {
  [2] = "EACCES", [8] = "EBADF", [10] = "EBUSY", [20] = "EEXIST", [22] = "EFBIG", [28] = "EINVAL",
  [29] = "EIO", [31] = "EISDIR", [33] = "EMFILE", [37] = "ENAMETOOLONG", [43] = "ENODEV",
  [44] = "ENOENT", [48] = "ENOMEM", [51] = "ENOSPC", [54] = "ENOTDIR", [55] = "ENOTEMPTY",
  [63] = "EPERM", [69] = "EROFS", [73] = "ETIMEDOUT", [75] = "EXDEV",
}

local WORDS = {
  ENOENT = "no such file", EEXIST = "already exists", EISDIR = "is a folder",
  ENOTDIR = "not a folder", ENOTEMPTY = "folder not empty", ENOSPC = "no space left on the device",
  EROFS = "read-only filesystem", EIO = "I/O error on the device", EINVAL = "invalid argument",
  ENODEV = "no such device (is a filesystem mounted?)", ETIMEDOUT = "timed out",
  ENOMEM = "out of memory on the device", EPERM = "operation not permitted",
  EACCES = "permission denied (FAT also says this for a folder that is not empty)",
  EBUSY = "busy", EBADF = "bad file descriptor", EFBIG = "file too big", EMFILE = "too many open files",
  ENAMETOOLONG = "name too long", EXDEV = "cannot rename across filesystems", EAGAIN = "try again",
}

--- The name of errno `n` as reported by a device (`device_name` from its errno table, may be "").
-- wasm: true for the WebAssembly build.
function M.name(n, device_name, wasm)
  n = tonumber(n)
  if wasm then return EMSCRIPTEN[n] end
  if device_name and device_name ~= "" then return device_name end
  return LINUX[n]
end

--- Words for errno `n`: "no such file", or "error 123" for a number nobody knows.
function M.describe(n, device_name, wasm)
  local name = M.name(n, device_name, wasm)
  return name and (WORDS[name] or name) or ("error " .. tostring(n)), name
end

return M
