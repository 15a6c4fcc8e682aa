--[[ mpctl.mip.source: micropython-lib's package index (or a mirror of it) read through a cache.

    source.open(opts) -> src        opts.index (URL or folder; else $MPCTL_MIP_INDEX, else
                                    micropython.org/pi/v2), cache_dir, offline, refresh, ca_file,
                                    connect_timeout, stall_timeout, retries, backoff
    src:index() -> index table | nil, why     index.json (its package list), nil when unreachable
    src:package(name, version, mpy) -> package table      package/<mpy>/<name>/<version>.json
    src:file(short_hash) -> data                          file/<h[:2]>/<h>, checked against h

The layout is the one micropython-lib's tools/build.py writes and mip/mpremote read
(tools/mpremote/mpremote/mip.py in micropython): index.json lists {name, version, versions={mpy
version -> [...]}}, package/<mpy version or "py">/<name>/<version>.json holds "hashes" (pairs of
target path and the first hex digits of the file's SHA-256: 8 by default), "urls" and "deps"
(pairs of name and version), and file/<first 2 digits>/<short hash> holds the file itself. A
folder with that layout (a copy of the built index) works as well as a web server.

Cache (<XDG cache>/mpctl/mip unless cache_dir=): files/<h[:2]>/<h> by content, shared by every
index; <source>/index.json and <source>/package/... as last read. A released version's package
file never changes (build.py writes it once: "a package version is locked the first time it's
seen"), so an exact version in the cache is not asked for again unless refresh=yes; "latest" and
the index are asked for each time and the cached copy is used when the index cannot be reached or
offline=yes. Every file is checked against its hash when it arrives and again when it is read from
the cache.
]]
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local hash = require("mpctl.hash")
local errors = require("mpctl.errors")
local download = require("mpctl.firmware.download")

local M = {}

-- micropython-lib's index as mip and mpremote use it (mpremote's _PACKAGE_INDEX)
M.DEFAULT_INDEX = "https://micropython.org/pi/v2"
-- the shortest hash prefix accepted as a check: build.py's default prefix is 8 hex digits
M.MIN_HASH = 8

local Source = {}
Source.__index = Source

local function safe_name(s) return (s:gsub("^%a+://", ""):gsub("[^%w%.%-]+", "_")) end

function M.cache_dir(opts)
  if opts.cache_dir then return opts.cache_dir end
  return fs.join(fs.xdg("cache"), "mip") -- fs.xdg ends in /mpctl
end

function M.open(opts)
  opts = opts or {}
  local index = opts.index or download.env("MPCTL_MIP_INDEX") or M.DEFAULT_INDEX
  index = index:gsub("/+$", "")
  local is_http = index:match("^https?://") ~= nil
  if not is_http then
    local st = fs.stat(index)
    if not st or st.type ~= "dir" then
      errors.raise("usage", "index=", "mip: index " .. index .. " is neither an http(s):// URL nor a folder "
        .. "(give index=URL or a folder holding index.json, package/ and file/)")
    end
  end
  local cache = M.cache_dir(opts)
  return setmetatable({url = index, http = is_http, opts = opts, cache = cache,
    docs = fs.join(cache, safe_name(index))}, Source)
end

-- Reads one file of the index: its bytes, or nil and an error (missing: e.status == 404).
function Source:_get(rel)
  if not self.http then
    local p = fs.join(self.url, rel)
    local st = fs.stat(p)
    if not st or st.type ~= "file" then
      return nil, errors.new({kind = "not_found", where = p, status = 404, detail = "no file " .. p})
    end
    return fs.read(p)
  end
  if self.opts.offline then
    return nil, errors.new({kind = "unsupported", where = self.url, retryable = true,
      detail = "offline=yes: not asking " .. self.url})
  end
  local url = self.url .. "/" .. rel
  local ok, res = pcall(download.get, url, self.opts, {progress = false}, "mip " .. rel)
  if ok then return res.body end
  return nil, res
end

local function keep(path, data)
  pcall(function()
    fs.mkdir(fs.dirname(path), {parents = true})
    fs.write(path, data)
  end)
end

local function decode(text, where)
  local ok, v = pcall(ui.json_decode, text)
  if not ok or type(v) ~= "table" then
    errors.raise("protocol", where, "mip: " .. where .. " is not JSON (is index= a micropython-lib index?)")
  end
  return v
end

-- A JSON document of the index, from the source or (when it cannot be reached) the cache.
-- `fixed`: the document never changes once published (an exact version), so a cached copy is
-- used without asking unless refresh=yes. Returns the decoded table, or nil and the error.
function Source:_doc(rel, fixed)
  local cached = fs.join(self.docs, rel)
  if fixed and not self.opts.refresh and fs.exists(cached) then
    ui.log("verbose", "mip: %s from the cache", rel)
    return decode(fs.read(cached), cached)
  end
  local body, err = self:_get(rel)
  if body then
    local v = decode(body, self.url .. "/" .. rel)
    if self.http then keep(cached, body) end
    return v
  end
  if download.is_unreachable(err) and fs.exists(cached) then
    ui.log(self.opts.offline and "verbose" or "warn", "mip: %s; using the copy of %s cached earlier",
      tostring(err.detail or err), rel)
    return decode(fs.read(cached), cached)
  end
  return nil, err
end

function Source:index()
  return self:_doc("index.json", false)
end

local function describe(err)
  return errors.is_error(err) and (err.detail or err.msg) or tostring(err)
end

function Source:package(name, version, mpy)
  local rel = string.format("package/%s/%s/%s.json", mpy, name, version)
  local pkg, err = self:_doc(rel, version ~= "latest")
  if pkg then return pkg end
  if download.is_missing(err) then return nil, err end
  errors.raise(errors.kind(err) or "io", self.url, string.format("mip: cannot read %s from %s: %s%s", rel, self.url,
    describe(err), self.http and " (offline=yes uses what the cache holds; index= names a mirror)" or ""))
end

local function check_hash(short)
  if type(short) ~= "string" or #short < M.MIN_HASH or not short:match("^%x+$") then
    errors.raise("refused", "hashes", string.format("mip: package file hash '%s' is not a SHA-256 prefix of at "
      .. "least %d hex digits: cannot verify the file, nothing installed", tostring(short), M.MIN_HASH))
  end
  return short:lower()
end

-- The bytes of file `short` (a SHA-256 prefix), from the cache or the source, checked against it.
function Source:file(short, label)
  short = check_hash(short)
  local rel = string.format("file/%s/%s", short:sub(1, 2), short)
  local cached = fs.join(self.cache, "files", short:sub(1, 2), short)
  if fs.exists(cached) then
    local data = fs.read(cached)
    if hash.hex(hash.sha256(data)):sub(1, #short) == short then return data, true end
    ui.log("warn", "mip: cached %s is damaged, removing it", cached)
    pcall(fs.remove, cached)
  end
  local data, err = self:_get(rel)
  if not data then
    errors.raise(errors.kind(err) or "io", self.url, string.format("mip: cannot read %s (%s) from %s: %s", rel, label,
      self.url, describe(err)))
  end
  local got = hash.hex(hash.sha256(data))
  if got:sub(1, #short) ~= short then
    errors.raise("refused", self.url .. "/" .. rel, string.format("mip: %s from %s does not match its hash, nothing "
      .. "installed:\n  expected sha256 %s...\n  got      %s\nthe index or the mirror serves a changed file; tell its keeper",
      label, self.url .. "/" .. rel, short, got))
  end
  keep(cached, data)
  return data, false
end

return M
