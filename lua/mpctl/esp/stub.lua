-- Flasher stub loading. mpctl ships no stub binaries: it reads the JSON files esptool and
-- esptool-js ship (keys entry, text, text_start, data, data_start, bss_start; text/data base64 —
-- esptool `targets/stub_flasher/{2,1}/<chip>.json`, esptool-js `lib/targets/stub_flasher/<chip>.json`;
-- anchors.md §3.1). Search order: an explicit path, MPCTL_STUB_DIR, esptool-js under the mpctl
-- data dir (and MPCTL_PATH dirs), then an esptool install on the system python path.
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
  local c = {}
  local function add(p) c[#c + 1] = p end
  local env = os.getenv("MPCTL_STUB_DIR")
  if env then add(env .. "/" .. chip_key .. ".json") end
  local dirs = {}
  local dd = data_dir()
  if dd then dirs[#dirs + 1] = dd end
  for d in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
  for _, d in ipairs(dirs) do
    add(d .. "/node_modules/esptool-js/lib/targets/stub_flasher/" .. chip_key .. ".json")
    add(d .. "/node_modules/esptool-js/lib/targets/" .. chip_key .. ".json")
  end
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
    for _, sub in ipairs { "2", "1" } do -- esptool prefers the Apache/MIT v2 stub (STUB_SUBDIRS)
      add(py .. "/esptool/targets/stub_flasher/" .. sub .. "/" .. chip_key .. ".json")
    end
  end
  return c
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
      .. "); pass stub=PATH to a stub JSON from esptool or esptool-js, or stub=no for ROM-only mode"
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
