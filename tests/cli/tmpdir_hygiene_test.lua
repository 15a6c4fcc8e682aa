-- Test hygiene (issue 13): a run of the suite leaves nothing in the temporary folder. The runner
-- gives each test file a folder of its own (TMPDIR points into it) and removes it when the file
-- ends; here test files that make temporary files in every way the suite does (a forgetful
-- fixture, the HTTP and TLS fixtures, shared simulated boards, mpctl runs from a shell, mip installs) run with
-- TMPDIR set to a fresh folder, which must be empty afterwards.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local support = require("support")

-- Runs `mpctl test FILES` with TMPDIR=tmp (bounded by timeout(1)); returns the exit code and the output.
local function run_tests(tmp, files, timeout)
  return support.mpctl("--allow-exec test " .. table.concat(files, " "),
    string.format("env -u MPCTL_TEST_NO_SKIP TMPDIR=%q timeout %d", tmp, timeout))
end

local function left_in(dir)
  local names = fs.list(dir)
  table.sort(names)
  return names
end

test("the runner removes what a test file leaves in TMPDIR, passing or failing", function()
  local tmp = fs.tmpdir()
  local code, out = run_tests(tmp, {"tests/fixtures/runner/leaky_cases.lua"}, 60)
  test.eq(code, 1, out)   -- one case fails on purpose
  test.contains(out, "2 passed, 1 failed")
  test.eq(left_in(tmp), {}, "left in TMPDIR after the leaky cases")
  fs.remove(tmp, {recursive = true})
end)

test("test files with fixtures, simulators and shell runs leave TMPDIR empty", function()
  local tmp = fs.tmpdir()
  local code, out = run_tests(tmp, {"tests/firmware/http_test.lua", "tests/repl/commands_test.lua",
    "tests/cli/runner_test.lua", "tests/mip/mip_test.lua"}, 280)
  test.eq(code, 0, out)
  test.eq(left_in(tmp), {}, "left in TMPDIR after the test files")
  fs.remove(tmp, {recursive = true})
end, {timeout = 300})
