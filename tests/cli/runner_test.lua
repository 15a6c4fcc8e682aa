-- The test runner checked from outside: counts, exit codes, TAP, JUnit, hung cases.
local test = require("mpctl.test")
local fs = require("mpctl.fs")

local support = require("support")

-- The runner's own behaviour, without ctest's rule that a skip fails.
local function run(args) return support.mpctl(args, "env -u MPCTL_TEST_NO_SKIP") end

local sample = "tests/fixtures/runner/sample_cases.lua"

test("counts pass, fail, skip; last line is the summary; exit 1 on failure", function()
  local rc, out = run("test " .. sample)
  test.eq(rc, 1)
  local last = out:match("([^\n]*)\n?$")
  test.eq(last, "1 passed, 1 failed, 1 skipped")
  test.contains(out, "FAIL  " .. sample .. ": fails <&>")
  test.contains(out, 'bytes: expected "want", got "got\\x00"')
end)

test("--tap prints a TAP stream", function()
  local rc, out = run("test --tap " .. sample)
  test.eq(rc, 1)
  test.contains(out, "TAP version 13")
  test.contains(out, "ok 1 - " .. sample .. ": passes")
  test.contains(out, "not ok 2 - " .. sample .. ": fails <&>")
  test.contains(out, "ok 3 - " .. sample .. ": skips # SKIP no board here")
  test.contains(out, "1..3")
end)

test("--junit writes a JUnit XML report", function()
  local dir = fs.tmpdir()
  local xml = dir .. "/report.xml"
  local rc = run("test --junit " .. xml .. " " .. sample)
  test.eq(rc, 1)
  local body = fs.read(xml)
  test.contains(body, '<testsuites name="mpctl" tests="3" failures="1" skipped="1"')
  test.contains(body, 'name="fails &lt;&amp;&gt;"')
  test.contains(body, "<skipped")
  fs.remove(xml)
  fs.remove(dir)
end)

test("a case stuck in a Lua loop fails on its deadline and the file goes on", function()
  local rc, out = run("test tests/fixtures/runner/hangs_cases.lua")
  test.eq(rc, 1)
  test.contains(out, "test timed out after 0.5 s")
  test.contains(out, "1 passed, 1 failed")
end)

test("a missing path is a failure, not a silent pass", function()
  local rc, out = run("test tests/no/such/dir")
  test.eq(rc, 1)
  test.contains(out, "no such file or folder")
  test.contains(out, "0 passed, 1 failed")
end)

test("device scripts are skipped without --port", function()
  local dir = fs.tmpdir()
  fs.write(dir .. "/test_blink.py", "print('hi')\n")
  local rc, out = run("test " .. dir .. "/test_blink.py")
  test.eq(rc, 0, out)
  test.contains(out, "0 passed, 0 failed, 1 skipped")
  fs.remove(dir .. "/test_blink.py")
  fs.remove(dir)
end)

test("with MPCTL_TEST_NO_SKIP=1 (as under ctest) a skip is a failure", function()
  local rc, out = support.mpctl("test " .. sample, "MPCTL_TEST_NO_SKIP=1")
  test.eq(rc, 1)
  test.contains(out, "skipped where skipping is not allowed")
  test.contains(out, "1 passed, 2 failed")
end)
