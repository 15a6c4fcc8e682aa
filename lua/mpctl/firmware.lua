--[[ mpctl.firmware: find MicroPython firmware, download it into a content-addressed cache,
pin it in a lock file, and tell which board a device is.

    firmware.catalog(board, opts) -> { entries newest first }, info {source=, page=, from_cache=}
    firmware.select(entries, version, opts) -> entry | nil, why
    firmware.fetch(board, version, opts) -> image {path=, sha256=, size=, file=, board=, variant=,
                                                   version=, type=, url=, cached=, pinned=}
    firmware.get(board_or_id, version, opts)   same as fetch, for recipes (board table or id)
    firmware.pin(board, version, opts)         fetch, then record it in the lock file
    firmware.cached(opts) -> { sidecars }      what the cache holds
    firmware.cached_by_sha256(sha, opts) -> path, sidecar | nil   a cached file, its bytes checked now
    firmware.identify(repl) -> {board=, variant=, version=, machine=, build=, how=}
    firmware.bundle(path) -> {parts={ {offset=, name=, data=} }, chip=, settings=}
    firmware.parts(img_or_path, board) -> { {offset=, name=, data=} }  bundle parts or one image

Options common to these: source (mirror URL or folder; else $MPCTL_MIRROR, else micropython.org),
type (bin|uf2|dfu|app-bin|hex|zip), variant, sha256 (expected), lock (lock file path), offline,
cache_dir, ca_file, connect_timeout, stall_timeout, retries, progress (false = no bar), lock_wait
(seconds to wait for another process's change of the lock file, default 10).

Layout (facts from micropython's tools/autobuild, see anchors §4): a board page at
/download/BOARD/ links files /resources/firmware/BOARD[-VARIANT]-YYYYMMDD-vX.Y.Z[-preview.N.gHASH].ext.
micropython.org publishes no hashes, so the lock file is what makes downloads trustworthy: the first
fetch records name, size and SHA-256 (trust on first use), and every later fetch, from any mirror or
the cache, must produce the same bytes.
]]
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local ui = require("mpctl.ui")
local time = require("mpctl.time")

local M = {}

M.DEFAULT_SOURCE = "https://micropython.org"
M.LOCK_NAME = "firmware.lock"

---------------------------------------------------------------------------------------------
-- errors: firmware problems are failures the person can act on, not internal errors

local function fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

local function usage(fmt, ...)
  local mpctl = package.loaded["mpctl"]
  local msg = string.format(fmt, ...)
  if mpctl and mpctl.usage_error then mpctl.usage_error(msg) end
  error("usage: " .. msg, 0)
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

-- A preview of X.Y.Z comes before the release X.Y.Z (it is built on the way to it).
function M.version_less(a, b)
  for i = 1, 3 do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  if (a.preview ~= nil) ~= (b.preview ~= nil) then return a.preview ~= nil end
  return (a.preview or 0) < (b.preview or 0)
end

local EXT_BY_PORT = {
  esp32 = { "bin", "app-bin", "uf2" }, esp8266 = { "bin" }, rp2 = { "uf2" }, stm32 = { "dfu", "hex" },
  samd = { "uf2" }, nrf = { "uf2", "hex", "bin" }, mimxrt = { "bin", "hex", "uf2" },
  ["renesas-ra"] = { "bin", "hex" }, alif = { "zip" }, cc3200 = { "zip" },
}

-- Port of a board id, for the default file type (ids are ports/<port>/boards/<ID>).
function M.port_of(board)
  local b = board:upper()
  if b:match("^ESP8266") then return "esp8266" end
  if b:match("^ESP32") or b:match("ESP32") then return "esp32" end
  if b:match("^RPI_PICO") or b:match("RP2") or b:match("PICO") then return "rp2" end
  if b:match("^PYB") or b:match("^NUCLEO") or b:match("^STM32") or b:match("^B_L") or b:match("DISCO") then
    return "stm32"
  end
  if b:match("SAMD") or b:match("^ADAFRUIT_ITSYBITSY_M") or b:match("^SEEED_XIAO_SAMD") then return "samd" end
  if b:match("^MIMXRT") or b:match("^TEENSY4") then return "mimxrt" end
  if b:match("^ARDUINO_NANO_33_BLE") or b:match("^PCA10") or b:match("NRF") then return "nrf" end
  return nil
end

-- What can be flashed; .elf and .map files on the same pages are for debugging.
M.FIRMWARE_TYPES = { bin = true, ["app-bin"] = true, uf2 = true, dfu = true, hex = true, zip = true }

-- File types in the order a board's port prefers them.
function M.type_order(board)
  return EXT_BY_PORT[M.port_of(board or "") or ""] or { "bin", "uf2", "dfu", "hex", "app-bin", "zip" }
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

local function entry_key(board, variant, version, ftype)
  return table.concat({ board, variant or "", version, ftype }, "|")
end

---------------------------------------------------------------------------------------------
-- sources: micropython.org, an HTTP(S) mirror of its layout, or a local folder

local function env(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
end

function M.source(opts)
  local s = (opts and (opts.source or opts.mirror)) or env("MPCTL_MIRROR") or M.DEFAULT_SOURCE
  if s:match("^https?://") then
    return { kind = "http", base = (s:gsub("/+$", "")), name = s }
  end
  local dir = s:gsub("^file://", "")
  return { kind = "dir", dir = dir, base = dir, name = dir }
end

function M.cache_dir(opts)
  if opts and opts.cache_dir then return opts.cache_dir end
  local e = env("MPCTL_CACHE_DIR")
  if e then return e end
  local base = fs.xdg("cache")
  if not base:match("/mpctl/?$") then base = fs.join(base, "mpctl") end
  return fs.join(base, "firmware")
end

local function http_opts(opts, extra)
  local o = {
    ca_file = opts.ca_file or env("MPCTL_CA_FILE"),
    connect_timeout = tonumber(opts.connect_timeout) or 15,
    stall_timeout = tonumber(opts.stall_timeout) or 30,
    retries = tonumber(opts.retries) or 3,
    backoff = tonumber(opts.backoff) or 1,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Network trouble (as opposed to "the server answered no" or "TLS refused") lets fetch fall back
-- to the cache; libcurl's messages for those cases are stable strings.
local NETWORK_PHRASES = { "Couldn't connect", "Could not connect", "Couldn't resolve", "Could not resolve",
  "timed out", "Timeout", "stalled", "Failure when receiving", "Empty reply", "Server returned nothing",
  "HTTP 5", "HTTP 429", "HTTP 408" }

local function is_network_error(msg)
  msg = tostring(msg)
  if not msg:find("http GET", 1, true) then return false end
  for _, p in ipairs(NETWORK_PHRASES) do
    if msg:find(p, 1, true) then return true end
  end
  return false
end

local function safe_name(s)
  return (s:gsub("[^%w%.%-]+", "_"))
end

---------------------------------------------------------------------------------------------
-- catalog

-- Links to /resources/firmware/<file> in a board page; only the file name is kept, and the URL is
-- rebuilt on the source's base so a mirror that copied micropython.org's pages verbatim works.
function M.parse_page(html, board)
  local seen, out = {}, {}
  local function add(href)
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
  for _, href in html:gmatch("[hH][rR][eE][fF]%s*=%s*([\"'])(.-)%1") do add(href) end
  for href in html:gmatch("[hH][rR][eE][fF]%s*=%s*([^\"'%s>]+)") do add(href) end
  return out
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

local function page_cache_path(opts, src, board)
  return fs.join(M.cache_dir(opts), "pages", safe_name(src.name), board .. ".html")
end

local function file_url(src, file)
  if src.kind == "http" then return src.base .. "/resources/firmware/" .. file end
  return fs.join(src.dir, "resources", "firmware", file)
end

-- Reads the board page (network or folder); caches it so `list` works offline.
local function load_page(board, src, opts)
  if src.kind == "dir" then
    local page = fs.join(src.dir, "download", board, "index.html")
    if fs.exists(page) then return fs.read(page), page end
    local folder = fs.join(src.dir, "resources", "firmware")
    if not fs.exists(folder) then
      fail("firmware mirror %s has neither download/%s/index.html nor resources/firmware/", src.dir, board)
    end
    local links = {}
    for _, name in ipairs(fs.list(folder)) do
      links[#links + 1] = string.format('<a href="/resources/firmware/%s">%s</a>', name, name)
    end
    return table.concat(links, "\n"), folder
  end
  local url = src.base .. "/download/" .. board .. "/"
  local ok, res = pcall(require("mpctl.http").get, url, http_opts(opts, { retries = opts.retries or 2 }))
  if not ok then
    if tostring(res):find("HTTP 404", 1, true) then
      fail("no board %s at %s (HTTP 404 for %s); board ids look like ESP32_GENERIC, RPI_PICO, PYBV11",
        board, src.name, url)
    end
    error(res, 0)
  end
  local cache = page_cache_path(opts, src, board)
  pcall(function()
    fs.mkdir(fs.dirname(cache), { parents = true })
    fs.write(cache, res.body)
  end)
  return res.body, url
end

function M.catalog(board, opts)
  opts = opts or {}
  if type(board) ~= "string" or board == "" then usage("no board given: use board=ID (e.g. board=ESP32_GENERIC)") end
  local src = M.source(opts)
  local info = { source = src.name, board = board }
  local ok, html, where = pcall(load_page, board, src, opts)
  if not ok then
    local cached = page_cache_path(opts, src, board)
    if not is_network_error(html) or not fs.exists(cached) then error(html, 0) end
    info.from_cache, info.error = true, tostring(html)
    info.page_time = fs.stat(cached).mtime
    html, where = fs.read(cached), cached
  end
  info.page = where
  local entries = M.parse_page(html, board)
  for _, e in ipairs(entries) do e.url = file_url(src, e.file) end
  return sort_entries(entries), info
end

-- Picks one file. version: "latest" (newest release), "preview" (newest preview), or X.Y.Z[...].
function M.select(entries, version, opts)
  opts = opts or {}
  version = tostring(version or "latest"):gsub("^v", "")
  local want_type = opts.type
  local board = entries[1] and entries[1].board
  local candidates = {}
  for _, e in ipairs(entries) do
    if (e.variant or "") == (opts.variant or "") then candidates[#candidates + 1] = e end
  end
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

---------------------------------------------------------------------------------------------
-- lock file

-- The lock in effect: lock=, $MPCTL_FIRMWARE_LOCK, a firmware.lock in the `to=` folder, then
-- one in the current folder. `create` returns the path even when the file does not exist yet.
function M.lock_path(opts, create)
  opts = opts or {}
  if opts.lock then return opts.lock end
  local e = env("MPCTL_FIRMWARE_LOCK")
  if e then return e end
  local candidates = {}
  if opts.to then candidates[#candidates + 1] = fs.join(opts.to, M.LOCK_NAME) end
  candidates[#candidates + 1] = M.LOCK_NAME
  for _, p in ipairs(candidates) do
    if fs.exists(p) then return p end
  end
  if create then return candidates[1] end
  return nil
end

function M.lock_read(path)
  if not path or not fs.exists(path) then return { version = 1, firmware = ui.array({}) } end
  local ok, lock = pcall(ui.json_decode, fs.read(path))
  if not ok or type(lock) ~= "table" or type(lock.firmware) ~= "table" then
    fail("lock file %s is not a firmware lock (JSON with a \"firmware\" list): %s", path,
      ok and "wrong shape" or tostring(lock))
  end
  return lock
end

function M.lock_find(lock, board, variant, version, ftype)
  local key = entry_key(board, variant, version, ftype)
  for _, p in ipairs(lock.firmware) do
    if entry_key(p.board, p.variant, p.version, p.type) == key then return p end
  end
end

local function ensure_parent(path)
  local dir = fs.dirname(path)
  if dir ~= "" and dir ~= "." and not fs.exists(dir) then fs.mkdir(dir, { parents = true }) end
end

function M.lock_write(path, lock)
  table.sort(lock.firmware, function(a, b)
    return entry_key(a.board, a.variant, a.version, a.type) < entry_key(b.board, b.variant, b.version, b.type)
  end)
  ensure_parent(path)
  -- ui.json_encode sorts object keys, so the same pins always give the same text (clean git diffs).
  fs.write(path, ui.json_encode(lock, { pretty = true }) .. "\n")
end

-- Seconds to wait for another mpctl to finish its change of the same lock file.
M.LOCK_WAIT = 10

-- Runs fn() while holding the lock file's mutex: the folder .<name>.lck beside it. Two mpctl
-- processes pinning at once each read, extend and rewrite the file, and without the mutex the
-- second rewrite drops the first one's pin. mkdir is atomic and mpctl.fs has no flock. The
-- guarded section lasts milliseconds and releases the mutex on any error, so a mutex still held
-- after `wait` seconds was left by a process that was killed inside it: say where it is.
local function with_lock_mutex(path, wait, fn)
  ensure_parent(path)
  local mutex = fs.join(fs.dirname(path), "." .. fs.basename(path) .. ".lck")
  local deadline = time.now() + (tonumber(wait) or M.LOCK_WAIT)
  while true do
    local ok, err = pcall(fs.mkdir, mutex)
    if ok then break end
    if not fs.exists(mutex) then error(err, 0) end -- not "held": e.g. a read-only folder
    if time.now() >= deadline then
      local st = fs.stat(mutex)
      fail("lock file %s: another mpctl has been changing it for more than %g s (its mutex %s dates from %s); " ..
        "if no mpctl is running, remove that folder", path, tonumber(wait) or M.LOCK_WAIT, mutex,
        st and time.iso(st.mtime) or "?")
    end
    time.sleep(0.02)
  end
  local ok, a, b = pcall(fn)
  pcall(fs.remove, mutex)
  if not ok then error(a, 0) end
  return a, b
end

-- The pin for img in lock, if any; raises if it pins other bytes.
local function lock_check(lock, path, img)
  local have = M.lock_find(lock, img.board, img.variant, img.version, img.type)
  if have and have.sha256 ~= img.sha256 then
    fail("firmware %s does not match the lock file %s:\n  locked:     %s (%d bytes, %s)\n  downloaded: %s (%d bytes, %s)",
      img.file, path, have.sha256, have.size or -1, have.file or "?", img.sha256, img.size, img.file)
  end
  return have
end

-- Records img in the lock (idempotent); raises if the lock already pins other bytes. A pin that
-- is already there needs no mutex (a read-only checkout stays usable); a new one is added after
-- reading the file again under the mutex, since what fetch read at its start may be stale.
local function lock_record(path, img, wait)
  local have = lock_check(M.lock_read(path), path, img)
  if have then return have, false end
  return with_lock_mutex(path, wait, function()
    local lock = M.lock_read(path)
    local again = lock_check(lock, path, img)
    if again then return again, false end
    local rec = {
      board = img.board, variant = img.variant, version = img.version, type = img.type,
      file = img.file, size = img.size, sha256 = img.sha256, pinned = time.iso(time.wall()),
    }
    lock.firmware[#lock.firmware + 1] = rec
    M.lock_write(path, lock)
    return rec, true
  end)
end

---------------------------------------------------------------------------------------------
-- cache: objects/<sha256>.<ext> with objects/<sha256>.json beside it

local function objects_dir(opts) return fs.join(M.cache_dir(opts), "objects") end

local function object_path(opts, sha, ftype)
  return fs.join(objects_dir(opts), sha .. "." .. ftype)
end

function M.cached(opts)
  local dir = objects_dir(opts or {})
  local out = {}
  if not fs.exists(dir) then return out end
  for _, name in ipairs(fs.list(dir)) do
    if name:match("%.json$") then
      local ok, meta = pcall(function() return ui.json_decode(fs.read(fs.join(dir, name))) end)
      if ok and type(meta) == "table" and meta.sha256 and meta.type then
        meta.path = object_path(opts or {}, meta.sha256, meta.type)
        if fs.exists(meta.path) then out[#out + 1] = meta end
      end
    end
  end
  return out
end

-- A cached object whose bytes still hash to its name (a damaged file is removed, not served).
local function cache_hit(opts, sha, ftype)
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

-- The cached file whose bytes hash to sha (checked now, as cache_hit does), or nil; its sidecar second.
function M.cached_by_sha256(sha, opts)
  for _, meta in ipairs(M.cached(opts)) do
    if meta.sha256 == sha then
      local path = cache_hit(opts or {}, sha, meta.type)
      if path then return path, meta end
    end
  end
end

local function cache_find(opts, board, variant, version, ftype, file)
  for _, meta in ipairs(M.cached(opts)) do
    if meta.board == board and (meta.variant or "") == (variant or "") and meta.type == ftype and
        (file == nil or meta.file == file) and (version == nil or meta.version == version) then
      return meta
    end
  end
end

local function store(opts, tmp, img, res)
  local dir = objects_dir(opts)
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

---------------------------------------------------------------------------------------------
-- download

local function progress_fn(opts, label)
  if opts.progress == false then return nil end
  if type(opts.progress) == "function" then return opts.progress end
  local bar
  return function(done, total)
    if not bar and total then bar = ui.progress(label, total) end
    if bar then
      bar:update(done)
      if total and done >= total then bar:finish() bar = nil end
    end
  end
end

local function copy_local(src_path, dest)
  if not fs.exists(src_path) then fail("firmware file %s does not exist", src_path) end
  fs.write(dest, fs.read(src_path))
  return { size = fs.stat(dest).size, sha256 = hash.file(dest, "sha256") }
end

-- Downloads entry into the partial folder; verifies; moves into the cache.
-- partial/<file>.part (+ .part.json with the server's validator) survives a failed run so the
-- next one resumes it. A run first claims it by renaming it to a name of its own: rename is
-- atomic, so two mpctl processes fetching the same file never write into one file, and the cache
-- only ever receives a file one process downloaded and checked alone.
local function download(entry, opts, expect)
  local partial_dir = fs.join(M.cache_dir(opts), "partial")
  fs.mkdir(partial_dir, { parents = true })
  local part = fs.join(partial_dir, entry.file .. ".part")
  local part_meta = part .. ".json"
  local mine = string.format("%s.%d-%d", part, math.floor(time.wall() * 1000), math.random(1, 0x7fffffff))
  local res
  if entry.url:match("^https?://") then
    local if_range
    if fs.exists(part_meta) then
      local ok, m = pcall(function() return ui.json_decode(fs.read(part_meta)) end)
      if ok and type(m) == "table" and m.url == entry.url then if_range = m.etag or m.last_modified end
    end
    local claimed = if_range ~= nil and pcall(fs.rename, part, mine)
    if not claimed and not if_range and fs.exists(part) then pcall(fs.remove, part) end -- no validator: stale
    local function note(h)
      pcall(fs.write, part_meta, ui.json_encode({ url = entry.url, etag = h.etag, last_modified = h.last_modified }))
    end
    local ok, r = pcall(require("mpctl.http").get, entry.url, http_opts(opts, {
      to = mine, resume = claimed, if_range = claimed and if_range or nil, progress = progress_fn(opts, entry.file),
      on_response = note,
    }))
    if not ok then
      -- Hand the bytes that came back to the next run (its Range request continues them).
      if fs.exists(mine) then pcall(fs.rename, mine, part) end
      error(r, 0)
    end
    res = r
  else
    res = copy_local(entry.url, mine)
  end
  if fs.exists(part_meta) then pcall(fs.remove, part_meta) end
  local img = {
    board = entry.board, variant = entry.variant, version = entry.version, type = entry.type,
    file = entry.file, url = entry.url, size = res.size, sha256 = res.sha256,
  }
  local function reject(what, want, got)
    fs.remove(mine)
    fail("firmware %s from %s: %s mismatch, nothing kept:\n  expected %s\n  got      %s", entry.file, entry.url,
      what, want, got)
  end
  if expect.size and expect.size ~= img.size then
    reject("size (" .. (expect.why or "expected") .. ")", tostring(expect.size), tostring(img.size))
  end
  if expect.sha256 and expect.sha256 ~= img.sha256 then
    reject("SHA-256 (" .. (expect.why or "expected") .. ")", expect.sha256, img.sha256)
  end
  img.path = store(opts, mine, img, res)
  return img
end

local function img_from_meta(meta, path)
  return {
    board = meta.board, variant = meta.variant, version = meta.version, type = meta.type, file = meta.file,
    url = meta.url, size = meta.size, sha256 = meta.sha256, path = path or meta.path, cached = true,
  }
end

-- The newest cached build that fits; among files of one version the port's preferred type wins
-- (as select() does online), not whichever sidecar the listing, sorted by hash, gave first.
local function newest_cached(opts, board, variant, ftype_order, version)
  local rank = {}
  for i, t in ipairs(ftype_order) do rank[t] = i end
  local best
  for _, meta in ipairs(M.cached(opts)) do
    local v = M.parse_version(meta.version or "")
    if meta.board == board and (meta.variant or "") == (variant or "") and v and rank[meta.type] then
      local version_ok = (version == "latest" or version == "stable") and not v.preview
        or version == "preview" or meta.version == version
      local better = not best or M.version_less(best.v, v)
        or (not M.version_less(v, best.v) and rank[meta.type] < rank[best.type])
      if version_ok and better then
        best = meta
        best.v = v
      end
    end
  end
  return best
end

local function offline_fetch(board, version, opts, lock, expect_sha, why, detail)
  local order = opts.type and { opts.type } or M.type_order(board)
  local meta = newest_cached(opts, board, opts.variant, order, version)
  if not meta then
    fail("%s: no cached firmware for %s%s version %s in %s; when online, fetch it with: " ..
      "mpctl firmware fetch board=%s version=%s%s", why, board, opts.variant and ("-" .. opts.variant) or "",
      version, objects_dir(opts), board, version, detail and ("\n  (" .. detail .. ")") or "")
  end
  local path = cache_hit(opts, meta.sha256, meta.type)
  if not path then fail("%s: the cached copy of %s was damaged and has been removed", why, meta.file) end
  local img = img_from_meta(meta, path)
  if lock then
    local pin = M.lock_find(lock.data, board, opts.variant, img.version, img.type)
    if pin and pin.sha256 ~= img.sha256 then
      fail("cached %s does not match the lock file %s:\n  locked: %s\n  cached: %s", img.file, lock.path,
        pin.sha256, img.sha256)
    end
    img.pinned = pin ~= nil
  end
  if expect_sha and expect_sha ~= img.sha256 then
    fail("cached %s does not match sha256=:\n  expected: %s\n  cached:   %s", img.file, expect_sha, img.sha256)
  end
  ui.log("info", "%s: using cached %s (%s)", why, img.file, img.version)
  return img
end

-- What every fetch ends with, from the source or from the cache: the lock record and the to= copy.
local function finish(img, opts, lock, pinned)
  if lock and (pinned or opts.pin or fs.exists(lock.path)) then
    local _, added = lock_record(lock.path, img, opts.lock_wait)
    img.pinned = true
    img.newly_pinned = added
    img.lock = lock.path
  end
  if opts.to then
    fs.mkdir(opts.to, { parents = true })
    local dest = fs.join(opts.to, img.file)
    if not fs.exists(dest) or hash.file(dest, "sha256") ~= img.sha256 then fs.write(dest, fs.read(img.path)) end
    img.copy = dest
  end
  return img
end

-- The heart of it: catalog -> select -> lock/sha check -> cache or download -> lock record.
function M.fetch(board, version, opts)
  opts = opts or {}
  version = tostring(version or "latest"):gsub("^v", "")
  if type(board) ~= "string" or board == "" then usage("no board given: use board=ID (e.g. board=ESP32_GENERIC)") end
  local lock_file = M.lock_path(opts, opts.pin)
  local lock = lock_file and { path = lock_file, data = M.lock_read(lock_file) } or nil
  local expect_sha = opts.sha256 and opts.sha256:lower()
  if expect_sha and not expect_sha:match("^%x+$") or (expect_sha and #expect_sha ~= 64) then
    usage("sha256= needs 64 hex digits, got %q", opts.sha256)
  end

  if opts.offline or env("MPCTL_OFFLINE") then
    local img = offline_fetch(board, version, opts, lock, expect_sha, "offline")
    return finish(img, opts, lock, img.pinned)
  end
  local ok, entries, info = pcall(M.catalog, board, opts)
  if not ok then
    if is_network_error(entries) then
      ui.log("warn", "cannot reach the firmware source: %s", tostring(entries))
      local img = offline_fetch(board, version, opts, lock, expect_sha, "source unreachable", tostring(entries))
      return finish(img, opts, lock, img.pinned)
    end
    error(entries, 0)
  end
  if info.from_cache then ui.log("warn", "firmware source unreachable, using the board page cached earlier") end
  local entry, why = M.select(entries, version, opts)
  if not entry then fail("%s at %s: %s", board, info.source, why) end

  local pin = lock and M.lock_find(lock.data, entry.board, entry.variant, entry.version, entry.type)
  if pin and pin.file and pin.file ~= entry.file then
    -- The lock names the exact file; a rebuilt file with another date must not slip in.
    local found
    for _, e in ipairs(entries) do if e.file == pin.file then found = e end end
    if not found then
      fail("the lock file %s pins %s, which %s does not offer (it has %s)", lock.path, pin.file, info.source, entry.file)
    end
    entry = found
  end
  if pin and expect_sha and pin.sha256 ~= expect_sha then
    fail("sha256= %s disagrees with the lock file %s (%s) for %s", expect_sha, lock.path, pin.sha256, entry.file)
  end
  local expect = { sha256 = expect_sha or (pin and pin.sha256), size = pin and pin.size,
    why = pin and ("locked in " .. lock.path) or (expect_sha and "sha256= given") }

  local img
  local known = expect.sha256 and cache_hit(opts, expect.sha256, entry.type)
  local meta = not known and cache_find(opts, entry.board, entry.variant, entry.version, entry.type, entry.file)
  local hit = meta and (not expect.sha256 or meta.sha256 == expect.sha256) and cache_hit(opts, meta.sha256, meta.type)
  if known then
    img = img_from_meta(entry, known)
    img.sha256, img.size = expect.sha256, fs.stat(known).size
  elseif hit then
    img = img_from_meta(meta, hit)
  else
    img = download(entry, opts, expect)
    img.cached = false
  end
  img.url = img.url or entry.url
  return finish(img, opts, lock, pin)
end

function M.pin(board, version, opts)
  opts = opts or {}
  opts.pin = true
  return M.fetch(board, version, opts)
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
  local looks_like_file = type(version) == "string" and (version:find("/", 1, true) or
    ((M.FIRMWARE_TYPES[ext] or ext == "gz" or ext == "tgz" or ext == "xz") and not M.parse_version(version)))
  if looks_like_file or (type(version) == "string" and not M.parse_version(version) and fs.exists(version)) then
    if not fs.exists(version) then fail("firmware file %s does not exist", version) end
    return {
      path = version, file = fs.basename(version), board = id, size = fs.stat(version).size,
      sha256 = hash.file(version, "sha256"), version = "local", source = "file",
    }
  end
  return M.fetch(id, version, opts)
end

---------------------------------------------------------------------------------------------
-- identify: which board is this?

-- MICROPY_HW_BOARD_NAME values of the boards most people have (ports/*/boards/*/mpconfigboard.h);
-- the machine string is "<board name> with <mcu>". Longest prefix wins.
M.MACHINE_NAMES = {
  ["Generic ESP32 module"] = "ESP32_GENERIC",
  ["Generic ESP32S2 module"] = "ESP32_GENERIC_S2",
  ["Generic ESP32S3 module"] = "ESP32_GENERIC_S3",
  ["ESP32C3 module"] = "ESP32_GENERIC_C3",
  ["ESP32C6 module"] = "ESP32_GENERIC_C6",
  ["Generic ESP32P4 module"] = "ESP32_GENERIC_P4",
  ["ESP module"] = "ESP8266_GENERIC",
  ["Raspberry Pi Pico"] = "RPI_PICO",
  ["Raspberry Pi Pico W"] = "RPI_PICO_W",
  ["Raspberry Pi Pico2"] = "RPI_PICO2",
  ["Raspberry Pi Pico 2"] = "RPI_PICO2",
  ["Raspberry Pi Pico2 W"] = "RPI_PICO2_W",
  ["PYBv1.1"] = "PYBV11",
  ["PYBv1.0"] = "PYBV10",
  ["PYBLITEv1.0"] = "PYBLITEV10",
  ["PYBD-SF2W"] = "PYBD_SF2",
  ["PYBD-SF3W"] = "PYBD_SF3",
  ["PYBD-SF6W"] = "PYBD_SF6",
}

-- Older firmware's machine string -> board id (and variant when the name says so).
function M.board_from_machine(machine)
  if type(machine) ~= "string" or machine == "" then return nil end
  local name = machine:match("^(.*) with ") or machine
  local best, best_len
  for prefix, id in pairs(M.MACHINE_NAMES) do
    if (name == prefix or name:sub(1, #prefix + 1) == prefix .. " ") and (not best_len or #prefix > best_len) then
      best, best_len = id, #prefix
    end
  end
  if not best then return nil end
  local variant
  if best == "ESP32_GENERIC" and machine:find("SPIRAM", 1, true) then variant = "SPIRAM" end
  local flash = name:match("%((%d+[MK])%)")
  if best == "ESP8266_GENERIC" and flash then variant = "FLASH_" .. flash end
  return best, variant
end

local HOSTED_PLATFORMS = { webassembly = true, linux = true, darwin = true, win32 = true, freebsd = true }

-- Identity from repl:info() (mpctl.repl) or an equivalent table.
function M.identify_info(info)
  local out = { machine = info.machine or (info.uname and info.uname.machine), build = info.build }
  local v = info.version
  local uv = info.uname and info.uname.version
  -- os.uname().version carries the preview suffix: "v1.24.0-preview.109.gfce3cea24 on 2024-07-18"
  local full = uv and uv:match("^v?(%d+%.%d+%.%d+[%w%.%-]*)")
  out.version = (full and M.parse_version(full) and full) or (v and v:gsub("^v", "")) or nil
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
    out.board, out.variant = M.board_from_machine(out.machine)
    out.how = out.board and "machine name" or nil
  end
  return out
end

function M.identify(repl)
  return M.identify_info(repl:info())
end

---------------------------------------------------------------------------------------------
-- bundles: ESP-IDF build output (flasher_args.json or flash_args) in a .zip or .tar.gz

local function parse_offset(s)
  if type(s) == "number" then return s end
  return tonumber(s) or tonumber(tostring(s):match("^0[xX](%x+)$") or "", 16)
end

-- ESP-IDF writes build/flasher_args.json {"flash_files": {"0x1000": "bootloader/bootloader.bin", ...},
-- "flash_settings": {...}, "extra_esptool_args": {"chip": "esp32", ...}} and a text build/flash_args
-- ("--flash_mode dio ...\n0x1000 bootloader/bootloader.bin\n..."); either describes the bundle.
function M.bundle(path)
  local archive = require("mpctl.archive")
  local entries = archive.list(path)
  local names = {}
  for _, e in ipairs(entries) do names[(e.name:gsub("^%./", ""))] = e end
  local function find(suffix)
    for name in pairs(names) do
      if name == suffix or name:sub(-#suffix - 1) == "/" .. suffix then return name end
    end
  end
  local layout = { parts = {}, source = path }
  local prefix = ""
  local args = find("flasher_args.json")
  if args then
    prefix = args:match("^(.*/)[^/]*$") or ""
    local ok, j = pcall(ui.json_decode, archive.read(path, args))
    if not ok or type(j) ~= "table" or type(j.flash_files) ~= "table" then
      fail("bundle %s: %s is not ESP-IDF flasher_args JSON", path, args)
    end
    for off, file in pairs(j.flash_files) do
      layout.parts[#layout.parts + 1] = { offset = parse_offset(off), name = prefix .. file }
    end
    layout.settings = j.flash_settings
    layout.chip = type(j.extra_esptool_args) == "table" and j.extra_esptool_args.chip or nil
  else
    local fa = find("flash_args")
    if not fa then fail("bundle %s: no flasher_args.json or flash_args inside; cannot tell the offsets", path) end
    prefix = fa:match("^(.*/)[^/]*$") or ""
    layout.settings = {}
    for line in archive.read(path, fa):gmatch("[^\r\n]+") do
      for k, v in line:gmatch("%-%-(%w[%w_]*)%s+(%S+)") do layout.settings[k] = v end
      for off, file in line:gmatch("(0[xX]%x+)%s+(%S+)") do
        layout.parts[#layout.parts + 1] = { offset = parse_offset(off), name = prefix .. file }
      end
    end
  end
  table.sort(layout.parts, function(a, b) return a.offset < b.offset end)
  for _, p in ipairs(layout.parts) do
    if not p.offset then fail("bundle %s: bad offset for %s", path, p.name) end
    if not names[p.name] then fail("bundle %s: declares %s at 0x%x but does not contain it", path, p.name, p.offset) end
    p.data = archive.read(path, p.name)
    p.size = #p.data
  end
  for i = 2, #layout.parts do
    local a, b = layout.parts[i - 1], layout.parts[i]
    if a.offset + a.size > b.offset then
      fail("bundle %s: %s (0x%x + %d bytes) overlaps %s at 0x%x", path, a.name, a.offset, a.size, b.name, b.offset)
    end
  end
  return layout
end

-- What to write where, for a flash recipe: a bundle's parts at their declared offsets, or a
-- plain image at the board's offset. img: a path or a table with .path (as fetch returns).
function M.parts(img, board)
  local path = type(img) == "table" and img.path or img
  if M.is_bundle(path) then
    local b = M.bundle(path)
    for _, p in ipairs(b.parts) do p.chip = b.chip end
    return b.parts, b
  end
  local offset = type(board) == "table" and board.offset or tonumber(board) or 0
  local data = fs.read(path)
  return { { offset = offset, name = fs.basename(path), data = data, size = #data } }
end

function M.is_bundle(path)
  return type(path) == "string" and (path:match("%.zip$") or path:match("%.tar%.%w+$") or path:match("%.tgz$")) ~= nil
end

return M
