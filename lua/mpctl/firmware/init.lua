--[[ mpctl.firmware: find MicroPython firmware, download it into a content-addressed cache, pin it
in a lock file, and hand a flash recipe what to write where.

    firmware.catalog(board, opts) -> { entries newest first }, info {source=, page=, from_cache=, offline=}
    firmware.select(entries, version, opts) -> entry | nil, why
    firmware.fetch(board, version, opts) -> image {path=, sha256=, size=, file=, board=, variant=,
                                                   version=, type=, url=, cached=, pinned=}
    firmware.get(board_or_id, version, opts)   same as fetch, for recipes (board table or id; a path is a file)
    firmware.pin(board, version, opts)         fetch, then record it in the lock file
    firmware.cached(opts) -> { sidecars }      what the cache holds
    firmware.cached_by_sha256(sha, opts) -> path, sidecar | nil   a cached file, its bytes checked now
    firmware.identify(repl) -> {board=, variant=, version=, machine=, build=, how=}
    firmware.load_file(path, {max=}) -> data   a firmware file a person named: regular files or "-" only
    firmware.bundle(path, {max=}) -> {parts={ {offset=, name=, data=} }, chip=, settings=}
    firmware.parts(img_or_path, board, {max=}) -> { {offset=, name=, data=, size=} }  bundle parts or one image

Options common to these: source (mirror URL or folder; else $MPCTL_MIRROR, else micropython.org),
type (bin|uf2|dfu|app-bin|hex|zip), variant, sha256 (expected), lock (lock file path), offline,
refresh (ask the source even for a version already cached), cache_dir, ca_file, connect_timeout,
stall_timeout, retries, progress (false = no bar), lock_wait (seconds to wait for another
process's change of the lock file, default 10).

The parts live in mpctl.firmware.{catalog,cache,lock,download,file}, board identification in
mpctl.board, ESP-IDF bundles in mpctl.esp.bundle; this module is the flow that joins them.
]]
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local ui = require("mpctl.ui")
local errors = require("mpctl.errors")
local catalog = require("mpctl.firmware.catalog")
local cache = require("mpctl.firmware.cache")
local lock = require("mpctl.firmware.lock")
local download = require("mpctl.firmware.download")
local file = require("mpctl.firmware.file")
local board_mod = require("mpctl.board")
local bundle = require("mpctl.esp.bundle")

local M = {}

-- The pieces, under the names recipes and tests have always used.
M.DEFAULT_SOURCE = catalog.DEFAULT_SOURCE
M.LOCK_NAME = lock.NAME
M.LOCK_WAIT = lock.WAIT
M.FIRMWARE_TYPES = catalog.FIRMWARE_TYPES
M.parse_version, M.version_less, M.parse_name = catalog.parse_version, catalog.version_less, catalog.parse_name
M.parse_page, M.source, M.select, M.type_order = catalog.parse_page, catalog.source, catalog.select, catalog.type_order
M.catalog = catalog.list
M.cache_dir, M.cached, M.cached_by_sha256 = cache.dir, cache.list, cache.by_sha256
M.lock_path, M.lock_read, M.lock_find, M.lock_write = lock.path, lock.read, lock.find, lock.write
M.port_of = board_mod.mpy_port
M.board_from_machine = board_mod.from_machine
M.identify_info = board_mod.identify
M.is_bundle = bundle.is_bundle

function M.identify(repl)
  return board_mod.identify(repl:info())
end

local function img_from_meta(meta, path)
  return {
    board = meta.board, variant = meta.variant, version = meta.version, type = meta.type, file = meta.file,
    url = meta.url, size = meta.size, sha256 = meta.sha256, path = path or meta.path, cached = true,
  }
end

-- The cached file that answers board/version, checked against the lock and sha256=; nil when the
-- cache has none (or its copy was damaged and removed).
local function from_cache(board, version, opts, lk, expect_sha, first_choice)
  local order = opts.type and { opts.type } or catalog.type_order(board)
  -- without the catalog, only the type select() would pick first is surely the one meant
  if first_choice then order = { order[1] } end
  local meta = cache.newest(opts, board, opts.variant, order, version)
  if not meta then return nil end
  local path = cache.hit(opts, meta.sha256, meta.type)
  if not path then return nil, meta end
  local img = img_from_meta(meta, path)
  if lk then
    local pin = lock.find(lk.data, board, opts.variant, img.version, img.type)
    if pin and pin.sha256 ~= img.sha256 then
      errors.raise("refused", lk.path, string.format("cached %s does not match the lock file %s:\n  locked: %s\n" ..
        "  cached: %s", img.file, lk.path, tostring(pin.sha256), img.sha256))
    end
    img.pinned = pin ~= nil
  end
  if expect_sha and expect_sha ~= img.sha256 then
    errors.raise("refused", img.file, string.format("cached %s does not match sha256=:\n  expected: %s\n" ..
      "  cached:   %s", img.file, expect_sha, img.sha256))
  end
  return img
end

local function offline_fetch(board, version, opts, lk, expect_sha, why, detail)
  local img, damaged = from_cache(board, version, opts, lk, expect_sha)
  if damaged then
    errors.raise("not_found", cache.dir(opts), string.format("%s: the cached copy of %s was damaged and has been removed",
      why, damaged.file))
  end
  if not img then
    errors.raise("not_found", cache.objects_dir(opts), string.format("%s: no cached firmware for %s%s version %s in %s; " ..
      "when online, fetch it with: mpctl firmware fetch board=%s version=%s%s", why, board,
      opts.variant and ("-" .. opts.variant) or "", version, cache.objects_dir(opts), board, version,
      detail and ("\n  (" .. detail .. ")") or ""))
  end
  ui.log("info", "%s: using cached %s (%s)", why, img.file, img.version)
  return img
end

-- What every fetch ends with, from the source or from the cache: the lock record and the to= copy.
local function finish(img, opts, lk, pinned)
  if lk and (pinned or opts.pin or fs.exists(lk.path)) then
    local _, added = lock.record(lk.path, img, opts.lock_wait)
    img.pinned = true
    img.newly_pinned = added
    img.lock = lk.path
  end
  if opts.to then
    fs.mkdir(opts.to, { parents = true })
    local dest = fs.join(opts.to, img.file)
    if not fs.exists(dest) or hash.file(dest, "sha256") ~= img.sha256 then fs.write(dest, fs.read(img.path)) end
    img.copy = dest
  end
  return img
end

local function check_sha(opts)
  local expect_sha = opts.sha256 and tostring(opts.sha256):lower()
  if expect_sha and (not expect_sha:match("^%x+$") or #expect_sha ~= 64) then
    errors.raise("usage", "sha256=", string.format("sha256= needs 64 hex digits, got %q", tostring(opts.sha256)))
  end
  return expect_sha
end

-- The file entry the lock pins, if it is not the one select() chose (a rebuilt file with another
-- date must not slip in).
local function pinned_entry(entries, entry, pin, lk, info)
  if not (pin and pin.file and pin.file ~= entry.file) then return entry end
  for _, e in ipairs(entries) do if e.file == pin.file then return e end end
  errors.raise("refused", lk.path, string.format("the lock file %s pins %s, which %s does not offer (it has %s)",
    lk.path, tostring(pin.file), info.source, entry.file))
end

-- The heart of it: catalog -> select -> lock/sha check -> cache or download -> lock record.
function M.fetch(board, version, opts)
  opts = opts or {}
  version = tostring(version or "latest"):gsub("^v", "")
  if type(board) ~= "string" or board == "" then
    errors.raise("usage", "board=", "no board given: use board=ID (e.g. board=ESP32_GENERIC)")
  end
  local lock_file = lock.path(opts, opts.pin)
  local lk = lock_file and { path = lock_file, data = lock.read(lock_file) } or nil
  local expect_sha = check_sha(opts)

  if opts.offline or download.env("MPCTL_OFFLINE") then
    local img = offline_fetch(board, version, opts, lk, expect_sha, "offline")
    return finish(img, opts, lk, img.pinned)
  end
  -- Release files never change: an exact version already in the cache needs no network at all.
  if catalog.exact_version(version) and not opts.refresh then
    local img = from_cache(board, version, opts, lk, expect_sha, true)
    if img then
      ui.log("verbose", "%s %s is in the cache; not asking %s (refresh=yes does)", board, version,
        catalog.source(opts).name)
      return finish(img, opts, lk, img.pinned)
    end
  end
  local ok, entries, info = pcall(catalog.list, board, opts)
  if not ok then
    if download.is_unreachable(entries) then
      ui.log("warn", "cannot reach the firmware source: %s", tostring(entries))
      local img = offline_fetch(board, version, opts, lk, expect_sha, "source unreachable", tostring(entries))
      return finish(img, opts, lk, img.pinned)
    end
    error(entries, 0)
  end
  local entry, why = catalog.select(entries, version, opts)
  if not entry then errors.raise("not_found", info.source, string.format("%s at %s: %s", board, info.source, why)) end

  local pin = lk and lock.find(lk.data, entry.board, entry.variant, entry.version, entry.type)
  entry = pinned_entry(entries, entry, pin, lk, info)
  if pin and expect_sha and pin.sha256 ~= expect_sha then
    errors.raise("refused", lk.path, string.format("sha256= %s disagrees with the lock file %s (%s) for %s",
      expect_sha, lk.path, tostring(pin.sha256), entry.file))
  end
  local expect = { sha256 = expect_sha or (pin and pin.sha256), size = pin and pin.size,
    why = pin and ("locked in " .. lk.path) or (expect_sha and "sha256= given") }

  local img
  local known = expect.sha256 and cache.hit(opts, expect.sha256, entry.type)
  local meta = not known and cache.find(opts, entry.board, entry.variant, entry.version, entry.type, entry.file)
  local hit = meta and (not expect.sha256 or meta.sha256 == expect.sha256) and cache.hit(opts, meta.sha256, meta.type)
  if known then
    img = img_from_meta(entry, known)
    img.sha256, img.size = expect.sha256, fs.stat(known).size
  elseif hit then
    img = img_from_meta(meta, hit)
  else
    img = download.fetch(entry, opts, expect)
    img.cached = false
  end
  img.url = img.url or entry.url
  return finish(img, opts, lk, pin)
end

function M.pin(board, version, opts)
  opts = opts or {}
  opts.pin = true
  return M.fetch(board, version, opts)
end

M.load_file = file.load

-- The largest flash a board file says the board comes with, in bytes (nil when it does not say).
local function board_flash_max(board)
  if type(board) ~= "table" or type(board.flash_sizes) ~= "table" then return nil end
  local max
  for _, s in ipairs(board.flash_sizes) do
    local n, unit = tostring(s):match("^(%d+)%s*([KM])B?$")
    local bytes = n and tonumber(n) * (unit == "M" and 1024 * 1024 or 1024)
    if bytes and (not max or bytes > max) then max = bytes end
  end
  return max
end

-- For recipes: board may be a board table (mpctl.board: id, firmware.ext, variant) or an id;
-- version may also be a path to a firmware file, used as given and still recorded by hash.
function M.get(board, version, opts)
  opts = opts or {}
  local id = type(board) == "table" and (board.id or board.name) or board
  if type(board) == "table" then
    local fw = type(board.firmware) == "table" and board.firmware or {}
    opts.type = opts.type or fw.ext or board.firmware_type
    opts.variant = opts.variant or fw.variant or board.variant
  end
  local ext = type(version) == "string" and (version:match("%.([%a][%w%-]*)$") or "")
  local looks_like_file = type(version) == "string" and (version == "-" or version:find("/", 1, true) or
    ((catalog.FIRMWARE_TYPES[ext] or ext == "gz" or ext == "tgz" or ext == "xz") and not catalog.parse_version(version)))
  if looks_like_file or (type(version) == "string" and not catalog.parse_version(version) and fs.exists(version)) then
    local max = opts.max or board_flash_max(board)
    if bundle.is_bundle(version) then
      file.check(version)
      return { path = version, file = fs.basename(version), board = id, size = fs.stat(version).size,
        sha256 = hash.file(version, "sha256"), version = "local", source = "file" }
    end
    local data = file.load(version, { max = max })
    return {
      path = version, file = version == "-" and "standard input" or fs.basename(version), board = id, size = #data,
      sha256 = hash.hex(hash.sha256(data)), version = "local", source = "file", data = data,
    }
  end
  return M.fetch(id, version, opts)
end

function M.bundle(path, opts)
  file.check(path)
  return bundle.read(path, opts)
end

-- What to write where, for a flash recipe: a bundle's parts at their declared offsets, or a plain
-- image at the board's offset. img: a path or a table with .path (as fetch and get return; get's
-- .data is used when it holds the bytes already, e.g. from standard input). Every file is read
-- through firmware.load_file, bounded by opts.max, else the largest flash the board file names.
function M.parts(img, board, opts)
  opts = opts or {}
  local path = type(img) == "table" and img.path or img
  local max = opts.max or board_flash_max(board)
  if bundle.is_bundle(path) then
    local b = M.bundle(path, { max = max })
    return b.parts, b
  end
  local offset = type(board) == "table" and board.offset or tonumber(board) or 0
  local data = type(img) == "table" and img.data or file.load(path, { max = max })
  if max and offset + #data > max then
    errors.raise("refused", path, string.format("%d bytes at 0x%x end past the end of the %d-byte flash",
      #data, offset, max))
  end
  return { { offset = offset, name = path == "-" and "standard input" or fs.basename(path), data = data, size = #data } }
end

return M
