-- mpctl.test: the test runner for mpctl's own Lua tests and for device test scripts.
--
-- A test file registers cases; the runner loads each file, runs its cases in order, and
-- reports one line per case, TAP or JUnit on request, closing with `N passed, N failed`.
--
--     local test = require("mpctl.test")
--     test("name", function() test.eq(got, want) end)
--
-- Device scripts (test_*.py, *_test.py) are run on the board behind --port through the REPL,
-- one case each, the board soft-reset before each: a traceback fails the case (see
-- run_device_script); without --port each is reported as skipped, never left out silently.

local M = {}

local SKIP = setmetatable({}, { __tostring = function() return "skip" end })

-- Cases registered by the file being loaded; the runner swaps this list per file.
local collector = nil

local function register(name, fn, opts)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("test(name, function) expected", 3)
  end
  if not collector then
    error("test() called outside the test runner (run the file with `mpctl test`)", 3)
  end
  collector[#collector + 1] = { name = name, fn = fn, timeout = opts and opts.timeout }
end

setmetatable(M, { __call = function(_, name, fn, opts) return register(name, fn, opts) end })

-- ---------------------------------------------------------------------------------------
-- assertions

local function show(v)
  if type(v) == "string" then
    local s = v
    if #s > 200 then s = s:sub(1, 200) .. "..." end
    return '"' .. s:gsub("[%c\128-\255\"\\]", function(c)
      if c == "\n" then return "\\n" elseif c == "\r" then return "\\r"
      elseif c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
      return string.format("\\x%02x", c:byte())
    end) .. '"' .. (#v > 200 and string.format(" (%d bytes)", #v) or "")
  elseif type(v) == "table" then
    local parts, n = {}, 0
    for k, x in pairs(v) do
      n = n + 1
      if n > 12 then parts[#parts + 1] = "..." break end
      parts[#parts + 1] = tostring(k) .. "=" .. show(x)
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end
M.show = show

local function deep_equal(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not deep_equal(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function fail(msg, level)
  error(msg, (level or 1) + 1)
end

function M.eq(got, want, what)
  if not deep_equal(got, want) then
    fail(string.format("%sexpected %s, got %s", what and (what .. ": ") or "", show(want), show(got)), 2)
  end
  return got
end

function M.ne(got, unwanted, what)
  if deep_equal(got, unwanted) then
    fail(string.format("%sexpected something other than %s", what and (what .. ": ") or "", show(unwanted)), 2)
  end
  return got
end

function M.ok(v, what)
  if not v then fail((what or "expected a true value") .. " (got " .. show(v) .. ")", 2) end
  return v
end

-- Substring (plain) match on a string; shows the string when it does not contain `needle`.
function M.contains(s, needle, what)
  if type(s) ~= "string" or not s:find(needle, 1, true) then
    fail(string.format("%sexpected %s to contain %s", what and (what .. ": ") or "", show(s), show(needle)), 2)
  end
  return s
end

-- Calls fn, expects it to raise; `pattern` (plain substring) must occur in the message.
-- Returns the error message so a test can look closer.
function M.raises(fn, pattern, what)
  local ok, err = pcall(fn)
  if ok then
    fail((what and (what .. ": ") or "") .. "expected an error" ..
      (pattern and (" containing " .. show(pattern)) or "") .. ", but none was raised", 2)
  end
  local msg = type(err) == "table" and (err.msg or err.message or tostring(err)) or tostring(err)
  if pattern and not msg:find(pattern, 1, true) then
    fail(string.format("%sexpected an error containing %s, got %s", what and (what .. ": ") or "",
      show(pattern), show(msg)), 2)
  end
  return msg
end

-- Under ctest (MPCTL_TEST_NO_SKIP=1) a skip is a failure: a missing peer or fixture there means
-- the set-up is broken, and a suite that silently skips its peers proves nothing.
function M.skip(reason)
  if os.getenv("MPCTL_TEST_NO_SKIP") == "1" then
    error("skipped where skipping is not allowed (MPCTL_TEST_NO_SKIP=1): " .. tostring(reason), 2)
  end
  error(setmetatable({ reason = reason or "skipped" }, { __index = SKIP, __tostring = function(s) return "skip: " .. s.reason end }), 0)
end

local function is_skip(e)
  return type(e) == "table" and getmetatable(e) and getmetatable(e).__index == SKIP
end

-- `n` bytes that look random but are the same on every run for the same `seed` (mpctl.random),
-- so a failing transfer test can be reproduced.
function M.random_bytes(n, seed)
  return require("mpctl.random").new(seed or 1):bytes(n)
end

-- Where the running test can find the mpctl executable (to start simulators, or mpctl itself).
function M.exe()
  return M.context and M.context.exe
end

-- The --port given to `mpctl test`, or a skip when there is none (device tests need one).
function M.port()
  local p = M.context and M.context.port
  if not p then M.skip("needs --port") end
  return p
end

-- ---------------------------------------------------------------------------------------
-- discovery

-- The word `board` (when no file or folder has that name) is mpctl's starter post-flash test.
local STARTER = "board"

local function list_tests(path, fs, with_py, out)
  local st = fs.stat(path)
  if not st and path == STARTER then
    out[#out + 1] = STARTER
    return out
  end
  if not st then
    return nil, "no such file or folder: " .. path .. " (`board` runs mpctl's starter post-flash test)"
  end
  if st.type == "dir" then
    for _, name in ipairs(fs.list(path)) do
      local full = fs.join(path, name)
      local s = fs.stat(full)
      if s and s.type == "dir" then
        if name ~= "fixtures" and name:sub(1, 1) ~= "." then list_tests(full, fs, with_py, out) end
      elseif name:match("_test%.lua$") then
        out[#out + 1] = full
      elseif with_py and (name:match("^test_.*%.py$") or name:match("_test%.py$")) then
        out[#out + 1] = full
      end
    end
  else
    out[#out + 1] = path
  end
  return out
end

-- ---------------------------------------------------------------------------------------
-- reporters

local function xml_escape(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" })
    :gsub("[%z\1-\8\11\12\14-\31]", "?"))
end

local function write_junit(path, results, total_time)
  local by_file, order = {}, {}
  for _, r in ipairs(results) do
    if not by_file[r.file] then by_file[r.file] = {}; order[#order + 1] = r.file end
    table.insert(by_file[r.file], r)
  end
  local out = { '<?xml version="1.0" encoding="UTF-8"?>' }
  local nf, ns = 0, 0
  for _, r in ipairs(results) do
    if r.status == "fail" then nf = nf + 1 elseif r.status == "skip" then ns = ns + 1 end
  end
  out[#out + 1] = string.format('<testsuites name="mpctl" tests="%d" failures="%d" skipped="%d" time="%.3f">',
    #results, nf, ns, total_time)
  for _, file in ipairs(order) do
    local cases = by_file[file]
    local f, s, t = 0, 0, 0
    for _, r in ipairs(cases) do
      t = t + r.time
      if r.status == "fail" then f = f + 1 elseif r.status == "skip" then s = s + 1 end
    end
    out[#out + 1] = string.format('  <testsuite name="%s" tests="%d" failures="%d" skipped="%d" time="%.3f">',
      xml_escape(file), #cases, f, s, t)
    for _, r in ipairs(cases) do
      out[#out + 1] = string.format('    <testcase classname="%s" name="%s" time="%.3f">',
        xml_escape(file), xml_escape(r.name ~= "" and r.name or file:match("[^/]+$")), r.time)
      if r.status == "fail" then
        out[#out + 1] = string.format('      <failure message="%s">%s</failure>',
          xml_escape((r.message or ""):match("[^\n]*")), xml_escape(r.message or ""))
      elseif r.status == "skip" then
        out[#out + 1] = string.format('      <skipped message="%s"/>', xml_escape(r.message or ""))
      end
      if r.output and r.output ~= "" then
        out[#out + 1] = "      <system-out>" .. xml_escape(r.output) .. "</system-out>"
      end
      out[#out + 1] = "    </testcase>"
    end
    out[#out + 1] = "  </testsuite>"
  end
  out[#out + 1] = "</testsuites>"
  local fs = require("mpctl.fs")
  fs.write(path, table.concat(out, "\n") .. "\n")
end
-- The same writer for other runners (mpctl.many: one test case per board).
M.write_junit = write_junit

-- ---------------------------------------------------------------------------------------
-- running

local DEFAULT_CASE_TIMEOUT = 240
local DEFAULT_DEVICE_TIMEOUT = 60

-- A hung Lua loop must fail the case, not the whole run: a count hook checks the deadline.
-- Blocking C calls are bounded by their own timeouts.
local function with_deadline(seconds, fn)
  local time = require("mpctl.time")
  local deadline = time.now() + seconds
  debug.sethook(function()
    if time.now() > deadline then
      debug.sethook()
      error(string.format("test timed out after %g s", seconds), 2)
    end
  end, "", 100000)
  local ok, err = xpcall(fn, function(e)
    if is_skip(e) then return e end
    if require("mpctl.errors").is(e, "interrupted") then return e end -- stops the run (below)
    if type(e) == "table" then
      e = e.msg or e.message or tostring(e)
    end
    return debug.traceback(tostring(e), 2)
  end)
  debug.sethook()
  return ok, err
end

-- Each test file gets a temporary folder of its own: TMPDIR points into it while the file runs,
-- so fs.tmpdir() of the test and its helpers, and every program it starts (mpctl runs, simulators,
-- the HTTP and TLS fixtures) leave their folders there, and the whole folder goes when the file
-- ends, whatever the file did or forgot. Returns a to-be-closed value that restores TMPDIR.
local function file_tmpdir()
  local fs, proc = require("mpctl.fs"), require("mpctl.proc")
  local old = os.getenv("TMPDIR")
  local dir = fs.tmpdir()
  proc.setenv("TMPDIR", dir)
  return setmetatable({dir = dir}, {__close = function()
    proc.setenv("TMPDIR", old)
    collectgarbage()   -- processes and files the file's cases dropped are closed before the folder goes
    pcall(fs.remove, dir, {recursive = true})
  end})
end

local function run_lua_file(file, env_for, emit)
  local tmp <close> = file_tmpdir()
  local cases = {}
  collector = cases
  local env = env_for(file)
  local chunk, lerr = loadfile(file, "t", env)
  local ok, err
  if chunk then
    ok, err = xpcall(chunk, debug.traceback)
  else
    ok, err = false, lerr
  end
  collector = nil
  if not ok then
    emit({ file = file, name = "(load)", status = "fail", message = tostring(err), time = 0 })
    return
  end
  if #cases == 0 then
    emit({ file = file, name = "(no cases)", status = "fail", message = "the file registered no test cases", time = 0 })
    return
  end
  local time = require("mpctl.time")
  for _, case in ipairs(cases) do
    local t0 = time.now()
    local cok, cerr = with_deadline(case.timeout or DEFAULT_CASE_TIMEOUT, case.fn)
    -- Ctrl-C: no more cases; the CLI reports it and exits 130
    if not cok and require("mpctl.errors").is(cerr, "interrupted") then error(cerr, 0) end
    local r = { file = file, name = case.name, time = time.now() - t0 }
    if cok then
      r.status = "pass"
    elseif is_skip(cerr) then
      r.status, r.message = "skip", cerr.reason
    else
      r.status, r.message = "fail", tostring(cerr)
    end
    emit(r)
    collectgarbage()
  end
end

-- A device script (test_*.py, *_test.py) runs on the board behind --port as one case named after
-- its file, all on one connection. Before each script the board is soft-reset, so no state leaks
-- from the one before; where a soft reset ends the MicroPython process (the WebAssembly build on a
-- bare pty), the port is opened again, which starts a fresh one. What the script prints is kept: shown on failure,
-- and as it comes with -v; in JUnit's system-out. A traceback fails the case with its exception
-- line as the message, naming the script and its lines instead of <stdin>.
local function run_device_script(file, ctx, emit)
  local time = require("mpctl.time")
  local t0 = time.now()
  local r = { file = file, name = "", device = true }
  if not ctx.port then
    r.status, r.time = "skip", 0
    r.message = "device script: no --port given (device scripts run on a board: mpctl test --port PORT ...)"
    emit(r)
    return
  end
  local fs = require("mpctl.fs")
  local serial = require("mpctl.serial")
  local repl = require("mpctl.repl")
  local errors = require("mpctl.errors")
  local code = fs.read(file)
  local output = {}
  local conn = ctx.conn   -- one connection for the whole run, kept in M.run
  local function close()
    if conn.device then pcall(errors.shield, conn.device.close, conn.device) end
    if conn.port then pcall(errors.shield, conn.port.close, conn.port) end
    conn.port, conn.device = nil, nil
  end
  local function attach()
    conn.port = serial.open(ctx.port, { baud = ctx.baud or 115200 })
    conn.device = repl.attach(conn.port, { timeout = 10 })
  end
  local ok, err = pcall(function()
    if not conn.device then attach() end
    if conn.device:soft_reset() == "eof" then
      close()
      attach()
    end
    return conn.device:exec(code, {
      timeout = ctx.timeout or DEFAULT_DEVICE_TIMEOUT,
      on_output = function(piece)
        output[#output + 1] = piece
        if ctx.verbose and ctx.write then ctx.write(piece) end
      end,
    })
  end)
  -- a script that did not end cleanly (timeout, lost line) may have left the board busy: start
  -- the next one from a new connection
  if not ok and not repl.is_error(err, "device") then close() end
  if errors.is(err, "interrupted") then close() end
  r.time = time.now() - t0
  r.output = table.concat(output)
  if ok then
    r.status = "pass"
  elseif errors.is(err, "interrupted") then
    error(err, 0)   -- Ctrl-C: no more cases; the CLI reports it and exits 130
  elseif repl.is_error(err, "device") then
    local tb = repl.name_traceback(err.traceback:gsub("\r\n", "\n"), file:match("[^/]+$"), code)
    r.status, r.message = "fail", err.exception .. "\n" .. tb
  else
    r.status, r.message = "fail", tostring(err)
  end
  emit(r)
end

-- mpctl's starter post-flash test (mpctl.repl.starter) as one case per check, on the run's
-- connection: the board file from --board, else the one the firmware names (sys.implementation).
local function run_starter(ctx, emit)
  local checks = require("mpctl.repl.starter").CHECKS
  if not ctx.port then
    for _, c in ipairs(checks) do
      emit({ file = STARTER, name = c.what, status = "skip", time = 0,
        message = "starter post-flash test: no --port given (mpctl test --port PORT board)" })
    end
    return
  end
  local time = require("mpctl.time")
  local serial, repl = require("mpctl.serial"), require("mpctl.repl")
  local board_mod = require("mpctl.board")
  local conn = ctx.conn
  local t0 = time.now()
  local ok, err = pcall(function()
    if not conn.device then
      conn.port = serial.open(ctx.port, { baud = ctx.baud or 115200 })
      conn.device = repl.attach(conn.port, { timeout = 10 })
    end
    local id = ctx.board or board_mod.identify(conn.device:info()).board
    -- board ids in any case, as everywhere (esp32_generic = ESP32_GENERIC)
    for _, known in ipairs(id and board_mod.ids() or {}) do
      if known:upper() == id:upper() then id = known end
    end
    local board
    if id then
      local bok, b = pcall(board_mod.load, id)
      if not bok then error(b, 0) end   -- an unknown --board says so, with the close ids
      board = b
    end
    require("mpctl.repl.starter").run(conn.device, board, { on_result = function(res)
      local r = { file = STARTER, name = res.what, status = res.status, time = time.now() - t0 }
      if res.status == "pass" then r.output = res.detail .. "\n" else r.message = res.detail end
      emit(r)
      if res.status == "pass" and ctx.verbose and ctx.write then ctx.write("      " .. res.detail .. "\n") end
      t0 = time.now()
    end })
  end)
  if not ok then
    if require("mpctl.errors").is(err, "interrupted") then error(err, 0) end
    emit({ file = STARTER, name = "(board)", status = "fail", time = time.now() - t0,
      message = tostring(type(err) == "table" and (err.msg or err.detail) or err) })
  end
end

-- opts: paths (list), tap (bool), junit (path), port, baud, env_for(file) -> env, exe, out (writer)
-- Returns passed, failed, skipped.
function M.run(opts)
  local fs = require("mpctl.fs")
  local time = require("mpctl.time")
  local write = opts.out or function(s) io.stdout:write(s) io.stdout:flush() end
  M.context = { port = opts.port, baud = opts.baud, exe = opts.exe, timeout = opts.timeout }

  local files = {}
  local results = {}
  local counts = { pass = 0, fail = 0, skip = 0 }
  local n = 0
  local function emit(r)
    n = n + 1
    results[#results + 1] = r
    counts[r.status] = counts[r.status] + 1
    local label = (r.name ~= "") and (r.file .. ": " .. r.name) or r.file
    if opts.tap then
      if r.status == "pass" then
        write(string.format("ok %d - %s\n", n, label))
      elseif r.status == "skip" then
        write(string.format("ok %d - %s # SKIP %s\n", n, label, r.message or ""))
      else
        write(string.format("not ok %d - %s\n", n, label))
        for line in (r.message or ""):gmatch("[^\n]+") do write("  # " .. line .. "\n") end
        for line in (r.output or ""):gmatch("[^\n]+") do write("  # | " .. line .. "\n") end
      end
    else
      if r.status == "pass" then
        write(string.format("ok    %s (%.2f s)\n", label, r.time))
      elseif r.status == "skip" then
        write(string.format("skip  %s: %s\n", label, r.message or ""))
      else
        write(string.format("FAIL  %s\n", label))
        for line in (r.message or ""):gmatch("[^\n]+") do write("      " .. line .. "\n") end
        if r.output and r.output ~= "" and not opts.verbose then
          write("      output:\n")
          for line in r.output:gsub("\n$", ""):gmatch("[^\n]*") do write("      | " .. line .. "\n") end
        end
      end
    end
  end

  for _, p in ipairs(opts.paths) do
    -- device scripts are always listed: without --port each is reported as skipped, with the reason
    local got, err = list_tests(p, fs, true, files)
    if not got then
      emit({ file = p, name = "(discover)", status = "fail", message = err, time = 0 })
    end
  end
  if opts.tap then write("TAP version 13\n") end

  local t0 = time.now()
  local conn = {}   -- the board's connection, shared by the device scripts of this run
  local errors = require("mpctl.errors")
  local close_conn <close> = setmetatable({}, { __close = function()
    if conn.device then pcall(errors.shield, conn.device.close, conn.device) end
    if conn.port then pcall(errors.shield, conn.port.close, conn.port) end
  end })
  for _, file in ipairs(files) do
    if file == STARTER then
      run_starter(setmetatable({ write = write, conn = conn }, { __index = opts }), emit)
    elseif file:match("%.py$") then
      if opts.verbose and opts.port and not opts.tap then write(string.format("run   %s\n", file)) end
      run_device_script(file, setmetatable({ write = write, conn = conn }, { __index = opts }), emit)
    else
      run_lua_file(file, opts.env_for, emit)
    end
  end
  if opts.tap then write(string.format("1..%d\n", n)) end
  if opts.junit then write_junit(opts.junit, results, time.now() - t0) end
  local line = string.format("%d passed, %d failed", counts.pass, counts.fail)
  if counts.skip > 0 then line = line .. string.format(", %d skipped", counts.skip) end
  write(line .. "\n")
  return counts.pass, counts.fail, counts.skip
end

return M
