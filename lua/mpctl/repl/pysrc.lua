-- mpctl.repl.pysrc: Python source for the device — string literals, and the helper files
-- (lua/mpctl/repl/*.py) that are read at run time so they can be tested on a real MicroPython.
local M = {}

-- A Python string literal for s. Bytes >= 0x80 pass through unchanged: source is UTF-8 and
-- device file names are UTF-8 too.
function M.quote(s)
  return "'" .. s:gsub("[%c'\\]", function(c)
    if c == "'" then return "\\'" elseif c == "\\" then return "\\\\" end
    return string.format("\\x%02x", c:byte())
  end) .. "'"
end

local cache = {}

-- The text of lua/mpctl/repl/<name>.py, found along package.path like a Lua module, with its
-- comment lines and blank lines dropped (they would only cost wire bytes).
function M.load(name)
  if cache[name] then return cache[name] end
  local path = package.searchpath("mpctl.repl." .. name, (package.path:gsub("%.lua", ".py")))
  if not path then
    error("mpctl.repl: device code mpctl/repl/" .. name .. ".py not found along package.path ("
      .. package.path .. "); reinstall mpctl", 0)
  end
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  local lines = {}
  for line in text:gmatch("[^\n]+") do
    if not line:match("^%s*#") and line:find("%S") then lines[#lines + 1] = line end
  end
  cache[name] = table.concat(lines, "\n") .. "\n"
  return cache[name]
end

return M
