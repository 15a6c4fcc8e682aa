-- Flasher stub loading. mpctl ships no stub binaries of its own: it reads the JSON files esptool
-- and esptool-js ship (keys entry, text, text_start, data, data_start, bss_start; text/data base64
-- — esptool `targets/stub_flasher/{2,1}/<chip>.json`, esptool-js `lib/targets/stub_flasher/
-- <chip>.json`; anchors.md §3.1). `cmake --install` copies esptool-js's stubs and its licence file
-- into <prefix>/share/mpctl/stubs (installed by scripts/setup's `npm ci`).
-- Search order (first found wins, each folder once):
--   1. stub=PATH (explicit; an error when missing)
--   2. $MPCTL_STUB_DIR/<chip>.json
--   3. <datadir>/stubs/<chip>.json (the installed copy)
--   4. esptool-js in $MPCTL_NODE_MODULES, <datadir>/node_modules, and each $MPCTL_PATH folder's
--      node_modules
--   5. an esptool Python install (v2 stubs first: Apache-2.0/MIT, then the legacy v1)
-- When none is found mpctl.esp flashes with the ROM loader and says so in one line.
local M = {}

-- The stub JSON's text/data are base64: mpctl's one codec (it ignores line breaks).
M.base64_decode = require("mpctl.base64").decode

local function exists(fs, p)
  if fs then return fs.exists(p) end
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

-- The folder above lua/mpctl/esp/ (the source tree, or <prefix>/share/mpctl).
local function data_dir()
  local reg = debug and debug.getregistry and debug.getregistry()["mpctl.info"]
  if reg and reg.datadir then return reg.datadir end
  local src = debug and debug.getinfo(1, "S").source or ""
  local dir = src:match("^@(.*)/lua/mpctl/esp/stub%.lua$")
  return dir
end

function M.candidates(chip_key)
  local c, seen = {}, {}
  local function add(p)
    if p and not seen[p] then seen[p] = true; c[#c + 1] = p end
  end
  local file = chip_key .. ".json"
  local env = os.getenv("MPCTL_STUB_DIR")
  if env and env ~= "" then add(env .. "/" .. file) end
  local dd = data_dir()
  if dd then add(dd .. "/stubs/" .. file) end
  local mods = {}
  local nm = os.getenv("MPCTL_NODE_MODULES")
  if nm and nm ~= "" then mods[#mods + 1] = nm end
  if dd then mods[#mods + 1] = dd .. "/node_modules" end
  for d in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do mods[#mods + 1] = d .. "/node_modules" end
  for _, m in ipairs(mods) do add(m .. "/esptool-js/lib/targets/stub_flasher/" .. file) end
  local pydirs = { "/usr/lib/python3/dist-packages" }
  local okfs, fs = pcall(require, "mpctl.fs")
  local home = os.getenv("HOME")
  for _, root in ipairs { "/usr/local/lib", "/usr/lib", home and (home .. "/.local/lib") or nil } do
    local okl, names = false, nil
    if okfs then okl, names = pcall(fs.list, root) end
    for _, n in ipairs(okl and names or {}) do
      if n:match("^python3") then
        pydirs[#pydirs + 1] = root .. "/" .. n .. "/site-packages"
        pydirs[#pydirs + 1] = root .. "/" .. n .. "/dist-packages"
      end
    end
  end
  for _, py in ipairs(pydirs) do
    if okfs and fs.exists(py .. "/esptool") then
      for _, sub in ipairs { "2", "1" } do -- esptool prefers the Apache/MIT v2 stub (STUB_SUBDIRS)
        add(py .. "/esptool/targets/stub_flasher/" .. sub .. "/" .. file)
      end
    end
  end
  return c
end

-- One line for the warning when no stub is found (the full list is in M.load's message).
function M.short_reason(chip_key)
  return "no flasher stub for " .. chip_key .. " found"
end

-- Returns {entry=, text=, text_start=, data=, data_start=, path=} or nil, message.
function M.load(chip_key, path)
  local okfs, fs = pcall(require, "mpctl.fs")
  if not okfs then fs = nil end
  local tried = {}
  if not path then
    for _, p in ipairs(M.candidates(chip_key)) do
      if exists(fs, p) then path = p break end
      tried[#tried + 1] = p
    end
  end
  if not path then
    return nil, "no flasher stub for " .. chip_key .. " found (looked in: " .. table.concat(tried, ", ")
      .. "); set MPCTL_STUB_DIR to a folder of <chip>.json stubs, MPCTL_NODE_MODULES to a node_modules "
      .. "holding esptool-js, or pass stub=PATH; stub=no uses the ROM loader"
  end
  if not exists(fs, path) then return nil, "stub " .. path .. ": no such file" end
  local text
  if fs then text = fs.read(path) else
    local f = assert(io.open(path, "rb")); text = f:read("a"); f:close()
  end
  local ui = require("mpctl.ui")
  local ok, j = pcall(ui.json_decode, text)
  if not ok or type(j) ~= "table" or not j.text or not j.entry then
    return nil, "stub " .. path .. ": not a flasher stub JSON (needs entry, text, text_start)"
  end
  return {
    path = path, entry = math.tointeger(j.entry),
    text = M.base64_decode(j.text), text_start = math.tointeger(j.text_start),
    data = j.data and M.base64_decode(j.data) or "", data_start = math.tointeger(j.data_start),
  }
end

return M
