-- mpctl.board: board files (boards/<ID>.lua) are plain data tables, loaded in an empty
-- environment so a board file cannot do anything but describe a board.
--   board.load(id) -> table (error lists known ids, closest first)
--   board.all() -> list sorted by id;  board.match_usb(vid, pid) -> boards whose usb list has it
--   board.mpy_port(id) -> MicroPython port ("esp32", "rp2", "stm32", ...) or nil
--   board.from_machine(machine) -> id, variant | nil   (sys.implementation._machine, pre-1.25)
--   board.identify(info) -> {board=, variant=, version=, machine=, build=, platform=, how=}
-- Board files say `mpy_port =` and `machine =` (MICROPY_HW_BOARD_NAME); KNOWN below covers
-- MicroPython boards that have no board file yet (no flash recipe), so `firmware identify` and
-- the firmware catalog still know them.
local errors = require("mpctl.errors")

local M = {}

local function info()
  local reg = debug and debug.getregistry and debug.getregistry()["mpctl.info"]
  return reg or {}
end

-- Folders searched, first hit wins: $MPCTL_PATH/boards, ~/.config/mpctl/boards, <datadir>/boards.
function M.dirs()
  local dirs = {}
  for d in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d .. "/boards" end
  local ok, fs = pcall(require, "mpctl.fs")
  if ok and fs.xdg then dirs[#dirs + 1] = fs.xdg("config") .. "/boards" end
  local dd = info().datadir
  if not dd then
    local src = debug.getinfo(1, "S").source
    dd = src:match("^@(.*)/lua/mpctl/board%.lua$")
  end
  if dd then dirs[#dirs + 1] = dd .. "/boards" end
  return dirs
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local REQUIRED = { id = "string", family = "string", chip = "string", offset = "number" }

local function load_file(path, id)
  local text = read(path)
  if not text then return nil end
  local chunk, err = load(text, "@" .. path, "t", {})
  if not chunk then errors.raise("refused", path, "board file " .. path .. ": " .. err) end
  local ok, t = pcall(chunk)
  if not ok then errors.raise("refused", path, "board file " .. path .. ": " .. tostring(t)) end
  if type(t) ~= "table" then errors.raise("refused", path, "board file " .. path .. " must return a table") end
  for k, ty in pairs(REQUIRED) do
    if type(t[k]) ~= ty then errors.raise("refused", path, string.format("board file %s: field %s must be a %s", path, k, ty)) end
  end
  if id and t.id ~= id then
    errors.raise("refused", path, string.format("board file %s declares id %s, expected %s", path, t.id, id))
  end
  t.usb = t.usb or {}
  t.path = path
  return t
end

local function list_dir(dir)
  local ok, fs = pcall(require, "mpctl.fs")
  if ok and fs.list then
    local okl, names = pcall(fs.list, dir)
    return okl and names or {}
  end
  return {}
end

function M.ids()
  local seen, ids = {}, {}
  for _, d in ipairs(M.dirs()) do
    for _, name in ipairs(list_dir(d)) do
      local id = name:match("^(.+)%.lua$")
      if id and not seen[id] then seen[id] = true; ids[#ids + 1] = id end
    end
  end
  table.sort(ids)
  return ids
end

function M.load(id)
  if type(id) ~= "string" or not id:match("^[%w_%-]+$") then
    errors.raise("usage", "board", "board id must be a word like ESP32_GENERIC, got " .. tostring(id))
  end
  for _, d in ipairs(M.dirs()) do
    local t = load_file(d .. "/" .. id .. ".lua", id)
    if t then return t end
  end
  local ids = require("mpctl.text").closest(id, M.ids())
  errors.raise("not_found", "board", "unknown board '" .. id .. "'; known boards: " ..
    (#ids > 0 and table.concat(ids, ", ") or "none found"), { closest = ids })
end

function M.all()
  local out = {}
  for _, id in ipairs(M.ids()) do
    local ok, t = pcall(M.load, id)
    if ok then out[#out + 1] = t end
  end
  return out
end

function M.match_usb(vid, pid)
  local out = {}
  for _, b in ipairs(M.all()) do
    for _, u in ipairs(b.usb) do
      if u.vid == vid and u.pid == pid then out[#out + 1] = b break end
    end
  end
  return out
end

-- MicroPython boards without a board file: MICROPY_HW_BOARD_NAME from ports/<port>/boards/<ID>/
-- mpconfigboard.h (the machine string is "<board name> with <mcu>").
M.KNOWN = {
  ESP32_GENERIC_P4 = { mpy_port = "esp32", machine = "Generic ESP32P4 module" },
  RPI_PICO = { mpy_port = "rp2", machine = "Raspberry Pi Pico" },
  RPI_PICO_W = { mpy_port = "rp2", machine = "Raspberry Pi Pico W" },
  RPI_PICO2 = { mpy_port = "rp2", machine = { "Raspberry Pi Pico2", "Raspberry Pi Pico 2" } },
  RPI_PICO2_W = { mpy_port = "rp2", machine = "Raspberry Pi Pico2 W" },
  PYBV11 = { mpy_port = "stm32", machine = "PYBv1.1" },
  PYBV10 = { mpy_port = "stm32", machine = "PYBv1.0" },
  PYBLITEV10 = { mpy_port = "stm32", machine = "PYBLITEv1.0" },
  PYBD_SF2 = { mpy_port = "stm32", machine = "PYBD-SF2W" },
  PYBD_SF3 = { mpy_port = "stm32", machine = "PYBD-SF3W" },
  PYBD_SF6 = { mpy_port = "stm32", machine = "PYBD-SF6W" },
}

-- Board id prefixes of the ports (ids are ports/<port>/boards/<ID> in MicroPython's tree), for
-- boards neither a board file nor KNOWN describes. First match wins.
local PORT_PATTERNS = {
  { "^ESP8266", "esp8266" }, { "ESP32", "esp32" },
  { "^RPI_PICO", "rp2" }, { "RP2", "rp2" }, { "PICO", "rp2" },
  { "^PYB", "stm32" }, { "^NUCLEO", "stm32" }, { "^STM32", "stm32" }, { "^B_L", "stm32" }, { "DISCO", "stm32" },
  { "SAMD", "samd" }, { "^ADAFRUIT_ITSYBITSY_M", "samd" },
  { "^MIMXRT", "mimxrt" }, { "^TEENSY4", "mimxrt" },
  { "^ARDUINO_NANO_33_BLE", "nrf" }, { "^PCA10", "nrf" }, { "NRF", "nrf" },
}

-- The board file of id if there is one (nil, not an error, when there is none or it is broken).
local function file_of(id)
  if type(id) ~= "string" or not id:match("^[%w_%-]+$") then return nil end
  local ok, t = pcall(M.load, id)
  return ok and t or nil
end

function M.mpy_port(id)
  if type(id) ~= "string" then return nil end
  for _, t in ipairs({ file_of(id) or {}, M.KNOWN[id] or {} }) do
    if t.mpy_port then return t.mpy_port end
  end
  local up = id:upper()
  for _, p in ipairs(PORT_PATTERNS) do
    if up:find(p[1]) then return p[2] end
  end
  return nil
end

-- Every board name mpctl knows, as { name, id, variants } (board files first, then KNOWN).
local function machine_names()
  local out, seen = {}, {}
  local function add(id, t)
    if seen[id] or not t.machine then return end
    seen[id] = true
    local names = type(t.machine) == "table" and t.machine or { t.machine }
    for _, name in ipairs(names) do out[#out + 1] = { name = name, id = id, variants = t.machine_variants } end
  end
  for _, t in ipairs(M.all()) do add(t.id, t) end
  for id, t in pairs(M.KNOWN) do add(id, t) end
  return out
end

-- Older firmware's machine string -> board id (and variant when the string says so); the longest
-- board name that prefixes it wins ("Raspberry Pi Pico W" over "Raspberry Pi Pico").
function M.from_machine(machine)
  if type(machine) ~= "string" or machine == "" then return nil end
  local name = machine:match("^(.*) with ") or machine
  local best
  for _, m in ipairs(machine_names()) do
    if (name == m.name or name:sub(1, #m.name + 1) == m.name .. " ") and (not best or #m.name > #best.name) then
      best = m
    end
  end
  if not best then return nil end
  local variant
  for pattern, repl in pairs(best.variants or {}) do
    local cap = machine:match(pattern)
    if cap then variant = repl:gsub("%%1", cap) break end
  end
  return best.id, variant
end

local HOSTED_PLATFORMS = { webassembly = true, linux = true, darwin = true, win32 = true, freebsd = true }

-- Which board a MicroPython says it is, from repl:info() (mpctl.repl) or an equivalent table:
-- sys.implementation._build ("BOARD[-VARIANT]", 1.25+), else the machine string.
function M.identify(info)
  local out = { machine = info.machine or (info.uname and info.uname.machine), build = info.build }
  local v = info.version
  local uv = info.uname and info.uname.version
  -- os.uname().version carries the preview suffix: "v1.24.0-preview.109.gfce3cea24 on 2024-07-18"
  local full = uv and uv:match("^v?(%d+%.%d+%.%d+[%w%.%-]*)")
  out.version = full or (v and v:gsub("^v", "")) or nil
  if out.version then out.version = out.version:gsub("%-$", "") end
  out.platform = info.platform
  if HOSTED_PLATFORMS[info.platform or ""] then
    -- unix and webassembly builds have variants, not boards: _build is e.g. "pyscript"
    out.how = "hosted port " .. info.platform .. (info.build and info.build ~= "" and (", build " .. info.build) or "")
  elseif info.build and info.build ~= "" then
    out.board, out.variant = info.build:match("^([^-]+)%-(.+)$")
    out.board = out.board or info.build
    out.how = "sys.implementation._build"
  else
    out.board, out.variant = M.from_machine(out.machine)
    out.how = out.board and "machine name" or nil
  end
  return out
end

-- The usb entry of `b` matching vid/pid (carries per-adapter hints such as reset="usb-jtag").
function M.usb_entry(b, vid, pid)
  for _, u in ipairs(b.usb or {}) do
    if u.vid == vid and u.pid == pid then return u end
  end
  return nil
end

return M
