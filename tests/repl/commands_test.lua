-- fs, run, exec and repl as a user runs them, for what a person acts on: device errors in words
-- (operation, path, reason), tracebacks naming the user's file, `ls :file`, and --json keeping
-- stdout to JSON lines. Real MicroPython (WebAssembly) behind sim://micropython.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local support = require("support")
local mpctl, start_sim = support.mpctl, support.start_sim

local function json_only(what, out)
  local n = 0
  for line in out:gmatch("[^\n]+") do
    local ok, v = pcall(ui.json_decode, line)
    test.ok(ok and type(v) == "table", what .. ": a stdout line that is not a JSON object: " .. line)
    n = n + 1
  end
  return n
end

test("device errors name the operation, the path and the reason; ls of a file lists it", function()
  local sim, pty = start_sim()
  local dir = fs.tmpdir()
  local ok, err = pcall(function()
    local code, out = mpctl({"fs", "--port", pty, "cat", ":nope.py"}, 60)
    test.eq(code, 1, out)
    test.contains(out, "cat: :nope.py: no such file")
    test.ok(not out:find("Traceback", 1, true), "no helper traceback: " .. out)
    code, out = mpctl({"fs", "--port", pty, "mkdir", ":tmp"}, 60)
    test.eq(code, 1, out)
    test.contains(out, "mkdir: :tmp: already exists")
    fs.write(dir .. "/one.txt", "12345")
    code, out = mpctl({"fs", "--port", pty, "cp", dir .. "/one.txt", ":/tmp/one.txt"}, 60)
    test.eq(code, 0, out)
    code, out = mpctl({"fs", "--port", pty, "ls", ":/tmp/one.txt"}, 60)
    test.eq(code, 0, out)
    test.contains(out, "5  /tmp/one.txt")
    code, out = mpctl({"fs", "--port", pty, "rm", ":/tmp"}, 60)
    test.eq(code, 1, out)
    test.contains(out, "rm: :/tmp: is a folder")
  end)
  sim:kill()
  sim:wait(5)
  fs.remove(dir, {recursive = true})
  if not ok then error(err, 0) end
end, {timeout = 240})

test("run: a missing script says why; a traceback names the script, its line and source", function()
  local dir = fs.tmpdir()
  local code, out = mpctl({"run", "--port", "sim://micropython", dir .. "/missing.py"}, 60)
  test.eq(code, 1, out)
  test.contains(out, "run: cannot open " .. dir .. "/missing.py: No such file or directory")
  fs.write(dir .. "/boom.py", "print('start')\ndef f(x):\n    return 1 / x\nf(0)\n")
  code, out = mpctl({"run", "--port", "sim://micropython", dir .. "/boom.py"}, 60)
  test.eq(code, 1, out)
  test.contains(out, 'File "boom.py", line 4, in <module>\n    f(0)\n')
  test.contains(out, 'File "boom.py", line 3, in f\n    return 1 / x\n')
  test.ok(not out:find("<stdin>", 1, true), "no <stdin> left: " .. out)
  fs.remove(dir, {recursive = true})
end, {timeout = 150})

test("--json: fs cp/cat, run and repl write JSON lines only on stdout", function()
  local dir = fs.tmpdir()
  fs.write(dir .. "/a.py", "print('from a')\n")
  local code, out, err = mpctl({"--json", "fs", "--port", "sim://micropython", "cp", dir .. "/a.py", ":a.py"},
    60, nil, {split = true})
  test.eq(code, 0, out .. err)
  test.ok(json_only("fs cp", out) >= 1, "a copy event")
  test.contains(out, '"event":"copy"')
  code, out, err = mpctl({"--json", "run", "--port", "sim://micropython", dir .. "/a.py"}, 60, nil, {split = true})
  test.eq(code, 0, out .. err)
  json_only("run", out)
  test.contains(out, "from a")
  code, out, err = mpctl({"--json", "repl", "--port", "sim://micropython"}, 60, "print(6*7)\n", {split = true})
  test.eq(code, 0, out .. err)
  json_only("repl", out)
  test.contains(out, "42")
  code, out, err = mpctl({"--json", "fs", "--port", "sim://micropython", "cat", ":nope.py"}, 60, nil, {split = true})
  test.eq(code, 1, out .. err)
  json_only("fs cat error", out)
  fs.remove(dir, {recursive = true})
end, {timeout = 240})
