--- Check that a MicroPython REPL answers: print('hello') must print hello; report the firmware.
-- @option timeout: seconds to wait for each answer (default 10)
--
-- mpctl verify_repl --port /dev/ttyACM0      (exit 0 when the REPL works, 1 when it does not)

local port = mpctl.open_port(arg)
local ok, r = pcall(mpctl.repl.attach, port, {timeout = tonumber(arg.timeout) or 10})
mpctl.check(ok, "REPL reachable on " .. tostring(arg.port), r)

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
r:close()

