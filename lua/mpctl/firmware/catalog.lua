--[[ mpctl.firmware.catalog: what a firmware source offers for a board, and picking one file.

    catalog.source(opts) -> {kind="http"|"dir", base=, name=}
    catalog.parse_version(s) -> {major, minor, patch, preview=, text=} | nil
    catalog.version_less(a, b) -> bool          a preview of X.Y.Z sorts before X.Y.Z
    catalog.exact_version(s) -> bool            X.Y.Z or a preview with its commit (release files never change)
    catalog.parse_name(file, board) -> entry | nil
    catalog.parse_page(html, board) -> { entries }
    catalog.list(board, opts) -> { entries newest first }, info {source=, page=, from_cache=, offline=, page_time=}
    catalog.select(entries, version, opts) -> entry | nil, why
    catalog.type_order(board) -> { "bin", ... }  file types in the order the board's port flashes them

Layout (facts from micropython's tools/autobuild, see anchors §4): a board page at
/download/BOARD/ links files /resources/firmware/BOARD[-VARIANT]-YYYYMMDD-vX.Y.Z[-preview.N.gHASH].ext,
and /download/ links every board page (how an unknown board id gets the closest known ids).
]]
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local time = require("mpctl.time")
local errors = require("mpctl.errors")
local cache = require("mpctl.firmware.cache")
local net = require("mpctl.firmware.download")

local M = {}

M.DEFAULT_SOURCE = "https://micropython.org"

-- What can be flashed; .elf and .map files on the same pages are for debugging.
M.FIRMWARE_TYPES = { bin = true, ["app-bin"] = true, uf2 = true, dfu = true, hex = true, zip = true }

local EXT_BY_PORT = {
  esp32 = { "bin", "app-bin", "uf2" }, esp8266 = { "bin" }, rp2 = { "uf2" }, stm32 = { "dfu", "hex" },
  samd = { "uf2" }, nrf = { "uf2", "hex", "bin" }, mimxrt = { "bin", "hex", "uf2" },
  ["renesas-ra"] = { "bin", "hex" }, alif = { "zip" }, cc3200 = { "zip" },
}

function M.type_order(board)
  return EXT_BY_PORT[require("mpctl.board").mpy_port(board or "") or ""] or { "bin", "uf2", "dfu", "hex", "app-bin", "zip" }
end

---------------------------------------------------------------------------------------------
-- versions and file names

-- "1.24.1", "v1.24.0-preview.109.gfce3cea24" -> {1,24,1, preview=N|nil, text="1.24.1"}
function M.parse_version(s)
  if type(s) ~= "string" then return nil end
  s = s:gsub("^v", "")
  local major, minor, patch, rest = s:match("^(%d+)%.(%d+)%.?(%d*)(.*)$")
  if not major then return nil end
  local v = { tonumber(major), tonumber(minor), tonumber(patch) or 0, text = s }
  if rest ~= "" then
    local n = rest:match("^%-preview%.?(%d*)")
    if not n then return nil end
    v.preview = tonumber(n) or 0
  end
  return v
end

function M.version_less(a, b)
  for i = 1, 3 do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  if (a.preview ~= nil) ~= (b.preview ~= nil) then return a.preview ~= nil end
  return (a.preview or 0) < (b.preview or 0)
end

-- One file and only one can be meant: a release X.Y.Z, or a preview named down to its commit.
function M.exact_version(s)
  if type(s) ~= "string" then return false end
  s = s:gsub("^v", "")
  return s:match("^%d+%.%d+%.%d+$") ~= nil or s:match("^%d+%.%d+%.%d+%-preview%.%d+%.g%x+$") ~= nil
end

-- BOARD[-VARIANT]-YYYYMMDD-vX.Y.Z[-preview.N.gHASH].ext; nil for other names (elf, map, other boards).
function M.parse_name(file, board)
  local prefix, date, ver, ext = file:match("^(.-)%-(%d%d%d%d%d%d%d%d)%-v(%d+%.%d+[%.%d]*[%w%.%-]-)%.(%a[%w%-]*)$")
  if not prefix then return nil end
  local v = M.parse_version(ver)
  if not v then return nil end
  local variant
  if board then
    if prefix == board then
      variant = nil
    elseif prefix:sub(1, #board + 1) == board .. "-" then
      variant = prefix:sub(#board + 2)
    else
      return nil
    end
  end
  if not M.FIRMWARE_TYPES[ext] then return nil end
  return {
    file = file, board = board or prefix, variant = variant, date = date, version = v.text,
    v = v, preview = v.preview ~= nil, type = ext,
  }
end

---------------------------------------------------------------------------------------------
-- sources: micropython.org, an HTTP(S) mirror of its layout, or a local folder

function M.source(opts)
  local s = (opts and (opts.source or opts.mirror)) or net.env("MPCTL_MIRROR") or M.DEFAULT_SOURCE
  if s:match("^https?://") then
    return { kind = "http", base = (s:gsub("/+$", "")), name = s }
  end
  local dir = s:gsub("^file://", "")
  return { kind = "dir", dir = dir, base = dir, name = dir }
end

local function hrefs(html)
  local out = {}
  for _, href in html:gmatch("[hH][rR][eE][fF]%s*=%s*([\"'])(.-)%1") do out[#out + 1] = href end
  for href in html:gmatch("[hH][rR][eE][fF]%s*=%s*([^\"'%s>]+)") do out[#out + 1] = href end
  return out
end

-- Links to /resources/firmware/<file> in a board page; only the file name is kept, and the URL is
-- rebuilt on the source's base so a mirror that copied micropython.org's pages verbatim works.
function M.parse_page(html, board)
  local seen, out = {}, {}
  for _, href in ipairs(hrefs(html)) do
    href = href:gsub("&amp;", "&")
    local file = href:match("/resources/firmware/([^/?#]+)$") or href:match("^resources/firmware/([^/?#]+)$")
    if file and not seen[file] then
      local e = M.parse_name(file, board)
      if e then
        seen[file] = true
        out[#out + 1] = e
      end
    end
  end
  return out
end

-- Board ids linked from a /download/ index page ("ESP32_GENERIC" or "/download/ESP32_GENERIC/").
function M.parse_index(html)
  local ids, seen = {}, {}
  for _, href in ipairs(hrefs(html)) do
    local id = href:match("^/?download/([%w_%-]+)/?$") or href:match("/download/([%w_%-]+)/?$") or
      href:match("^([%u%d][%w_%-]*)/?$")
    if id and not seen[id] then seen[id] = true ids[#ids + 1] = id end
  end
  return ids
end

local function sort_entries(list)
  table.sort(list, function(a, b)
    if a.version ~= b.version then return M.version_less(b.v, a.v) end
    if a.date ~= b.date then return a.date > b.date end
    if (a.variant or "") ~= (b.variant or "") then return (a.variant or "") < (b.variant or "") end
    return a.type < b.type
  end)
  return list
end

function M.file_url(src, file)
  if src.kind == "http" then return src.base .. "/resources/firmware/" .. file end
  return fs.join(src.dir, "resources", "firmware", file)
end

-- The board ids a source knows, best effort (nil when they cannot be had).
local function known_boards(src, opts)
  if src.kind == "dir" then
    local seen, ids = {}, {}
    local function add(id) if id and not seen[id] then seen[id] = true ids[#ids + 1] = id end end
    local dl = fs.join(src.dir, "download")
    if fs.exists(dl) then for _, n in ipairs(fs.list(dl)) do if n ~= "index.html" then add(n) end end end
    local files = fs.join(src.dir, "resources", "firmware")
    if fs.exists(files) then
      for _, n in ipairs(fs.list(files)) do
        local e = M.parse_name(n)
        -- without a board page the id and the variant are not told apart: keep the id the
        -- variant-free files use, else the whole prefix
        if e then add(e.board) end
      end
    end
    return ids
  end
  local ok, res = pcall(net.get, src.base .. "/download/", opts, { retries = 0 })
  if ok then return M.parse_index(res.body) end
end

local function unknown_board(board, src, opts, detail)
  local ids = known_boards(src, opts)
  local close = ids and require("mpctl.text").closest(board, ids, 8) or {}
  errors.raise("not_found", src.name, string.format("no board %s at %s%s", board, src.name, detail or ""), {
    hint = #close > 0 and ("closest board ids: " .. table.concat(close, ", "))
      or "board ids look like ESP32_GENERIC, RPI_PICO, PYBV11 (see " .. src.name .. "/download/)",
    board = board, closest = close,
  })
end

-- Reads the board page (network or folder); caches it so `list` works offline.
local function load_page(board, src, opts)
  if src.kind == "dir" then
    local page = fs.join(src.dir, "download", board, "index.html")
    if fs.exists(page) then return fs.read(page), page end
    local folder = fs.join(src.dir, "resources", "firmware")
    if not fs.exists(folder) then
      errors.raise("not_found", src.dir, string.format("firmware mirror %s has neither download/%s/index.html " ..
        "nor resources/firmware/", src.dir, board))
    end
    local links = {}
    for _, name in ipairs(fs.list(folder)) do
      if M.parse_name(name, board) then
        links[#links + 1] = string.format('<a href="/resources/firmware/%s">%s</a>', name, name)
      end
    end
    if #links == 0 then unknown_board(board, src, opts, " (no file named " .. board .. "-... in " .. folder .. ")") end
    return table.concat(links, "\n"), folder
  end
  local url = src.base .. "/download/" .. board .. "/"
  local ok, res = pcall(net.get, url, opts, { retries = opts.retries or 2 }, "board page " .. board)
  if not ok then
    if net.is_missing(res) then unknown_board(board, src, opts, " (HTTP 404 for " .. url .. ")") end
    error(res, 0)
  end
  cache.save_page(opts, src.name, board, res.body)
  return res.body, url
end

local function from_cached_page(board, src, opts, info)
  local path = cache.page_path(opts, src.name, board)
  local st = fs.stat(path)
  if not st then return nil end
  info.from_cache = true
  info.page_time = math.floor(st.mtime)
  info.page = path
  return fs.read(path)
end

-- The catalog of board at the source. offline: the board page cached by an earlier run (a
-- folder mirror is read as usual: it is not the network); no page cached: the files in the cache.
function M.list(board, opts)
  opts = opts or {}
  if type(board) ~= "string" or board == "" then
    errors.raise("usage", "board=", "no board given: use board=ID (e.g. board=ESP32_GENERIC)")
  end
  local src = M.source(opts)
  local info = { source = src.name, board = board }
  local html
  if (opts.offline or net.env("MPCTL_OFFLINE")) and src.kind == "http" then
    info.offline = true
    html = from_cached_page(board, src, opts, info)
    if not html then
      info.page = nil
      local entries = {}
      for _, meta in ipairs(cache.list(opts)) do
        local e = meta.board == board and meta.file and M.parse_name(meta.file, board)
        if e then e.url = meta.url e.cached = true entries[#entries + 1] = e end
      end
      return sort_entries(entries), info
    end
  else
    local ok, where
    ok, html, where = pcall(load_page, board, src, opts)
    if not ok then
      if not net.is_unreachable(html) then error(html, 0) end
      local err = html
      html = from_cached_page(board, src, opts, info)
      if not html then error(err, 0) end
      info.error = tostring(err)
      ui.log("warn", "firmware source unreachable, using the board page cached earlier (%s)", time.iso(info.page_time))
    else
      info.page = where
    end
  end
  local entries = M.parse_page(html, board)
  for _, e in ipairs(entries) do e.url = M.file_url(src, e.file) end
  return sort_entries(entries), info
end

-- The candidates of one variant only: variant=SPIRAM means the SPIRAM files, never the plain ones.
function M.of_variant(entries, variant)
  local out = {}
  for _, e in ipairs(entries) do
    if (e.variant or "") == (variant or "") then out[#out + 1] = e end
  end
  return out
end

-- Picks one file. version: "latest" (newest release), "preview" (newest preview), or X.Y.Z[...].
function M.select(entries, version, opts)
  opts = opts or {}
  version = tostring(version or "latest"):gsub("^v", "")
  local want_type = opts.type
  local board = entries[1] and entries[1].board
  local candidates = M.of_variant(entries, opts.variant)
  if #candidates == 0 then
    return nil, string.format("no %s files%s", board or "firmware", opts.variant and (" for variant " .. opts.variant) or "")
  end
  local chosen_version
  if version == "latest" or version == "stable" then
    for _, e in ipairs(candidates) do
      if not e.preview then chosen_version = e.version break end
    end
    if not chosen_version then return nil, "no release build (only previews); use version=preview" end
  elseif version == "preview" then
    for _, e in ipairs(candidates) do
      if e.preview then chosen_version = e.version break end
    end
    chosen_version = chosen_version or candidates[1].version
  else
    local want = M.parse_version(version)
    if not want then return nil, "not a version: " .. version end
    for _, e in ipairs(candidates) do
      if e.version == version or (not want.preview and not e.preview and e.v[1] == want[1] and e.v[2] == want[2]
          and e.v[3] == want[3]) then
        chosen_version = e.version
        break
      end
    end
    if not chosen_version then
      local have = {}
      for _, e in ipairs(candidates) do
        if not have[e.version] then have[#have + 1] = e.version have[e.version] = true end
        if #have >= 8 then break end
      end
      return nil, string.format("no version %s; available: %s", version, table.concat(have, ", "))
    end
  end
  local types = {}
  for _, e in ipairs(candidates) do
    if e.version == chosen_version then types[#types + 1] = e end
  end
  local order = want_type and { want_type } or M.type_order(board)
  for _, t in ipairs(order) do
    for _, e in ipairs(types) do
      if e.type == t then return e end
    end
  end
  local have = {}
  for _, e in ipairs(types) do have[#have + 1] = e.type end
  return nil, string.format("version %s has no .%s file (has: %s)", chosen_version,
    want_type or table.concat(order, "/."), table.concat(have, ", "))
end

return M
