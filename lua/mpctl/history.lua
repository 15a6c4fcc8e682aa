--[[ mpctl.history: what was flashed where, one JSON object per line.

    history.path(opts) -> file         ($MPCTL_HISTORY, else <XDG state>/mpctl/history.jsonl)
    history.record(rec, opts) -> rec   appends one line with fsync; adds time and mpctl version
    history.read(opts) -> records, warnings
        opts.port, opts.device: keep only matching records; a torn or garbled line is skipped with a
        warning naming its line number (a crash mid-append can only tear the last line)
    history.last(opts) -> newest matching record with result "ok", or nil
    history.format(rec) -> one human line

A record: { time=, board=, chip=, device= (MAC or unique id), port=, firmware={version=, sha256=,
file=, source=, path=}, previous={...} (what the board ran before, when known), backup={flash=,
files=}, result="ok"|"failed", error=, duration=, mpctl= }.
]]
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local time = require("mpctl.time")

local M = {}

function M.path(opts)
  if opts and opts.path then return opts.path end
  local e = os.getenv("MPCTL_HISTORY")
  if e and e ~= "" then return e end
  local base = fs.xdg("state")
  if not base:match("/mpctl/?$") then base = fs.join(base, "mpctl") end
  return fs.join(base, "history.jsonl")
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
      if ok and type(rec) == "table" then
        rec.line = i
        if matches(rec, opts) then out[#out + 1] = rec end
      else
        local torn = i == #lines and not ends_clean
        warnings[#warnings + 1] = string.format("%s:%d: %s, skipped", path, i,
          torn and "torn last line (an append was cut short)" or "not a JSON record")
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

function M.format(r)
  local fw = type(r.firmware) == "table" and r.firmware or {}
  local sha = type(fw.sha256) == "string" and fw.sha256:sub(1, 12) or "-"
  return string.format("%-20s %-7s %-18s %-17s %-18s %-14s %-12s %s%s", r.time or "?", r.result or "?",
    r.board or "-", r.device or "-", r.port or "-", fw.version or "-", sha,
    r.duration and string.format("%.1fs", r.duration) or "",
    r.error and ("  " .. tostring(r.error)) or "")
end

return M
