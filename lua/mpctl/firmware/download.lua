--[[ mpctl.firmware.download: HTTP(S) through mpctl.http (libcurl) with retries a person can see,
and downloads into the cache that survive a cut, a stall or Ctrl-C as a resumable partial file.

    download.get(url, opts, extra, label) -> result       a page into memory; each retry is logged
    download.fetch(entry, opts, expect) -> img             a firmware file, checked, stored in the cache
    download.is_unreachable(err) -> bool                   the source could not be reached (use the cache)
    download.env(name) -> value | nil                      a non-empty environment variable

Retries happen here, not inside http.get (called with retries=0), so every failed attempt is
reported with its reason and the pause before the next one: a hung server no longer means
a minute and a half of silence.
]]
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local time = require("mpctl.time")
local errors = require("mpctl.errors")
local cache = require("mpctl.firmware.cache")

local M = {}

function M.env(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
end

-- mpctl.http's errors carry `retryable` (no connection, stall, cut transfer, 5xx/408/429: the
-- source could not be reached) and `status` (the HTTP status when the server answered), so this
-- decides on fields, never on the text. TLS refusals are not retryable: they never fall back.
function M.is_unreachable(e)
  return errors.is_error(e) and e.retryable == true
end

-- The server answered that there is no such page (not: the host name did not resolve).
function M.is_missing(e)
  return errors.is_error(e) and (e.status == 404 or e.status == 410)
end

local function reason(e)
  local s = type(e) == "table" and (e.detail or e.msg) or tostring(e)
  s = tostring(s):gsub("^http GET %S+: ", ""):gsub(" %(after %d+ attempts?%)$", "")
  return s
end

local function http_opts(opts, extra)
  local o = {
    ca_file = opts.ca_file or M.env("MPCTL_CA_FILE"),
    connect_timeout = tonumber(opts.connect_timeout) or 15,
    stall_timeout = tonumber(opts.stall_timeout) or 30,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  o.retries = 0
  return o
end

-- Calls http.get once per attempt; `prepare(attempt)` may adjust the options of each one.
local function with_retries(url, opts, extra, label, prepare)
  local http = require("mpctl.http")
  local retries = math.tointeger(tonumber(extra and extra.retries or opts.retries) or 3) or 3
  local backoff = tonumber(opts.backoff) or 1
  local attempt = 0
  while true do
    attempt = attempt + 1
    local o = http_opts(opts, extra)
    if prepare then prepare(o, attempt) end
    local ok, res = pcall(http.get, url, o)
    if ok then return res end
    if not M.is_unreachable(res) or attempt > retries then
      if attempt > 1 and errors.is_error(res) then
        res = errors.new({ kind = res.kind, where = res.where, status = res.status, retryable = res.retryable,
          detail = string.format("http GET %s: %s (after %d attempts)", url, reason(res), attempt) })
      end
      error(res, 0)
    end
    local pause = math.min(backoff * 2 ^ (attempt - 1), 30)
    ui.log("warn", "%s: %s; attempt %d of %d failed, trying again in %g s", label or url, reason(res), attempt,
      retries + 1, pause)
    time.sleep(pause)
  end
end

function M.get(url, opts, extra, label)
  return with_retries(url, opts or {}, extra, label)
end

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

-- A file of a folder mirror, copied into the partial file (regular files only: a FIFO or a
-- device named like firmware must not hang the copy).
local function copy_local(src_path, dest)
  local data = require("mpctl.firmware.file").load(src_path)
  fs.write(dest, data)
  local hash = require("mpctl.hash")
  return { size = #data, sha256 = hash.hex(hash.sha256(data)) }
end

local function reject(mine, entry, what, want, got)
  fs.remove(mine)
  errors.raise("refused", entry.url, string.format("firmware %s from %s: %s mismatch, nothing kept:\n  expected %s\n" ..
    "  got      %s", entry.file, entry.url, what, want, got))
end

-- partial/<file>.part (+ .part.json with the server's validator) survives a failed or interrupted
-- run so the next one resumes it. A run first claims it by renaming it to a name of its own:
-- rename is atomic, so two mpctl processes fetching the same file never write into one file, and
-- the cache only ever receives a file one process downloaded and checked alone.
local function from_http(entry, opts, part, mine)
  local part_meta = part .. ".json"
  local if_range
  if fs.exists(part_meta) then
    local ok, m = pcall(function() return ui.json_decode(fs.read(part_meta)) end)
    if ok and type(m) == "table" and m.url == entry.url then if_range = m.etag or m.last_modified end
  end
  local claimed = if_range ~= nil and pcall(fs.rename, part, mine)
  if not claimed and not if_range and fs.exists(part) then pcall(fs.remove, part) end -- no validator: stale
  if claimed then ui.log("verbose", "resuming %s from byte %d", entry.file, fs.stat(mine).size) end
  local function note(h)
    if_range = h.etag or h.last_modified or if_range
    pcall(fs.write, part_meta, ui.json_encode({ url = entry.url, etag = h.etag, last_modified = h.last_modified }))
  end
  local ok, res = pcall(with_retries, entry.url, opts, { progress = progress_fn(opts, entry.file), on_response = note },
    entry.file, function(o, attempt)
      o.to = mine
      -- a later attempt continues what the earlier ones wrote, guarded by the validator
      local have = fs.exists(mine) and fs.stat(mine).size > 0
      o.resume = (claimed or attempt > 1) and have and if_range ~= nil
      o.if_range = o.resume and if_range or nil
    end)
  if not ok then
    -- Hand the bytes that came back to the next run (its Range request continues them), whatever
    -- ended this one: a network failure or Ctrl-C.
    if fs.exists(mine) then pcall(fs.rename, mine, part) end
    if errors.kind(res) == "interrupted" and fs.exists(part) then
      ui.log("info", "kept %d bytes of %s in %s; the same command resumes it", fs.stat(part).size, entry.file, part)
    end
    error(res, 0)
  end
  if fs.exists(part_meta) then pcall(fs.remove, part_meta) end
  return res
end

-- Downloads entry into the partial folder; verifies; moves it into the cache.
function M.fetch(entry, opts, expect)
  local partial_dir = cache.partial_dir(opts)
  fs.mkdir(partial_dir, { parents = true })
  local part = fs.join(partial_dir, entry.file .. ".part")
  local mine = string.format("%s.%d-%d", part, math.floor(time.wall() * 1000), math.random(1, 0x7fffffff))
  local res
  if entry.url:match("^https?://") then
    res = from_http(entry, opts, part, mine)
  else
    local ok, r = pcall(copy_local, entry.url, mine)
    if not ok then
      pcall(fs.remove, mine) -- a folder mirror's file is copied whole or not at all
      error(r, 0)
    end
    res = r
  end
  local img = {
    board = entry.board, variant = entry.variant, version = entry.version, type = entry.type,
    file = entry.file, url = entry.url, size = res.size, sha256 = res.sha256,
  }
  if expect.size and expect.size ~= img.size then
    reject(mine, entry, "size (" .. (expect.why or "expected") .. ")", tostring(expect.size), tostring(img.size))
  end
  if expect.sha256 and expect.sha256 ~= img.sha256 then
    reject(mine, entry, "SHA-256 (" .. (expect.why or "expected") .. ")", expect.sha256, img.sha256)
  end
  img.path = cache.store(opts, mine, img, res)
  return img
end

return M
