--[[ mpctl.firmware.lock: the lock file that pins firmware by name, size and SHA-256.

    lock.path(opts, create) -> file | nil   lock=, $MPCTL_FIRMWARE_LOCK, firmware.lock in to=, then in .
    lock.read(path) -> {version=1, firmware={pins}}    (an empty lock when the file does not exist)
    lock.find(lock, board, variant, version, type) -> pin | nil
    lock.write(path, lock)                   sorted, so the same pins always give the same text
    lock.check(lock, path, img) -> pin | nil raises when the lock pins other bytes for img
    lock.record(path, img, wait) -> pin, added   adds img under the mutex (idempotent)

micropython.org publishes no hashes, so the lock file is what makes downloads trustworthy: the first
fetch records name, size and SHA-256 (trust on first use), and every later fetch, from any mirror or
the cache, must produce the same bytes.
]]
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local time = require("mpctl.time")
local errors = require("mpctl.errors")

local M = {}

M.NAME = "firmware.lock"
M.WAIT = 10 -- seconds to wait for another mpctl to finish its change of the same lock file

local function key(board, variant, version, ftype)
  return table.concat({ board or "", variant or "", version or "", ftype or "" }, "|")
end

function M.path(opts, create)
  opts = opts or {}
  if opts.lock then return opts.lock end
  local e = os.getenv("MPCTL_FIRMWARE_LOCK")
  if e and e ~= "" then return e end
  local candidates = {}
  if opts.to then candidates[#candidates + 1] = fs.join(opts.to, M.NAME) end
  candidates[#candidates + 1] = M.NAME
  for _, p in ipairs(candidates) do
    if fs.exists(p) then return p end
  end
  if create then return candidates[1] end
  return nil
end

function M.read(path)
  if not path or not fs.exists(path) then return { version = 1, firmware = ui.array({}) } end
  local ok, lock = pcall(ui.json_decode, fs.read(path))
  if not ok or type(lock) ~= "table" or type(lock.firmware) ~= "table" then
    errors.raise("refused", path, string.format("lock file %s is not a firmware lock (JSON with a \"firmware\" list): %s",
      path, ok and "wrong shape" or tostring(lock)), { hint = "fix or remove it (git checkout " .. path .. ")" })
  end
  return lock
end

function M.find(lock, board, variant, version, ftype)
  local want = key(board, variant, version, ftype)
  for _, p in ipairs(lock.firmware) do
    if type(p) == "table" and key(p.board, p.variant, p.version, p.type) == want then return p end
  end
end

local function ensure_parent(path)
  local dir = fs.dirname(path)
  if dir ~= "" and dir ~= "." and not fs.exists(dir) then fs.mkdir(dir, { parents = true }) end
end

function M.write(path, lock)
  table.sort(lock.firmware, function(a, b)
    return key(a.board, a.variant, a.version, a.type) < key(b.board, b.variant, b.version, b.type)
  end)
  ensure_parent(path)
  -- ui.json_encode sorts object keys, so the same pins always give the same text (clean git diffs).
  fs.write(path, ui.json_encode(lock, { pretty = true }) .. "\n")
end

-- Runs fn() while holding the lock file's mutex: the folder .<name>.lck beside it. Two mpctl
-- processes pinning at once each read, extend and rewrite the file, and without the mutex the
-- second rewrite drops the first one's pin. mkdir is atomic and mpctl.fs has no flock. The
-- guarded section lasts milliseconds and releases the mutex on any error, so a mutex still held
-- after `wait` seconds was left by a process that was killed inside it: say where it is.
local function with_mutex(path, wait, fn)
  ensure_parent(path)
  local mutex = fs.join(fs.dirname(path), "." .. fs.basename(path) .. ".lck")
  wait = tonumber(wait) or M.WAIT
  local deadline = time.now() + wait
  local gone = 0
  while true do
    local ok, err = pcall(fs.mkdir, mutex)
    if ok then break end
    -- Not there now: either its holder released it between our mkdir and this check (try again
    -- at once), or mkdir fails for another reason, e.g. a read-only folder (then the same again).
    if not fs.exists(mutex) then
      gone = gone + 1
      if gone > 3 then error(err, 0) end
    elseif time.now() >= deadline then
      local st = fs.stat(mutex)
      errors.raise("busy", path, string.format("lock file %s: another mpctl has been changing it for more than %g s " ..
        "(its mutex %s dates from %s)", path, wait, mutex, st and time.iso(st.mtime) or "?"),
        { hint = "if no mpctl is running, remove that folder" })
    else
      gone = 0
    end
    if gone == 0 then time.sleep(0.02) end
  end
  local ok, a, b = pcall(fn)
  pcall(fs.remove, mutex)
  if not ok then error(a, 0) end
  return a, b
end

function M.check(lock, path, img)
  local have = M.find(lock, img.board, img.variant, img.version, img.type)
  if have and have.sha256 ~= img.sha256 then
    errors.raise("refused", path, string.format("firmware %s does not match the lock file %s:\n" ..
      "  locked:     %s (%d bytes, %s)\n  downloaded: %s (%d bytes, %s)", img.file, path, tostring(have.sha256),
      math.tointeger(have.size) or -1, tostring(have.file or "?"), img.sha256, img.size, img.file))
  end
  return have
end

-- A pin that is already there needs no mutex (a read-only checkout stays usable); a new one is
-- added after reading the file again under the mutex, since what fetch read at its start may be stale.
function M.record(path, img, wait)
  local have = M.check(M.read(path), path, img)
  if have then return have, false end
  return with_mutex(path, wait, function()
    local lock = M.read(path)
    local again = M.check(lock, path, img)
    if again then return again, false end
    local rec = {
      board = img.board, variant = img.variant, version = img.version, type = img.type,
      file = img.file, size = img.size, sha256 = img.sha256, pinned = time.iso(time.wall()),
    }
    lock.firmware[#lock.firmware + 1] = rec
    M.write(path, lock)
    return rec, true
  end)
end

return M
