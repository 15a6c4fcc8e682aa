-- The REPL recipes as a user runs them: separate mpctl processes, exit codes and output, against
-- the real MicroPython (one `mpctl sim micropython --listen pty` shared by several invocations,
-- so files written by one are seen by the next) and against a line that answers garbage.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local proc = require("mpctl.proc")
local fs = require("mpctl.fs")
local time = require("mpctl.time")

local support = require("support")
local exe, mpctl, start_sim = support.exe, support.mpctl, support.start_sim


test("verify_repl passes on real MicroPython and reports the firmware", function()
  local code, out = mpctl({"verify_repl", "--port", "sim://micropython"}, 60)
  test.eq(code, 0, "exit code; output: " .. out)
  test.contains(out, "MicroPython 1.27.0 on JS with Emscripten")
  test.contains(out, "os.uname(): not available")
end, {timeout = 90})

test("verify_repl fails with exit code 1 on a line that answers garbage", function()
  local l = serial.listen("socket://127.0.0.1:0")
  local argv = {exe(), "verify_repl", "--port", "socket://127.0.0.1:" .. l.port, "timeout=1"}
  local p = proc.spawn{argv = argv, pty = false, stderr = "stdout"}
  local out = serial.wrap_fd(p:stdout_fd(), "child stdout")
  local conn = l:accept(15)
  test.ok(conn, "the recipe connected")
  conn:write("\x00\xf0garbage\r\n")
  local parts = {}
  local deadline = time.now() + 30
  while time.now() < deadline do
    local s = out:read(65536, 0.2)
    if s ~= "" then parts[#parts + 1] = s elseif out:is_eof() then break end
    conn:read(65536, 0)
  end
  local code = p:wait(5)
  if code == nil then p:kill() p:wait(2) end
  conn:close(); l:close(); out:close()
  local text = table.concat(parts)
  test.eq(code, 1, "exit code; output: " .. text)
  test.contains(text, "REPL reachable")
  test.contains(text, "garbage")
end, {timeout = 60})

test("exec prints output; a device traceback exits 1", function()
  local code, out = mpctl({"exec", "--port", "sim://micropython", "x=6*7", ";", "print(x)"}, 60)
  test.eq(code, 0, out)
  test.contains(out, "42\n")
  code, out = mpctl({"exec", "--port", "sim://micropython", "1/0"}, 60)
  test.eq(code, 1, out)
  test.contains(out, "ZeroDivisionError: divide by zero")
end, {timeout = 90})

test("run streams a script's output; a traceback exits 1", function()
  local dir = fs.tmpdir()
  fs.write(dir .. "/ok.py", "for i in range(3):\n    print('line', i)\n")
  fs.write(dir .. "/bad.py", "print('start')\nraise ValueError('bad value')\n")
  local code, out = mpctl({"run", "--port", "sim://micropython", dir .. "/ok.py"}, 60)
  test.eq(code, 0, out)
  test.contains(out, "line 0\nline 1\nline 2\n")
  code, out = mpctl({"run", "--port", "sim://micropython", dir .. "/bad.py"}, 60)
  test.eq(code, 1, out)
  test.contains(out, "start\n")
  test.contains(out, "ValueError: bad value")
  fs.remove(dir, {recursive = true})
end, {timeout = 90})

test("fs cp/ls/cat/sha256/rm across mpctl runs on one simulated board", function()
  local sim, pty = start_sim()
  test.ok(pty and pty:match("^/dev/pts/%d+$"), "sim printed its pty: " .. tostring(pty))
  local ok, err = pcall(function()
    local dir = fs.tmpdir()
    fs.write(dir .. "/main.py", "print('main')\n")
    fs.mkdir(dir .. "/lib/sub", {parents = true})
    fs.write(dir .. "/lib/a.py", "A = 1\n")
    fs.write(dir .. "/lib/sub/b.bin", ("\0\1\2\3\4\255"):rep(5000))
    local code, out = mpctl({"fs", "--port", pty, "cp", dir .. "/main.py", ":main.py"}, 30)
    test.eq(code, 0, out)
    test.contains(out, "-> :main.py")
    code, out = mpctl({"fs", "--port", pty, "cp", dir .. "/main.py", ":main.py"}, 30)
    test.eq(code, 0, out)
    test.contains(out, "up to date: :main.py")
    code, out = mpctl({"fs", "--port", pty, "cp", "-r", dir .. "/lib", ":lib"}, 30)
    test.eq(code, 0, out)
    code, out = mpctl({"fs", "--port", pty, "ls", ":lib"}, 30)
    test.eq(code, 0, out)
    test.contains(out, "a.py")
    test.contains(out, "sub/")
    code, out = mpctl({"fs", "--port", pty, "cat", ":main.py"}, 30)
    test.eq(code, 0, out)
    test.contains(out, "print('main')")
    code, out = mpctl({"fs", "--port", pty, "sha256", ":lib/sub/b.bin"}, 30)
    test.eq(code, 0, out)
    test.contains(out, require("mpctl.hash").file(dir .. "/lib/sub/b.bin", "sha256"))
    local back = fs.tmpdir()
    code, out = mpctl({"fs", "--port", pty, "cp", "-r", ":lib", back .. "/lib"}, 30)
    test.eq(code, 0, out)
    test.eq(fs.read(back .. "/lib/sub/b.bin"), fs.read(dir .. "/lib/sub/b.bin"))
    code, out = mpctl({"fs", "--port", pty, "rm", "-r", ":lib"}, 30)
    test.eq(code, 0, out)
    code, out = mpctl({"fs", "--port", pty, "sha256", ":lib/a.py"}, 30)
    test.eq(code, 1, "sha256 of a removed file fails: " .. out)
    code, out = mpctl({"fs", "--port", pty, "cp", "main.py", "main2.py"}, 30)
    test.eq(code, 2, "cp without a device side is a usage error: " .. out)
    fs.remove(dir, {recursive = true})
    fs.remove(back, {recursive = true})
  end)
  sim:kill()
  sim:wait(5)
  if not ok then error(err, 0) end
end, {timeout = 180})

test("fs cp destinations follow mpremote: into an existing folder, else that name", function()
  local sim, pty = start_sim()
  local ok, err = pcall(function()
    local dir = fs.tmpdir()
    fs.write(dir .. "/main.py", "print('main')\n")
    fs.mkdir(dir .. "/lib")
    fs.write(dir .. "/lib/a.py", "A = 1\n")
    local function run(...)
      local code, out = mpctl({"fs", "--port", pty, ...}, 30)
      test.eq(code, 0, table.concat({...}, " ") .. ": " .. out)
      return out
    end
    local function device_sha(p)
      return run("sha256", p):match("^(%x+)")
    end
    local want_main = require("mpctl.hash").file(dir .. "/main.py", "sha256")
    run("cp", dir .. "/main.py", ":")                    -- ':' is the device's root
    test.eq(device_sha(":/main.py"), want_main)
    run("mkdir", ":d")
    run("cp", dir .. "/main.py", ":d")                   -- an existing folder: copied into it
    test.eq(device_sha(":d/main.py"), want_main)
    run("cp", dir .. "/main.py", ":d/renamed.py")        -- otherwise the name given
    test.eq(device_sha(":d/renamed.py"), want_main)
    run("cp", "-r", dir .. "/lib", ":lib")               -- a folder that does not exist yet: becomes it
    test.contains(run("ls", ":lib"), "a.py")
    run("cp", "-r", dir .. "/lib", ":lib")               -- exists now: copied into it, as cp -r does
    test.contains(run("ls", ":lib/lib"), "a.py")
    local back = fs.tmpdir()
    run("cp", ":main.py", back)                          -- a local folder: copied into it
    test.eq(fs.read(back .. "/main.py"), "print('main')\n")
    run("cp", ":d/renamed.py", back .. "/other.py")
    test.eq(fs.read(back .. "/other.py"), "print('main')\n")
    run("cp", "-r", ":lib", back .. "/tree")             -- a local folder that does not exist: becomes it
    test.eq(fs.read(back .. "/tree/a.py"), "A = 1\n")
    test.eq(fs.read(back .. "/tree/lib/a.py"), "A = 1\n")
    test.eq(fs.list(back), {"main.py", "other.py", "tree"}, "no temporary files left behind")
    -- several sources, or a trailing '/', need a folder that exists: no source overwrites another
    local code, out = mpctl({"fs", "--port", pty, "cp", dir .. "/main.py", dir .. "/lib/a.py", ":nodir"}, 30)
    test.eq(code, 1, out)
    test.contains(out, "destination :nodir is not an existing folder on the device")
    code, out = mpctl({"fs", "--port", pty, "cp", ":main.py", ":d/renamed.py", back .. "/one.py"}, 30)
    test.eq(code, 1, out)
    test.contains(out, "is not an existing folder")
    test.eq(fs.stat(back .. "/one.py"), nil, "nothing written")
    code, out = mpctl({"fs", "--port", pty, "cp", dir .. "/main.py", ":nodir/"}, 30)
    test.eq(code, 1, out)
    run("cp", dir .. "/main.py", dir .. "/lib/a.py", ":d/")   -- an existing folder with a '/'
    test.contains(run("ls", ":d"), "a.py")
    run("cp", "-r", dir .. "/lib", ":newdir/")           -- cp -r ignores the '/': :newdir is the copy
    test.contains(run("ls", ":newdir"), "a.py")
    fs.remove(dir, {recursive = true})
    fs.remove(back, {recursive = true})
  end)
  sim:kill()
  sim:wait(5)
  if not ok then error(err, 0) end
end, {timeout = 180})

test("repl with piped input sends the lines and ends when the board goes quiet", function()
  local code, out = mpctl({"repl", "--port", "sim://micropython"}, 30, "print(6*7)\n")
  test.eq(code, 0, out)
  test.contains(out, ">>> print(6*7)\r\n42")
end, {timeout = 60})

test("repl on a terminal: raw mode, keys go to the board, Ctrl-] quits", function()
  local p = proc.spawn{argv = {exe(), "repl", "--port", "sim://micropython"}, pty = true}
  local term = serial.wrap_fd(p:fd(), "repl terminal")
  local ok, err = pcall(function()
    term:expect(">>> ", 20, true)
    term:write("print(1+2)\r")            -- a terminal in raw mode sends \r for Enter
    term:expect("print(1+2)\r\n3", 10, true)
    term:write("\3")                      -- Ctrl-C goes to the board, which shows a fresh prompt
    term:expect(">>> ", 10, true)
    term:write("\29")                     -- Ctrl-] leaves
    test.eq(p:wait(10), 0, "exit code after Ctrl-]")
  end)
  if not ok then p:kill() p:wait(2) error(err, 0) end
  term:close()
end, {timeout = 60})
