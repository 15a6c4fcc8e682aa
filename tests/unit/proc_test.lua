-- mpctl.proc from Lua, with its descriptors wrapped as mpctl.serial ports the way the
-- MicroPython simulator uses them. mpctl.proc is trusted-library only: recipes (and test files
-- run without --allow-exec) cannot require it, which tests/cli/cli_test.lua checks.
local test = require("mpctl.test")
local serial = require("mpctl.serial")

local have_proc, proc = pcall(require, "mpctl.proc")

local function need_proc()
  if not have_proc then test.skip("mpctl.proc needs --allow-exec") end
end

test("sh -c 'echo hi' through a stdout pipe wrapped as a port", function()
  need_proc()
  local p <close> = proc.spawn { argv = { "/bin/sh", "-c", "echo hi" } }
  local out <close> = serial.wrap_fd(p:stdout_fd(), "sh stdout")
  test.eq(out:read_until("\n", 5), "hi\n")
  test.eq(p:wait(5), 0)
end)

test("a missing program is reported by name", function()
  need_proc()
  local msg = test.raises(function() proc.spawn { argv = { "mpctl-no-such-tool", "--version" } } end,
    'cannot run "mpctl-no-such-tool": program not found')
  test.contains(msg, "PATH=")
  test.raises(function() proc.spawn { argv = { "/bin/true" }, cwd = "/no/such/dir" } end,
    "/no/such/dir: No such file or directory")
end)

test("pty child: raw mode, a terminal on stdin, master wrapped as a port", function()
  need_proc()
  local p <close> = proc.spawn { argv = { "/bin/sh", "-c", 'test -t 0 && echo tty; read x; printf "[%s]\\n" "$x"' }, pty = true }
  local port <close> = serial.wrap_fd(p:fd(), "sh pty")
  test.eq(port:read_until("tty\n", 5), "tty\n", "no \\r\\n translation")
  port:write("typed\n")
  test.eq(port:read_until("]\n", 5), "[typed]\n", "no echo of the input")
  test.eq(p:wait(5), 0)
end)

test("kill and close report the signal; a closed process is reaped", function()
  need_proc()
  local p = proc.spawn { argv = { "sleep", "60" } }
  test.eq(p:wait(0), nil)
  test.eq(p:kill("TERM"), true)
  local code, sig = p:wait(5)
  test.eq(code, 143)
  test.eq(sig, 15)
  test.eq(p:kill(), false, "no signal to a reaped process")
  p:close()
end)
