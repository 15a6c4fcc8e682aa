-- mpctl.board: board files (boards/<ID>.lua) are plain data tables, loaded in an empty
-- environment so a board file cannot do anything but describe a board.
--   board.load(id) -> table (error lists known ids, closest first)
--   board.all() -> list sorted by id;  board.match_usb(vid, pid) -> boards whose usb list has it
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
  if not chunk then error("board file " .. path .. ": " .. err, 0) end
  local ok, t = pcall(chunk)
  if not ok then error("board file " .. path .. ": " .. tostring(t), 0) end
  if type(t) ~= "table" then error("board file " .. path .. " must return a table", 0) end
  for k, ty in pairs(REQUIRED) do
    if type(t[k]) ~= ty then error(string.format("board file %s: field %s must be a %s", path, k, ty), 0) end
  end
  if id and t.id ~= id then
    error(string.format("board file %s declares id %s, expected %s", path, t.id, id), 0)
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
    error("board id must be a word like ESP32_GENERIC, got " .. tostring(id), 0)
  end
  for _, d in ipairs(M.dirs()) do
    local t = load_file(d .. "/" .. id .. ".lua", id)
    if t then return t end
  end
  local ids = require("mpctl.text").closest(id, M.ids())
  error("unknown board '" .. id .. "'; known boards: " .. (#ids > 0 and table.concat(ids, ", ") or "none found"), 0)
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

-- The usb entry of `b` matching vid/pid (carries per-adapter hints such as reset="usb-jtag").
function M.usb_entry(b, vid, pid)
  for _, u in ipairs(b.usb or {}) do
    if u.vid == vid and u.pid == pid then return u end
  end
  return nil
end

return M
