-- Helpers for the REPL command tests: run mpctl as a user does, share one simulated board between
-- several mpctl runs, and look at the processes a run left.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local proc = require("mpctl.proc")
local time = require("mpctl.time")

local M = {}

function M.exe() return (assert(test.exe(), "test runner did not give the mpctl executable")) end

-- Runs mpctl with args; returns exit code and combined output. stdin is the given text (or empty).
-- opts.split: return code, stdout, stderr apart (stderr read after stdout ends).
function M.mpctl(args, timeout, stdin, opts)
  local argv = {M.exe()}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local split = opts and opts.split
  local errfile = split and os.tmpname()
  local p = proc.spawn{argv = split and {"sh", "-c", '"$@" 2>"$0"', errfile, table.unpack(argv)} or argv,
    pty = false, stderr = split and "inherit" or "stdout"}
  local inp = serial.wrap_fd(p:stdin_fd(), "child stdin")
  if stdin then inp:write(stdin) end
  inp:close()
  local out = serial.wrap_fd(p:stdout_fd(), "child stdout")
  local parts = {}
  local deadline = time.now() + (timeout or 30)
  while time.now() < deadline do
    local s = out:read(65536, 0.2)
    if s ~= "" then parts[#parts + 1] = s elseif out:is_eof() then break end
  end
  local code = p:wait(math.max(deadline - time.now(), 0.1))
  if code == nil then p:kill() p:wait(2) end
  out:close()
  if split then
    local f = io.open(errfile, "rb")
    local err = f and f:read("a") or ""
    if f then f:close() end
    os.remove(errfile)
    return code, table.concat(parts), err
  end
  return code, table.concat(parts)
end

-- One shared MicroPython on a pty for tests that need files to survive between mpctl runs.
-- Returns the process and the pty path.
function M.start_sim()
  local p = proc.spawn{argv = {M.exe(), "sim", "micropython", "--listen", "pty"}, pty = false, stderr = "null"}
  local out = serial.wrap_fd(p:stdout_fd(), "sim stdout")
  local line = out:read_until("\n", 15)
  return p, line:match("^(%S+)"), out
end

-- Runs fn(pty, dir) with a shared simulated board and a temporary folder, and removes both
-- whatever fn does.
function M.with_sim(fn)
  local sim, pty = M.start_sim()
  local dir = require("mpctl.fs").tmpdir()
  local ok, err = pcall(fn, pty, dir)
  sim:kill()
  sim:wait(5)
  require("mpctl.fs").remove(dir, {recursive = true})
  if not ok then error(err, 0) end
end

-- The pids of the processes whose parent is pid (from /proc).
function M.children(pid)
  local list = {}
  local p = io.popen("cat /proc/[0-9]*/stat 2>/dev/null")
  for line in p:lines() do
    local child, ppid = line:match("^(%d+) %b() %a (%d+)")
    if ppid and tonumber(ppid) == pid then list[#list + 1] = tonumber(child) end
  end
  p:close()
  return list
end

-- Is process pid still running (not gone, not a zombie)?
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return not stat:match("^%d+ %b() Z")
end

-- pid's children, their children, ... (from /proc).
function M.descendants(pid, out)
  out = out or {}
  for _, c in ipairs(M.children(pid)) do
    out[#out + 1] = c
    M.descendants(c, out)
  end
  return out
end

-- Starts mpctl with args (stdout and stderr together), waits until `ready(p)` is true (polled every
-- 0.1 s, at most `wait` seconds), sends SIGINT to its process group as a terminal's Ctrl-C does,
-- and returns exit code, output, and the pids of the processes it had started.
function M.interrupt(args, ready, wait)
  local argv = {M.exe()}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.spawn{argv = argv, pty = false, stderr = "stdout"}
  local out = serial.wrap_fd(p:stdout_fd(), "child stdout")
  local parts = {}
  local deadline = time.now() + (wait or 30)
  while time.now() < deadline and not ready(p, table.concat(parts)) do
    local s = out:read(65536, 0.1)
    if s ~= "" then parts[#parts + 1] = s end
  end
  local started = M.descendants(p:pid())
  p:kill("INT")
  deadline = time.now() + 30
  while time.now() < deadline do
    local s = out:read(65536, 0.2)
    if s ~= "" then parts[#parts + 1] = s elseif out:is_eof() then break end
  end
  local code = p:wait(math.max(deadline - time.now(), 0.1))
  if code == nil then p:kill("KILL") p:wait(2) end
  out:close()
  return code, table.concat(parts), started
end

return M
