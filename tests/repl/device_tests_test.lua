-- `mpctl test` with device scripts (post-flash tests, issue 13): what the scripts print is shown
-- on failure, with -v, and in JUnit's system-out; the exception line is the failure message and
-- the traceback names the script; the board is soft-reset between scripts (sim://rawrepl keeps one
-- interpreter per connection, and its soft reset clears globals as a board's does); without
-- --port the scripts are reported as skipped with the reason; --timeout bounds a script.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local support = require("support")
local mpctl = support.mpctl

local function scripts()
  local dir = fs.tmpdir()
  fs.write(dir .. "/test_a_sets.py", "leak = 1\nprint('a ran')\n")
  fs.write(dir .. "/test_b_isolated.py", "print('b ran')\nassert 'leak' not in globals(), 'state leaked from a'\n")
  fs.write(dir .. "/test_c_fails.py", "print('before boom')\nraise ValueError('boom')\n")
  return dir
end

test("device scripts: output on failure, exception line as the message, soft reset between files, JUnit", function()
  local dir = scripts()
  local junit = dir .. "/report.xml"
  local code, out = mpctl({"test", "--port", "sim://rawrepl", "--junit", junit, dir}, 120)
  test.eq(code, 1, out)
  test.contains(out, "ok    " .. dir .. "/test_a_sets.py (")
  test.contains(out, "ok    " .. dir .. "/test_b_isolated.py (")
  test.contains(out, "FAIL  " .. dir .. "/test_c_fails.py\n      ValueError: boom\n")
  test.contains(out, 'File "test_c_fails.py", line 2')
  test.contains(out, "      output:\n      | before boom\n")
  test.ok(not out:find("a ran", 1, true), "a passing script's output is not shown without -v")
  test.ok(not out:find("test_c_fails.py: test_c_fails.py", 1, true), "named once")
  test.contains(out, "2 passed, 1 failed")
  local xml = fs.read(junit)
  test.contains(xml, '<failure message="ValueError: boom">')
  test.contains(xml, "<system-out>a ran\n</system-out>")
  test.contains(xml, "<system-out>before boom\n</system-out>")
  fs.remove(dir, {recursive = true})
end, {timeout = 180})

test("device scripts: -v shows every script's output as it runs", function()
  local dir = scripts()
  local code, out = mpctl({"test", "-v", "--port", "sim://rawrepl", dir}, 120)
  test.eq(code, 1, out)
  test.contains(out, "a ran\n")
  test.contains(out, "b ran\n")
  fs.remove(dir, {recursive = true})
end, {timeout = 180})

test("device scripts without --port are reported as skipped, with the reason", function()
  local dir = scripts()
  local code, out = mpctl({"test", dir}, 60)
  test.eq(code, 0, out)
  test.contains(out, "skip  " .. dir .. "/test_a_sets.py: device script: no --port given")
  test.contains(out, "0 passed, 0 failed, 3 skipped")
  fs.remove(dir, {recursive = true})
end, {timeout = 90})

test("--timeout bounds a device script; the next script still runs", function()
  local dir = fs.tmpdir()
  fs.write(dir .. "/test_1_loop.py", "while True:\n    pass\n")
  fs.write(dir .. "/test_2_after.py", "print('after')\n")
  local code, out = mpctl({"test", "--timeout", "2", "--port", "sim://rawrepl", dir}, 120)
  test.eq(code, 1, out)
  test.contains(out, "FAIL  " .. dir .. "/test_1_loop.py\n")
  test.contains(out, "timeout after 2.0 s")
  test.contains(out, "ok    " .. dir .. "/test_2_after.py (")
  code, out = mpctl({"test", "--timeout", "soon", "--port", "sim://rawrepl", dir}, 60)
  test.eq(code, 2, out)
  test.contains(out, "--timeout")
  fs.remove(dir, {recursive = true})
end, {timeout = 180})
