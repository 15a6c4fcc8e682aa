-- mpctl: the API table recipes see as the global `mpctl`.
--
-- Submodules load on first use (`mpctl.serial`, `mpctl.repl`, `mpctl.esp`, ...), so a recipe
-- that only talks to a REPL never pays for the ESP or firmware code.

local M = {}

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

-- A yes/no setting from the command line: yes, 1, true, on (or a Lua true) mean yes; absent
-- or empty means `default`; anything else means no.
function M.yes(v, default)
  if v == nil or v == "" then return default or false end
  return v == true or v == "yes" or v == "1" or v == "true" or v == "on"
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
  history = true, test = true, board = true, dfu = true, rp2 = true, backup = true,
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
