--[[ mpctl.history: what was flashed where, one JSON object per line.

    history.path(opts) -> file         ($MPCTL_HISTORY, else <XDG state>/mpctl/history.jsonl)
    history.record(rec, opts) -> rec   appends one line with fsync; adds time and mpctl version
    history.read(opts) -> records, warnings
        opts.port, opts.device: keep only matching records; a torn or garbled line, or one whose
        fields have unexpected types, is skipped with a warning naming its line number (a crash
        mid-append can only tear the last line)
    history.last(opts) -> newest matching record with result "ok", or nil
    history.stack(opts) -> stack, devices   what the board ran, oldest first: successful flashes
        push, successful rollbacks pop; devices = the sorted device ids seen
    history.firmware_file(fwrec) -> path | nil   a recorded firmware's bytes, found by SHA-256: in the
        firmware cache, else at its recorded (absolute) path, cache object or file, each hashed now
    history.format(rec) -> one human line;  history.HEADER the column titles

A record: { time=, kind= ("flash" when absent | "rollback"), family=, board=, chip=, device= (MAC or
unique id), port=, firmware={version=, sha256=, file=, path= (absolute), cache= (the cache object),
source=}, backup={flash=, files=, files_skipped=}, result="ok"|"failed"|"interrupted", error=,
error_kind=, offset= (first address not known good), hint=, outside= (after a failed write: flash
outside the image "unchanged" | "changed" | "unknown"), rollback_of= (time of the undone
flash), source= (rollback: "flash backup" | "firmware cache"), duration=, mpctl= }.
]]
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local time = require("mpctl.time")

local M = {}

function M.path(opts)
  if opts and opts.path then return opts.path end
  local e = os.getenv("MPCTL_HISTORY")
  if e and e ~= "" then return e end
  return fs.join(fs.xdg("state"), "history.jsonl") -- fs.xdg already ends in /mpctl
end

local function mpctl_version()
  local info = debug.getregistry()["mpctl.info"]
  return info and info.version or "dev"
end

function M.record(rec, opts)
  local path = M.path(opts)
  rec.time = rec.time or time.iso(time.wall())
  rec.mpctl = rec.mpctl or mpctl_version()
  local line = ui.json_encode(rec)
  if line:find("\n", 1, true) then error("history: record encodes to more than one line", 2) end
  local dir = fs.dirname(path)
  if not fs.exists(dir) then fs.mkdir(dir, { parents = true }) end
  -- A line written after a torn one must start on its own line, or both would be lost.
  local st = fs.stat(path)
  if st and st.size > 0 then
    local f = io.open(path, "rb")
    if f then
      f:seek("end", -1)
      local last = f:read(1)
      f:close()
      if last ~= "\n" then line = "\n" .. line end
    end
  end
  fs.append(path, line .. "\n", { fsync = true })
  return rec
end

local function matches(rec, opts)
  if opts.port and rec.port ~= opts.port then return false end
  if opts.device and rec.device ~= opts.device then return false end
  if opts.board and rec.board ~= opts.board then return false end
  return true
end

-- The type every known field must have; nested tables by their own field list. A line that is
-- valid JSON but breaks this (a string duration, a number board) would crash every reader that
-- formats or compares it, so it is skipped like a torn line.
local FIELDS = {
  time = "string", kind = "string", family = "string", board = "string", chip = "string", device = "string",
  port = "string", result = "string", error = "string", error_kind = "string", offset = "number", hint = "string",
  outside = "string",
  rollback_of = "string", source = "string", duration = "number", mpctl = "string", files_restored = "number",
  firmware = { version = "string", sha256 = "string", file = "string", path = "string", cache = "string",
    source = "string" },
  previous = { version = "string", sha256 = "string", file = "string", path = "string", cache = "string",
    source = "string" },
  backup = { flash = "string", files = "string", files_skipped = "string" },
}

local function type_error(rec, spec, prefix)
  for k, want in pairs(spec) do
    local v = rec[k]
    if v ~= nil then
      if type(want) == "table" then
        if type(v) ~= "table" then return string.format("field %s%s is a %s, not an object", prefix, k, type(v)) end
        local why = type_error(v, want, prefix .. k .. ".")
        if why then return why end
      elseif type(v) ~= want then
        return string.format("field %s%s is a %s, not a %s", prefix, k, type(v), want)
      end
    end
  end
end

function M.read(opts)
  opts = opts or {}
  local path = M.path(opts)
  local out, warnings = {}, {}
  if not fs.exists(path) then return out, warnings end
  local data = fs.read(path)
  local n = 0
  local ends_clean = data:sub(-1) == "\n"
  local lines = {}
  for line in data:gmatch("([^\n]*)\n?") do lines[#lines + 1] = line end
  if lines[#lines] == "" then lines[#lines] = nil end
  for i, line in ipairs(lines) do
    n = i
    if line:match("%S") then
      local ok, rec = pcall(ui.json_decode, line)
      if ok and type(rec) == "table" and rec[1] ~= nil then ok = false end -- a JSON array is no record
      local why = ok and type(rec) == "table" and type_error(rec, FIELDS, "") or nil
      if ok and type(rec) == "table" and not why then
        rec.line = i
        if matches(rec, opts) then out[#out + 1] = rec end
      else
        local torn = i == #lines and not ends_clean
        warnings[#warnings + 1] = string.format("%s:%d: %s, skipped", path, i,
          why or (torn and "torn last line (an append was cut short)" or "not a JSON record"))
      end
    end
  end
  for _, w in ipairs(warnings) do ui.log("warn", "%s", w) end
  return out, warnings, n
end

function M.last(opts)
  local recs = M.read(opts)
  for i = #recs, 1, -1 do
    if recs[i].result == "ok" then return recs[i], recs end
  end
  return nil, recs
end

-- What the board ran, as a stack: a successful flash pushes, a successful rollback pops (failed
-- and interrupted attempts change nothing). Also the devices seen, for "several boards" messages.
function M.stack(opts)
  local stack, seen, devices = {}, {}, {}
  for _, r in ipairs(M.read(opts)) do
    if r.result == "ok" then
      if r.device and not seen[r.device] then
        seen[r.device] = true
        devices[#devices + 1] = r.device
      end
      if r.kind == "rollback" then
        stack[#stack] = nil
      else
        stack[#stack + 1] = r
      end
    end
  end
  table.sort(devices)
  return stack, devices
end

-- A recorded firmware's bytes on this machine, checked by SHA-256 now: the firmware cache first
-- (cached_by_sha256 hashes the object again, so a damaged copy is not served: the chip would be
-- compared with the bytes read back, not with the recorded hash), then the recorded paths.
function M.firmware_file(fwrec)
  if type(fwrec) ~= "table" or type(fwrec.sha256) ~= "string" then return nil end
  local cached = require("mpctl.firmware").cached_by_sha256(fwrec.sha256)
  if cached then return cached end
  local hash = require("mpctl.hash")
  for _, p in ipairs({ fwrec.path, fwrec.cache, fwrec.file }) do
    if type(p) == "string" and fs.exists(p) and (fs.stat(p) or {}).type == "file"
        and hash.file(p, "sha256") == fwrec.sha256 then
      return p
    end
  end
end

M.HEADER = string.format("%-20s %-11s %-8s %-18s %-17s %-18s %-14s %-12s %s", "time", "result", "what", "board",
  "device", "port", "version", "sha256", "took")

function M.format(r)
  local fw = type(r.firmware) == "table" and r.firmware or {}
  local sha = type(fw.sha256) == "string" and fw.sha256:sub(1, 12) or "-"
  local what = r.kind or "flash"
  local tail = ""
  if r.kind == "rollback" then
    tail = "  rollback of " .. tostring(r.rollback_of or "?") .. (r.source and (" from the " .. r.source) or "")
  end
  if r.error then tail = tail .. "  " .. tostring(r.error) end
  if r.offset and not (r.error and tostring(r.error):find(string.format("0x%X", r.offset), 1, true)) then
    tail = tail .. string.format(" (stopped at 0x%X)", r.offset)
  end
  return string.format("%-20s %-11s %-8s %-18s %-17s %-18s %-14s %-12s %s%s", r.time or "?", r.result or "?", what,
    r.board or "-", r.device or "-", r.port or "-", fw.version or "-", sha,
    r.duration and string.format("%.1fs", r.duration) or "", tail)
end

return M
