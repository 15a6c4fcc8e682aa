-- mpctl.repl.commands: what the exec/run/verify_repl commands do with a REPL, and how they show it
-- (stdout for the device's output, stderr for its traceback, named after the user's file).
local errors = require("mpctl.repl.errors")

local M = {}

-- A traceback of code sent from a local file names "<stdin>": name the file instead, and show the
-- source line under each of its frames as CPython does, so the user can go to it.
function M.name_traceback(tb, filename, source)
  local lines = {}
  for l in (source or ""):gmatch("([^\n]*)\n?") do lines[#lines + 1] = l end
  local out = {}
  for line in (tb:gsub("\r\n", "\n")):gmatch("([^\n]*)\n?") do
    local n = line:match('^%s*File "<stdin>", line (%d+)')
    if n then
      out[#out + 1] = (line:gsub('"<stdin>"', '"' .. filename:gsub("%%", "%%%%") .. '"', 1))
      local src = lines[tonumber(n)]
      if src and src:find("%S") then out[#out + 1] = "    " .. src:match("^%s*(.-)%s*$") end
    else
      out[#out + 1] = line
    end
  end
  while out[#out] == "" do out[#out] = nil end
  return table.concat(out, "\n") .. "\n"
end

--- Runs code on the board behind `port`, streaming its output to stdout (opts.on_output instead);
-- a device traceback goes to stderr (named after opts.filename when the code came from a file) and
-- makes the result false, with the error as second value.
-- opts: timeout (s), filename, on_output(piece), on_error(text) (default: stderr).
function M.run_streaming(port, code, timeout, opts)
  if type(timeout) == "table" then opts, timeout = timeout, timeout.timeout end
  opts = opts or {}
  local r = require("mpctl.repl").attach(port, opts.attach)
  -- on a terminal every piece shows as it comes; into a pipe or as --json events whole lines go
  -- (a board writes a byte at a time, which would make one event per byte)
  local out, held = opts.on_output, ""
  if not out then
    local ok_tty, tty = pcall(function() return require("mpctl.ui").isatty(1) end)
    if ok_tty and tty then
      out = function(s) io.stdout:write(s) io.stdout:flush() end
    else
      out = function(s)
        held = held .. s
        local cut = held:match(".*\n()")
        if cut then
          io.stdout:write(held:sub(1, cut - 1))
          io.stdout:flush()
          held = held:sub(cut)
        end
      end
    end
  end
  local ok, err = pcall(r.exec, r, code, {timeout = timeout, on_output = out})
  if held ~= "" then io.stdout:write(held) io.stdout:flush() end
  pcall(r.close, r)
  if ok then return true end
  if errors.is_error(err, "device") then
    local tb = err.traceback:gsub("\r\n", "\n")
    if opts.filename then tb = M.name_traceback(tb, opts.filename, code) end
    err.traceback_named = tb
    if opts.on_error then opts.on_error(tb) else io.stderr:write(tb) end
    return false, err
  end
  error(err, 0)
end

--- Calls machine.<name>() (reset, bootloader) on the board behind `port`: the board goes away at
-- once, so the call is sent without waiting for its answer. A port without it is refused with
-- kind "unsupported" (the plain WebAssembly build has no machine module).
function M.machine_call(port, name)
  local r = require("mpctl.repl").attach(port)
  local has = r:exec("try:\n import machine\n print(hasattr(machine,'" .. name .. "'))\nexcept ImportError:\n print(False)")
  if not has:find("True", 1, true) then
    r:close()
    require("mpctl.errors").raise("unsupported", r.name, "this MicroPython has no machine." .. name .. "()")
  end
  -- plain raw REPL input: the code and Ctrl-D; the answer never comes back complete
  r:_write("import machine\nmachine." .. name .. "()\x04")
  r.raw = false
end

-- The post-flash proof, shared by verify_repl and the flashing recipes: reach the REPL on an
-- open port, run print('hello'), report what firmware answers. Raises a failed check.
-- opts.test: then run the starter post-flash test (mpctl.repl.starter) for opts.board.
function M.verify(port, opts)
  opts = opts or {}
  local mpctl = require("mpctl")
  local name = opts.name or port.name or tostring(port)
  local ok, r = pcall(require("mpctl.repl").attach, port, { timeout = opts.timeout or 10 })
  mpctl.check(ok, "REPL reachable on " .. tostring(name), r)
  local hok, out = pcall(r.exec, r, "print('hello')")
  if hok then io.write(">>> print('hello')\n", out) end
  mpctl.check(hok and out:gsub("\r", "") == "hello\n", "print('hello') prints hello", out)
  local info = r:info()
  print(string.format("MicroPython %s on %s%s (sys.platform %s)", info.version or "?", info.machine or "?",
    (info.build and info.build ~= "") and (", build " .. info.build) or "", info.platform or "?"))
  if info.uname then
    local u = info.uname
    print(string.format("os.uname(): sysname=%s release=%s version=%s machine=%s",
      u.sysname or "", u.release or "", u.version or "", u.machine or ""))
  else
    print("os.uname(): not available on this port")
  end
  if opts.test then
    local ok2, err = pcall(require("mpctl.repl.starter").verify, r, opts.board)
    if not ok2 then r:close() error(err, 0) end
  end
  r:close()
  return info
end

return M
