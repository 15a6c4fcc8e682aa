-- mpctl: the API table recipes see as the global `mpctl`.
--
-- Submodules load on first use (`mpctl.serial`, `mpctl.repl`, `mpctl.esp`, ...), so a recipe
-- that only talks to a REPL never pays for the ESP or firmware code.

local M = {}

-- When this run began: history records count their duration from here.
M.t_start = require("mpctl.time").now()

local info = debug.getregistry()["mpctl.info"] or {}
M.version = info.version or "0.0.0"
M.datadir = info.datadir
M.exe = info.exe

local errors = require("mpctl.errors")

-- Raised for mistakes in how mpctl was called: an error of kind "usage" (exit code 2), as
-- opposed to failures (1). See mpctl.errors for the kinds.
function M.usage_error(msg)
  error(errors.new({ kind = "usage", detail = msg, msg = msg, usage = true }), 2)
end

function M.is_usage_error(e)
  return errors.is(e, "usage")
end

-- A failed check: printed as a failed step, an error of kind "failed", exit code 1.
function M.is_failure(e)
  return errors.is(e, "failed")
end

function M.fail(msg)
  error(errors.new({ kind = "failed", detail = msg, msg = msg, failure = true }), 2)
end

-- mpctl.check(cond, "REPL answers"): one visible step of a recipe.
function M.check(cond, what, detail)
  local ui = require("mpctl.ui")
  if cond then
    ui.log("info", "ok: %s", what)
    ui.event({ event = "check", name = what, ok = true })
    return cond
  end
  ui.event({ event = "check", name = what, ok = false, detail = detail })
  M.fail("check failed: " .. what .. (detail and (": " .. tostring(detail)) or ""))
end

-- A yes/no setting: absent or empty means `default`; else mpctl.options.yes_no (the one parser),
-- and a word that is neither yes nor no is a usage error, never a silent "no".
function M.yes(v, default)
  if v == nil or v == "" then return default or false end
  local b = require("mpctl.options").yes_no(v)
  if b == nil then M.usage_error("expected yes or no, got '" .. tostring(v) .. "'") end
  return b
end

-- mpctl.skip("MD5 check", "verify=no"): a step that was not made, said as such. A check that
-- was skipped never prints `ok`: the line reads `skipped: MD5 check (verify=no)` and the --json
-- event is a `check` with skipped = true (and no ok field).
function M.skip(what, why)
  local ui = require("mpctl.ui")
  ui.log("info", "skipped: %s%s", what, why and (" (" .. why .. ")") or "")
  ui.event({ event = "check", name = what, skipped = true, why = why })
end

-- The verification of a write (stats from a target's write): ok when it was made and matched,
-- skipped when it was not made (verify=no, a loader that cannot hash), else a failed check.
-- A driver that proves the rest of the flash unchanged (stats.outside: "unchanged" | "skipped" |
-- "not written") gets that reported the same way.
-- stats.verify_what names the check for the skipped line ("MD5 check" for esp).
function M.verified(st, what)
  if st.verified then M.check(true, what)
  elseif st.verify_skipped then M.skip(st.verify_what or "verification of what was written", st.verify_why or "verify=no")
  else M.check(false, what, "the write was not verified") end
  -- "unchanged" counts only from a verified write: an unverified one proved nothing
  if st.outside == "unchanged" and st.verified then
    M.check(true, "flash outside what was written is unchanged")
  elseif st.outside == "skipped" or (st.outside == "unchanged" and not st.verified) then
    M.skip("check of the flash outside what was written", st.outside_why or st.verify_why or "verify=no")
  end
end

function M.log(fmt, ...) require("mpctl.ui").log("info", fmt, ...) end
function M.warn(fmt, ...) require("mpctl.ui").log("warn", fmt, ...) end
function M.verbose(fmt, ...) require("mpctl.ui").log("verbose", fmt, ...) end

-- The serial ports present, as one line for messages ("none found" when there are none).
function M.port_list_text()
  local ok, ports = pcall(function() return require("mpctl.serial").list() end)
  if not ok or #ports == 0 then return "none found" end
  local names = {}
  for _, p in ipairs(ports) do names[#names + 1] = p.path end
  table.sort(names)
  return table.concat(names, ", ")
end

-- Opens the port a recipe was given (`--port`), or stops with a usage error that lists the
-- ports present, so a person who forgot --port sees what to type.
function M.open_port(arg, opts)
  opts = opts or {}
  local url = arg and arg.port
  if not url or url == "" then
    M.usage_error("no port given: use --port PORT (ports present: " .. M.port_list_text() ..
      "; or --port sim://micropython for the built-in simulator)")
  end
  local baud = tonumber(opts.baud or (arg and arg.baud) or 115200)
  local ok, port = pcall(require("mpctl.serial").open, url, { baud = baud, exclusive = opts.exclusive })
  if not ok then
    if errors.is(port, "not_found") or errors.is(port, "usage") then M.usage_error(tostring(port)) end
    error(port, 0)
  end
  return port
end

-- mpctl.record{...}: one line in the flash history (see mpctl.history).
function M.record(entry)
  return require("mpctl.history").record(entry)
end

-- mpctl.attempt(record, opts) -> the record, to be closed:
--
--     local rec <close> = mpctl.attempt{ board = board.id, port = arg.port, firmware = ... }
--     rec:target(t)        -- chip and device id from the connected target
--     rec.backup = ...     -- any field set on it goes into the history line
--
-- Whatever way the recipe ends, one history line is written when `rec` goes out of scope:
-- result "ok" (normal end), "failed" (an error: its kind and text), or "interrupted" (Ctrl-C,
-- SIGTERM); for an error raised while writing, the offset reached and the hint that running the
-- same command again resumes. The duration counts from mpctl's start. The line is written with
-- interruption held off (errors.shield). opts.path: history file.
local Attempt = {}

-- The board's identity is known from here on: an event for a supervisor (mpctl.many) and the
-- station's "never the same board twice": a device named in $MPCTL_SKIP_DEVICES (comma-separated
-- MACs / unique ids) is refused before anything is written, and no history line is written.
function Attempt.target(rec, t)
  local info = t:identify()
  rec.family, rec.chip, rec.device = t.family, info.chip, info.id
  local skip = os.getenv("MPCTL_SKIP_DEVICES")
  local done = skip and info.id and ("," .. skip .. ","):find("," .. info.id .. ",", 1, true)
  require("mpctl.ui").event({ event = "board", family = t.family, chip = info.chip, device = info.id,
    skipped = done and true or nil })
  if done then
    getmetatable(rec).closed = true
    -- back to the firmware it already runs: a skipped board is left as it was found
    if t.reset_to_app then pcall(t.reset_to_app, t) end
    error(errors.new({ kind = "refused", where = info.id,
      detail = "board " .. tostring(info.id) .. " was already flashed in this run (again=yes flashes it again)" }), 0)
  end
  return rec
end


local function close_attempt(rec, err)
  local meta = getmetatable(rec)
  if meta.closed then return end
  meta.closed = true
  local line = {}
  for k, v in pairs(rec) do line[k] = v end
  local time = require("mpctl.time")
  line.duration = time.now() - (meta.t0 or M.t_start)
  if err == nil then
    line.result = line.result or "ok"
  else
    local kind = errors.kind(err)
    line.result = kind == "interrupted" and "interrupted" or "failed"
    line.error_kind = kind
    line.error = tostring(type(err) == "table" and err.msg or err)
    -- stopped by a supervisor (mpctl.many) because this board's deadline passed: a timeout
    local deadline = tonumber(os.getenv("MPCTL_BOARD_DEADLINE") or "")
    if kind == "interrupted" and deadline and require("mpctl.time").wall() >= deadline then
      line.result, line.error_kind = "failed", "timeout"
      line.error = "no result within --board-timeout (" .. tostring(os.getenv("MPCTL_BOARD_TIMEOUT")) ..
        " s): stopped; " .. line.error
    end
    if type(err) == "table" then
      if type(err.offset) == "number" then line.offset = err.offset end
      if type(err.hint) == "string" then line.hint = err.hint end
      -- whether flash outside the image was touched, when the driver could tell
      if type(err.outside) == "string" then line.outside = err.outside end
    end
  end
  local history = require("mpctl.history")
  -- the same line as an event, for a supervisor that runs this recipe on many boards
  pcall(require("mpctl.ui").event, { event = "history_record", record = line })
  -- held off from interrupts: a second Ctrl-C must not cut the line in half
  local ok, why = pcall(errors.shield, history.record, line, meta.opts)
  if not ok then M.warn("could not write the history record: %s", tostring(why)) end
end

function M.attempt(rec, opts)
  rec = rec or {}
  return setmetatable(rec, { __index = Attempt, __close = close_attempt, opts = opts,
    t0 = opts and opts.t0 or nil })
end

-- mpctl.board_data(device) -> this board's row of the station's `data=FILE` (a table of the CSV's
-- columns), or nil: matched by MAC, else in the order boards arrived (mpctl.many.data).
function M.board_data(device)
  return require("mpctl.many.data").for_this_board(device)
end

-- A board named on the command line: a typo there is a usage error (exit 2), with the known ids.
function M.board(id)
  local ok, b = pcall(require("mpctl.board").load, id)
  if not ok then M.usage_error(tostring(b)) end
  return b
end

-- Lazy submodules: mpctl.serial, mpctl.repl, mpctl.esp, mpctl.firmware, ...
local NATIVE_OR_LIB = {
  serial = true, slip = true, hash = true, zlib = true, fs = true, time = true, ui = true,
  http = true, archive = true, usb = true, repl = true, esp = true, firmware = true,
  history = true, test = true, board = true, dfu = true, rp2 = true, backup = true, target = true, errors = true,
}

setmetatable(M, {
  __index = function(t, k)
    if NATIVE_OR_LIB[k] then
      local mod = require("mpctl." .. k)
      rawset(t, k, mod)
      return mod
    end
    return nil
  end,
})

return M
