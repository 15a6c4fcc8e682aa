--- Find, download, cache and pin MicroPython firmware: mpctl firmware list|fetch|pin|cache|identify.
-- @option version: VERSION|latest|preview = latest; X.Y.Z, latest (newest release) or preview
-- @option type: bin|app-bin|uf2|dfu|hex|zip; file type (default: what the board's port flashes)
-- @option variant: TEXT; board variant, e.g. SPIRAM for ESP32_GENERIC-SPIRAM files
-- @option sha256: HEX; expected SHA-256 of the file; a mismatch fails and keeps nothing
-- @option mirror: URL|DIR; team mirror (http(s)://... or a folder with micropython.org's layout); default $MPCTL_MIRROR, else micropython.org
-- @option lock: FILE; lock file to check and extend (default: firmware.lock in to= or in the current folder)
-- @option to: DIR; also copy the file into this folder (a firmware.lock there is used and extended)
-- @option offline: yes|no = no; the cache only, no network (list shows the board page cached earlier)
-- @option refresh: yes|no = no; ask the source even for an exact version already in the cache
-- @option ca_file: FILE; CA bundle for an HTTPS mirror with a private CA
-- @option cache: DIR; cache folder (default $MPCTL_CACHE_DIR or ~/.cache/mpctl/firmware)
-- @option stall: seconds = 30; how long without data before a download is retried
-- @option retries: integer; download attempts after the first (default 3)
-- @option all: yes|no = no; list every version, not just the newest 12
--
--   mpctl firmware list board=ESP32_GENERIC
--   mpctl firmware fetch board=ESP32_GENERIC version=1.24.1 [type=app-bin] [sha256=HEX]
--   mpctl firmware pin board=RPI_PICO version=latest lock=recipes/firmware.lock
--   mpctl firmware fetch --port /dev/ttyACM0 version=latest    (board read from the device)
--   mpctl firmware cache            mpctl firmware identify --port /dev/ttyUSB0
-- fetch and pin print the cached file's path on stdout (for scripts); details go to stderr.

local fw, ui, fs = mpctl.firmware, mpctl.ui, mpctl.fs
local json = ui.config().json
local sub = arg[1] or "list"

local function out(line) ui.out(line .. "\n") end

local opts = {
  source = arg.mirror, type = arg.type, variant = arg.variant, sha256 = arg.sha256, lock = arg.lock,
  to = arg.to, offline = arg.offline or nil, refresh = arg.refresh or nil, ca_file = arg.ca_file,
  cache_dir = arg.cache,
  stall_timeout = tonumber(arg.stall), retries = tonumber(arg.retries),
}

-- What the MicroPython on --port says it is (the port is closed on any error too).
local function identify_port()
  local port <close> = mpctl.open_port(arg)
  local r = mpctl.repl.attach(port)
  local id = fw.identify(r)
  r:close()
  return id
end

-- The board: board= (or --board), else ask the device on --port.
local function board_id(required)
  if arg.board then return arg.board end
  if arg.port then
    local id = identify_port()
    if not id.board then
      mpctl.fail(string.format("the device on %s runs MicroPython %s on \"%s\", which mpctl cannot map to a board id; " ..
        "give board=ID", arg.port, id.version or "?", id.machine or "?"))
    end
    mpctl.log("%s: %s%s, MicroPython %s (from %s)", arg.port, id.board, id.variant and ("-" .. id.variant) or "",
      id.version or "?", id.how)
    opts.variant = opts.variant or id.variant
    return id.board
  end
  if required then
    mpctl.usage_error("which board? give board=ID (e.g. board=ESP32_GENERIC) or --port PORT to ask the device")
  end
end

local function date_text(d) return d and (d:sub(1, 4) .. "-" .. d:sub(5, 6) .. "-" .. d:sub(7, 8)) or "" end

local function cmd_list()
  local board = board_id(true)
  local entries, info = fw.catalog(board, opts)
  local cached = {}
  for _, m in ipairs(fw.cached(opts)) do cached[m.file] = m end
  local lock_file = fw.lock_path(opts)
  local lock = lock_file and fw.lock_read(lock_file) or { firmware = {} }
  local pinned = {}
  for _, p in ipairs(lock.firmware) do pinned[p.file or ""] = true end

  -- one row per (variant, version), file types side by side
  local rows, by_key, variants = {}, {}, {}
  for _, e in ipairs(entries) do
    if (e.variant or "") == (opts.variant or "") then -- variant=SPIRAM: the SPIRAM files only
      local key = e.version
      local row = by_key[key]
      if not row then
        row = { version = e.version, date = e.date, preview = e.preview, types = {}, files = {} }
        by_key[key] = row
        rows[#rows + 1] = row
      end
      local mark = (cached[e.file] and "*" or "") .. (pinned[e.file] and "!" or "")
      row.types[#row.types + 1] = e.type .. mark
      row.files[#row.files + 1] = { file = e.file, type = e.type, url = e.url, cached = cached[e.file] ~= nil,
        pinned = pinned[e.file] or false }
    elseif e.variant then
      variants[e.variant] = true
    end
  end
  local rank = {}
  for i, t in ipairs(fw.type_order(board)) do rank[t] = i end
  for _, r in ipairs(rows) do
    table.sort(r.types, function(a, b)
      local ta, tb = a:match("^[%w%-]+"), b:match("^[%w%-]+")
      if (rank[ta] or 99) ~= (rank[tb] or 99) then return (rank[ta] or 99) < (rank[tb] or 99) end
      return ta < tb
    end)
  end
  if json then
    for _, r in ipairs(rows) do
      ui.event({ event = "firmware", board = board, variant = opts.variant, version = r.version, date = date_text(r.date),
        preview = r.preview, files = r.files })
    end
    return
  end
  out(string.format("%s%s at %s%s", board, opts.variant and ("-" .. opts.variant) or "", info.source,
    info.from_cache and ("  (offline: board page cached " .. os.date("!%Y-%m-%d %H:%M", math.floor(info.page_time)) .. ")")
      or (info.offline and "  (offline: what the cache holds)") or ""))
  if #rows == 0 then
    out("  no firmware files" .. (opts.variant and (" for variant " .. opts.variant) or ""))
  end
  local limit = arg.all and #rows or math.min(#rows, 12)
  for i = 1, limit do
    local r = rows[i]
    out(string.format("  %-32s %-10s  %s%s", r.version, date_text(r.date), table.concat(r.types, " "),
      r.preview and "  (preview)" or ""))
  end
  if limit < #rows then out(string.format("  ... %d older (all=yes shows them)", #rows - limit)) end
  local vs = {}
  for v in pairs(variants) do vs[#vs + 1] = v end
  table.sort(vs)
  if #vs > 0 then out("  variants: " .. table.concat(vs, ", ") .. "  (variant=NAME)") end
  out("  * cached" .. (lock_file and ("   ! pinned in " .. lock_file) or ""))
end

local function report(img, verb)
  mpctl.log("%s %s: %s, %d bytes, sha256 %s%s", verb, img.version or "?", img.file, img.size, img.sha256,
    img.cached and " (from the cache)" or "")
  if img.lock then
    mpctl.log("%s in %s", img.newly_pinned and "pinned" or "matches the pin", img.lock)
  end
  if img.copy then mpctl.log("copied to %s", img.copy) end
  if json then
    ui.event({ event = "firmware_fetch", board = img.board, variant = img.variant, version = img.version, file = img.file,
      type = img.type, size = img.size, sha256 = img.sha256, path = img.path, url = img.url, cached = img.cached,
      lock = img.lock, pinned = img.pinned or false })
  else
    out(img.copy or img.path)
  end
end

local function cmd_fetch(pin)
  local board = board_id(true)
  if pin then opts.pin = true end
  local img = fw.fetch(board, arg.version or "latest", opts)
  report(img, board)
end

local function cmd_cache()
  local list = fw.cached(opts)
  table.sort(list, function(a, b)
    if a.board ~= b.board then return a.board < b.board end
    return (a.file or "") < (b.file or "")
  end)
  if json then
    for _, m in ipairs(list) do
      ui.event({ event = "firmware_cached", board = m.board, version = m.version, file = m.file, size = m.size,
        sha256 = m.sha256, path = m.path, url = m.url, time = m.time })
    end
    return
  end
  if #list == 0 then out("the firmware cache " .. fw.cache_dir(opts) .. " is empty") return end
  for _, m in ipairs(list) do
    out(string.format("%-48s %9d  %s  %s", m.file or "?", m.size or 0, (m.sha256 or ""):sub(1, 16), m.time or ""))
  end
  out(string.format("%d file%s in %s", #list, #list == 1 and "" or "s", fw.cache_dir(opts)))
end

local function cmd_identify()
  if not arg.port then mpctl.usage_error("identify needs --port PORT") end
  local id = identify_port()
  if json then
    ui.event({ event = "identify", port = arg.port, board = id.board, variant = id.variant, version = id.version,
      machine = id.machine, build = id.build, how = id.how })
  else
    out(string.format("%s: %s%s  MicroPython %s  (%s)", arg.port, id.board or "unknown board",
      id.variant and ("-" .. id.variant) or "", id.version or "?", id.machine or "?"))
  end
  return id.board ~= nil
end

if sub == "list" then
  cmd_list()
elseif sub == "fetch" or sub == "get" or sub == "download" then
  cmd_fetch(false)
elseif sub == "pin" then
  cmd_fetch(true)
elseif sub == "cache" or sub == "cached" then
  cmd_cache()
elseif sub == "identify" then
  return cmd_identify()
else
  mpctl.usage_error("unknown firmware command '" .. tostring(sub) .. "': use list, fetch, pin, cache or identify")
end
