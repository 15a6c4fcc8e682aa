--[[ mpctl.firmware.cache: downloaded firmware by content, and the board pages last read.

    cache.dir(opts) -> folder          opts.cache_dir, $MPCTL_CACHE_DIR, else <XDG cache>/mpctl/firmware
    cache.list(opts) -> { sidecars }   each {board, variant, version, type, file, size, sha256, url, time, path}
    cache.hit(opts, sha, type) -> path | nil       the object, its bytes hashed now (a damaged one is removed)
    cache.by_sha256(sha, opts) -> path, sidecar | nil
    cache.find(opts, board, variant, version, type, file) -> sidecar | nil
    cache.newest(opts, board, variant, type_order, version) -> sidecar | nil
    cache.store(opts, tmp, img, res) -> path       moves a checked download into objects/
    cache.page_path(opts, source_name, board), cache.save_page(opts, source_name, board, html)

Layout: objects/<sha256>.<ext> with objects/<sha256>.json beside it; partial/<file>.part (+ .json)
for downloads in progress; pages/<source>/<BOARD>.html.
]]
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local ui = require("mpctl.ui")
local time = require("mpctl.time")

local M = {}

function M.dir(opts)
  if opts and opts.cache_dir then return opts.cache_dir end
  local e = os.getenv("MPCTL_CACHE_DIR")
  if e and e ~= "" then return e end
  return fs.join(fs.xdg("cache"), "firmware") -- fs.xdg already ends in /mpctl
end

function M.objects_dir(opts) return fs.join(M.dir(opts), "objects") end
function M.partial_dir(opts) return fs.join(M.dir(opts), "partial") end

local function object_path(opts, sha, ftype)
  return fs.join(M.objects_dir(opts), sha .. "." .. ftype)
end

local function safe_name(s)
  return (s:gsub("[^%w%.%-]+", "_"))
end

function M.page_path(opts, source_name, board)
  return fs.join(M.dir(opts), "pages", safe_name(source_name), board .. ".html")
end

-- Best effort: a page that cannot be cached only makes a later offline `list` poorer.
function M.save_page(opts, source_name, board, html)
  local path = M.page_path(opts, source_name, board)
  pcall(function()
    fs.mkdir(fs.dirname(path), { parents = true })
    fs.write(path, html)
  end)
end

function M.list(opts)
  local dir = M.objects_dir(opts or {})
  local out = {}
  if not fs.exists(dir) then return out end
  for _, name in ipairs(fs.list(dir)) do
    if name:match("%.json$") then
      local ok, meta = pcall(function() return ui.json_decode(fs.read(fs.join(dir, name))) end)
      if ok and type(meta) == "table" and type(meta.sha256) == "string" and type(meta.type) == "string" then
        meta.path = object_path(opts or {}, meta.sha256, meta.type)
        if fs.exists(meta.path) then out[#out + 1] = meta end
      end
    end
  end
  return out
end

function M.hit(opts, sha, ftype)
  local p = object_path(opts, sha, ftype)
  if not fs.exists(p) then return nil end
  local got = hash.file(p, "sha256")
  if got ~= sha then
    ui.log("warn", "cache: %s is damaged (sha256 %s), removing it", p, got)
    fs.remove(p)
    return nil
  end
  return p
end

function M.by_sha256(sha, opts)
  for _, meta in ipairs(M.list(opts)) do
    if meta.sha256 == sha then
      local path = M.hit(opts or {}, sha, meta.type)
      if path then return path, meta end
    end
  end
end

function M.find(opts, board, variant, version, ftype, file)
  for _, meta in ipairs(M.list(opts)) do
    if meta.board == board and (meta.variant or "") == (variant or "") and meta.type == ftype and
        (file == nil or meta.file == file) and (version == nil or meta.version == version) then
      return meta
    end
  end
end

-- The newest cached build that fits; among files of one version the port's preferred type wins
-- (as select() does online), not whichever sidecar the listing, sorted by hash, gave first.
function M.newest(opts, board, variant, type_order, version)
  local catalog = require("mpctl.firmware.catalog")
  local rank = {}
  for i, t in ipairs(type_order) do rank[t] = i end
  local best
  for _, meta in ipairs(M.list(opts)) do
    local v = catalog.parse_version(meta.version or "")
    if meta.board == board and (meta.variant or "") == (variant or "") and v and rank[meta.type] then
      local version_ok = (version == "latest" or version == "stable") and not v.preview
        or version == "preview" or meta.version == version
      local better = not best or catalog.version_less(best.v, v)
        or (not catalog.version_less(v, best.v) and rank[meta.type] < rank[best.type])
      if version_ok and better then
        best = meta
        best.v = v
      end
    end
  end
  return best
end

function M.store(opts, tmp, img, res)
  local dir = M.objects_dir(opts)
  fs.mkdir(dir, { parents = true })
  local dest = object_path(opts, img.sha256, img.type)
  fs.rename(tmp, dest)
  local meta = {
    board = img.board, variant = img.variant, version = img.version, type = img.type, file = img.file,
    size = img.size, sha256 = img.sha256, url = img.url, time = time.iso(time.wall()),
    etag = res and res.etag, last_modified = res and res.last_modified,
  }
  fs.write(fs.join(dir, img.sha256 .. ".json"), ui.json_encode(meta) .. "\n")
  return dest
end

return M
