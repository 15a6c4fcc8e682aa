-- Shared by the tests in this folder: a simulated ESP32's flash holding a bootable app, and the
-- simulator's trace read back.
local fs = require("mpctl.fs")

local M = {}

-- A 1 MB flash file holding a one-segment ESP32 image header at 0x1000 (magic 0xE9, DIO, chip
-- id 0), so the board boots the app (MicroPython) after a normal boot.
function M.app_flash(dir)
  local path = fs.join(dir, "flash.bin")
  local hdr = string.pack("<BBBBI4", 0xE9, 1, 2, 0x20, 0x400805B0) .. "\xEE" .. string.rep("\0", 15)
  fs.write(path, string.rep("\255", 0x1000) .. hdr .. string.rep("\255", 0x100000 - 0x1000 - #hdr))
  return path
end

-- The trace's lines matching pattern, each as the list of its captures (numbers where they are).
function M.trace_lines(path, pattern)
  local out = {}
  for line in fs.read(path):gmatch("[^\n]+") do
    local caps = { line:match(pattern) }
    if caps[1] then
      for i, c in ipairs(caps) do caps[i] = tonumber(c) or c end
      out[#out + 1] = caps
    end
  end
  return out
end

return M
