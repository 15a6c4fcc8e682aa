--[[ mpctl.esp.bundle: ESP-IDF build output packed in a .zip or .tar.* (a "bundle"), read entry by
entry through mpctl.archive without unpacking.

    bundle.is_bundle(path) -> bool             by name: .zip, .tar.*, .tgz
    bundle.read(path[, opts]) -> {parts={ {offset=, name=, data=, size=} }, chip=, settings=, source=}
        opts.max: refuse a bundle whose parts hold more bytes than this (the flash size)
    bundle.flash_args(text[, prefix]) -> parts, settings   the text flash_args format
    bundle.flasher_args(json_text[, prefix]) -> parts, settings, chip

ESP-IDF writes build/flasher_args.json {"flash_files": {"0x1000": "bootloader/bootloader.bin", ...},
"flash_settings": {...}, "extra_esptool_args": {"chip": "esp32", ...}} and the text build/flash_args
("--flash_mode dio ...\n0x1000 bootloader/bootloader.bin\n..."); either describes the bundle.
A bundle is refused (kind "refused", nothing written) when an entry name is absolute or has a `..`
part (it would name a file outside the bundle), when an offset is not a number from 0 to 2^32-1,
when a part ends past 4 GiB or past opts.max, and when parts overlap.
]]
local errors = require("mpctl.errors")

local M = {}

local MAX_ADDRESS = 0xFFFFFFFF -- the ROM loader's addresses are 32 bits (esptool: struct "<I")

local function refuse(where, fmt, ...)
  errors.raise("refused", where, string.format(fmt, ...),
    { hint = "rebuild the bundle with ESP-IDF (idf.py build) or flash a plain image" })
end

function M.is_bundle(path)
  return type(path) == "string" and (path:match("%.zip$") or path:match("%.tar%.%w+$") or path:match("%.tgz$")) ~= nil
end

-- "0x1000", "4096" or a number -> integer in 0..2^32-1, else nil and why. Lua's tonumber wraps
-- hexadecimal integers past 64 bits and reads "1e3" as a float, so the text is checked first.
function M.parse_offset(s)
  if math.type(s) == "integer" then
    if s < 0 or s > MAX_ADDRESS then return nil, "out of range" end
    return s
  end
  if type(s) ~= "string" then return nil, "not a number" end
  local neg = s:match("^%s*%-") ~= nil
  local hex = s:match("^%s*0[xX](%x+)%s*$")
  local dec = s:match("^%s*(%d+)%s*$")
  if neg then return nil, "negative" end
  local digits = hex and hex:gsub("^0+", "") or dec and dec:gsub("^0+", "")
  if not digits then return nil, "not a number" end
  if (hex and #digits > 8) or (dec and #digits > 10) then return nil, "out of range" end
  local v = hex and tonumber(hex, 16) or tonumber(dec)
  if v > MAX_ADDRESS then return nil, "out of range" end
  return v
end

-- An entry name that stays inside the bundle: relative, no ".." part, no NUL.
local function safe_name(name)
  if name:sub(1, 1) == "/" or name:find("\\", 1, true) or name:find("%z") or name:match("^%a:") then return false end
  for part in name:gmatch("[^/]+") do
    if part == ".." then return false end
  end
  return true
end

local function add_part(parts, where, off, file, prefix)
  local offset, why = M.parse_offset(off)
  if not offset then
    refuse(where, "offset %q for %s is %s: offsets are 0x0 to 0xFFFFFFFF", tostring(off), tostring(file), why)
  end
  if type(file) ~= "string" or file == "" then refuse(where, "no file name for offset 0x%x", offset) end
  if not safe_name(file) then
    refuse(where, "malformed bundle: part %q at 0x%x names a file outside the bundle (absolute or '..')", file, offset)
  end
  parts[#parts + 1] = { offset = offset, name = prefix .. file }
end

-- The text form is esptool's argument file: "--name value" settings, then offset/file pairs, split
-- over lines however the writer liked. A "--flag" followed by an offset or another option has no value.
function M.flash_args(text, prefix, where)
  where = where or "flash_args"
  local parts, settings, tokens = {}, {}, {}
  for t in text:gmatch("%S+") do tokens[#tokens + 1] = t end
  local i = 1
  while i <= #tokens do
    local t, nxt = tokens[i], tokens[i + 1]
    if t:sub(1, 2) == "--" then
      local k, v = t:match("^%-%-([%w_%-]+)=(.*)$")
      if k then
        settings[k], i = v, i + 1
      elseif nxt == nil or nxt:sub(1, 1) == "-" or nxt:match("^0[xX]%x+$") then
        settings[t:sub(3)], i = true, i + 1
      else
        settings[t:sub(3)], i = nxt, i + 2
      end
    else
      if nxt == nil then refuse(where, "offset %s has no file after it", t) end
      add_part(parts, where, t, nxt, prefix or "")
      i = i + 2
    end
  end
  return parts, settings
end

function M.flasher_args(text, prefix, where)
  where = where or "flasher_args.json"
  local ui = require("mpctl.ui")
  local ok, j = pcall(ui.json_decode, text)
  if not ok or type(j) ~= "table" or type(j.flash_files) ~= "table" then
    refuse(where, "not ESP-IDF flasher_args JSON (an object with \"flash_files\")")
  end
  local parts = {}
  for off, file in pairs(j.flash_files) do add_part(parts, where, off, file, prefix or "") end
  local chip = type(j.extra_esptool_args) == "table" and j.extra_esptool_args.chip or nil
  if chip ~= nil and type(chip) ~= "string" then refuse(where, "extra_esptool_args.chip is not a string") end
  local settings = type(j.flash_settings) == "table" and j.flash_settings or nil
  return parts, settings, chip
end

function M.read(path, opts)
  opts = opts or {}
  local archive = require("mpctl.archive")
  local names = {}
  for _, e in ipairs(archive.list(path)) do
    local name = e.name:gsub("^%./", "")
    if not safe_name(name) then
      refuse(path, "malformed bundle: entry %q is absolute or has a '..' part", e.name)
    end
    names[name] = e
  end
  local function find(suffix)
    for name in pairs(names) do
      if name == suffix or name:sub(-#suffix - 1) == "/" .. suffix then return name end
    end
  end
  local layout = { source = path }
  local args = find("flasher_args.json")
  if args then
    local prefix = args:match("^(.*/)[^/]*$") or ""
    layout.parts, layout.settings, layout.chip = M.flasher_args(archive.read(path, args), prefix, path .. ": " .. args)
  else
    local fa = find("flash_args")
    if not fa then refuse(path, "no flasher_args.json or flash_args inside; cannot tell the offsets") end
    local prefix = fa:match("^(.*/)[^/]*$") or ""
    layout.parts, layout.settings = M.flash_args(archive.read(path, fa), prefix, path .. ": " .. fa)
  end
  if #layout.parts == 0 then refuse(path, "its flash arguments name no part to write") end
  table.sort(layout.parts, function(a, b) return a.offset < b.offset end)
  local total = 0
  for _, p in ipairs(layout.parts) do
    if not names[p.name] then
      refuse(path, "declares %s at 0x%x but does not contain it", p.name, p.offset)
    end
    local size = names[p.name].size
    if opts.max and size and p.offset + size > opts.max then
      refuse(path, "%s (0x%x + %d bytes) ends past the end of the %d-byte flash", p.name, p.offset, size, opts.max)
    end
    if opts.max and size and total + size > opts.max then
      refuse(path, "its parts hold more than %d bytes, the size of the flash", opts.max)
    end
    p.data = archive.read(path, p.name)
    p.size = #p.data
    total = total + p.size
    if p.offset + p.size - 1 > MAX_ADDRESS then
      refuse(path, "%s (0x%x + %d bytes) ends past the 4 GiB address space", p.name, p.offset, p.size)
    end
    if opts.max and p.offset + p.size > opts.max then
      refuse(path, "%s (0x%x + %d bytes) ends past the end of the %d-byte flash", p.name, p.offset, p.size, opts.max)
    end
  end
  for i = 2, #layout.parts do
    local a, b = layout.parts[i - 1], layout.parts[i]
    if a.offset + a.size > b.offset then
      refuse(path, "%s (0x%x + %d bytes) overlaps %s at 0x%x", a.name, a.offset, a.size, b.name, b.offset)
    end
  end
  for _, p in ipairs(layout.parts) do p.chip = layout.chip end
  return layout
end

return M
