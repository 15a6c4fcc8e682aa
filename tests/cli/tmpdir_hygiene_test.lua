-- Test hygiene (issue 13): a run of the suite leaves nothing in the temporary folder. The runner
-- gives each test file a folder of its own (TMPDIR points into it) and removes it when the file
-- ends; here test files that make temporary files in every way the suite does (a forgetful
-- fixture, the HTTP and TLS fixtures, shared simulated boards, mpctl runs from a shell) run with
-- TMPDIR set to a fresh folder, which must be empty afterwards.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local proc = require("mpctl.proc")
local serial = require("mpctl.serial")
local time = require("mpctl.time")

-- Runs `mpctl test FILES` with TMPDIR=tmp; returns the exit code and the output.
local function run_tests(tmp, files, timeout)
  local argv = {test.exe(), "--allow-exec", "test"}
  for _, f in ipairs(files) do argv[#argv + 1] = f end
  local p = proc.spawn{argv = argv, pty = false, stderr = "stdout", env = {TMPDIR = tmp, MPCTL_TEST_NO_SKIP = false}}
  p:stdin_fd()
  local out = serial.wrap_fd(p:stdout_fd(), "mpctl test")
  local parts, deadline = {}, time.now() + timeout
  while time.now() < deadline do
    local s = out:read(65536, 0.2)
    if s ~= "" then parts[#parts + 1] = s elseif out:is_eof() then break end
  end
  local code = p:wait(math.max(deadline - time.now(), 0.1))
  if code == nil then p:kill() p:wait(5) end
  out:close()
  return code, table.concat(parts)
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
    "tests/cli/runner_test.lua"}, 280)
  test.eq(code, 0, out)
  test.eq(left_in(tmp), {}, "left in TMPDIR after the test files")
  fs.remove(tmp, {recursive = true})
end, {timeout = 300})
