-- Ctrl-C (issue 7, contract 2): a signal becomes an `interrupted` error wherever mpctl waits,
-- `<close>` handlers run, simulator children are gone, the exit code is 130.
-- Each case runs a small script in its own mpctl process, waits until the script says it is
-- blocked ("ready"), then sends the signal the way a terminal does (to the process group).
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local fs = require("mpctl.fs")

local have_proc, proc = pcall(require, "mpctl.proc")

local PRELUDE = [[
local function say(...) io.stdout:write(table.concat({...}, " "), "\n"); io.stdout:flush() end
local closed <close> = setmetatable({}, { __close = function() say("closed") end })
]]

-- Runs `code` in `mpctl --allow-exec script.lua`, sends `signals` (a list) once the script
-- printed "ready", returns exit code and the whole output (stdout and stderr).
-- opts.pty: run on a terminal (progress bars draw); opts.ready: the marker to wait for.
local function interrupt(code, signals, opts)
  opts = opts or {}
  if not have_proc then test.skip("mpctl.proc needs --allow-exec") end
  local dir = fs.tmpdir()
  local path = fs.join(dir, "script.lua")
  fs.write(path, PRELUDE .. code)
  local argv = { test.exe(), "--allow-exec", path }
  local p <close> = proc.spawn({ argv = argv, stderr = "stdout", pty = opts.pty,
    env = opts.pty and { TERM = "xterm", NO_COLOR = "1" } or nil })
  local out <close> = serial.wrap_fd(opts.pty and p:fd() or p:stdout_fd(), "script output")
  local text = out:read_until(opts.ready or "ready\n", 60)
  for i, sig in ipairs(signals or { "INT" }) do
    -- two signals sent back to back would merge into one pending signal: let the first land
    if i > 1 then require("mpctl.time").sleep(0.3) end
    p:kill(sig)
  end
  local rest = {}
  while not out:is_eof() do
    local s = out:read(65536, 30)
    if s == "" and not out:is_eof() then break end
    rest[#rest + 1] = s
  end
  local rc = p:wait(30)
  fs.remove(dir, { recursive = true })
  return rc, text .. table.concat(rest)
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return not stat:match("^%d+ %b() Z") -- a zombie has exited
end

test("a serial read on sim:// is interrupted; <close> ran; the simulator child is gone", function()
  local rc, out = interrupt([[
local serial = require("mpctl.serial")
local port <close> = serial.open("sim://echo?quiet=1")
say("pid", port:caps().pid)
say("ready")
port:read(10, 120)
say("not interrupted")
]])
  test.eq(rc, 130, out)
  test.contains(out, "mpctl: interrupted by SIGINT (Ctrl-C)")
  local _, count = out:gsub("interrupted by", "")
  test.eq(count, 1, "one message: the simulator child, in the same process group, stays quiet")
  test.contains(out, "closed")
  test.ok(not out:find("not interrupted", 1, true), out)
  local pid = tonumber(out:match("pid (%d+)"))
  test.ok(pid, "the script named its simulator")
  test.ok(not alive(pid), "simulator process " .. tostring(pid) .. " is gone")
end)

test("time.sleep is interrupted, by SIGTERM too", function()
  local rc, out = interrupt([[
say("ready")
require("mpctl.time").sleep(120)
say("not interrupted")
]], { "TERM" })
  test.eq(rc, 130, out)
  test.contains(out, "interrupted by SIGTERM")
  test.contains(out, "closed")
end)

test("a pure-Lua busy loop is interrupted at an instruction boundary", function()
  local rc, out = interrupt([[
say("ready")
local n = 0
while true do n = n + 1 end
]])
  test.eq(rc, 130, out)
  test.contains(out, "interrupted by SIGINT")
  test.contains(out, "closed")
end)

test("a busy loop inside a coroutine is interrupted too", function()
  local rc, out = interrupt([[
local co = coroutine.wrap(function() say("ready") while true do end end)
co()
]])
  test.eq(rc, 130, out)
  test.contains(out, "interrupted by SIGINT")
end)

test("a process wait is interrupted and the child is stopped", function()
  local rc, out = interrupt([[
local proc = require("mpctl.proc")
local p <close> = proc.spawn({ argv = { "sleep", "120" } })
say("child", p:pid())
say("ready")
p:wait(120)
say("not interrupted")
]])
  test.eq(rc, 130, out)
  test.contains(out, "closed")
  local pid = tonumber(out:match("child (%d+)"))
  test.ok(pid and not alive(pid), "the sleep child is gone")
end)

test("errors.shield lets its function finish; the interrupt comes right after", function()
  local rc, out = interrupt([[
local errors = require("mpctl.errors")
errors.shield(function()
  say("ready")
  require("mpctl.time").sleep(0.5)
  say("shield finished")
end)
while true do end
]])
  test.eq(rc, 130, out)
  test.contains(out, "shield finished")
  test.contains(out, "interrupted by SIGINT")
end)

test("a second Ctrl-C within 2 s exits at once with 130", function()
  local rc, out = interrupt([[
local errors = require("mpctl.errors")
errors.shield(function()
  say("ready")
  require("mpctl.time").sleep(60) -- held: only the second signal can end this
end)
]], { "INT", "INT" })
  test.eq(rc, 130, out)
  test.contains(out, "interrupted again")
end)

test("an HTTP download from a stalled server is interrupted; the partial file stays", function()
  local root = fs.tmpdir()
  fs.write(fs.join(root, "fw.bin"), string.rep("x", 100000))
  local server <close> = proc.spawn({ argv = { "/usr/bin/python3", "tests/fixtures/http_server.py", "--root", root } })
  local sout <close> = serial.wrap_fd(server:stdout_fd(), "http_server stdout")
  local port = tonumber(sout:read_until("\n", 20):match("PORT (%d+)"))
  local part = fs.join(root, "fw.bin.part")
  local rc, out = interrupt(string.format([[
local http = require("mpctl.http")
local said
http.get("http://127.0.0.1:%d/_stall/5000/fw.bin", { to = %q, stall_timeout = 120,
  progress = function(done) if done >= 5000 and not said then said = true say("ready") end end })
say("not interrupted")
]], port, part))
  test.eq(rc, 130, out)
  test.contains(out, "interrupted by SIGINT")
  test.eq(fs.stat(part) and fs.stat(part).size, 5000, "the 5000 bytes received stay for a resume")
  server:kill()
  fs.remove(root, { recursive = true })
end)

test("mpctl test: a test stuck in a Lua loop is interrupted, the run stops with 130", function()
  if not have_proc then test.skip("mpctl.proc needs --allow-exec") end
  local dir = fs.tmpdir()
  local file = fs.join(dir, "stuck_test.lua")
  fs.write(file, [[
local test = require("mpctl.test")
test("stuck", function() io.stdout:write("ready\n") io.stdout:flush() while true do end end)
test("after", function() io.stdout:write("second case ran\n") end)
]])
  local p <close> = proc.spawn({ argv = { test.exe(), "test", file }, stderr = "stdout" })
  local out <close> = serial.wrap_fd(p:stdout_fd(), "mpctl test output")
  local text = out:read_until("ready\n", 60)
  p:kill("INT")
  while not out:is_eof() do
    local s = out:read(65536, 30)
    if s == "" and not out:is_eof() then break end
    text = text .. s
  end
  test.eq(p:wait(30), 130, text)
  test.contains(text, "interrupted by SIGINT")
  test.ok(not text:find("second case ran", 1, true), "the run stopped: " .. text)
  fs.remove(dir, { recursive = true })
end)

test("a progress bar on a terminal is ended with a newline before the message", function()
  local rc, out = interrupt([[
local ui = require("mpctl.ui")
local p = ui.progress("flashing", 1000)
require("mpctl.time").sleep(0.3)
p:update(500)
while true do end
]], { "INT" }, { pty = true, ready = "flashing" })
  test.eq(rc, 130, out)
  local last_bar = out:match(".*(flashing [^\n]*)\n")
  test.ok(last_bar, "the bar line is ended with a newline: " .. out)
  test.ok(last_bar:find("50%", 1, true), "and keeps the last state shown: " .. out)
  test.ok(out:find("\nmpctl: interrupted by SIGINT"), "the message starts a line of its own: " .. out)
end)
