-- What mpctl writes where: under --json stdout carries JSON lines only, whatever command runs
-- (built-ins, tool commands, recipes that print, the REPL transcript of verify_repl); -q leaves
-- only errors.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local sh = require("support").sh

local exe = test.exe()
local probe = "tests/fixtures/recipes/sandbox_probe.lua"

-- Runs mpctl with stdout and stderr apart: rc, stdout, stderr.
local function run3(args)
  local err = os.tmpname()
  local p = assert(io.popen(string.format("%q %s 2>%q", exe, args, err)))
  local out = p:read("a")
  local _, _, rc = p:close()
  local f = assert(io.open(err, "rb"))
  local e = f:read("a")
  f:close()
  os.remove(err)
  return rc, out, e
end

local function json_lines(args, out)
  local n = 0
  for line in out:gmatch("[^\n]+") do
    local ok, v = pcall(ui.json_decode, line)
    test.ok(ok and type(v) == "table", args .. ": a stdout line that is not a JSON object: " .. line)
    n = n + 1
  end
  return n
end

test("--json: stdout is JSON lines only for every built-in, tool command and recipe", function()
  local hist = fs.tmpdir()
  local cases = {
    { "--json --version", 0, '"version"' },
    { "--json recipes", 0, '"name":"esp32_flash"' },
    { "--json ports", 0 },
    { "--json help", 0, '"event":"output"' },
    { "--json help esp32_flash", 0, "verify" },
    { "--json " .. probe .. " what=arg", 0, '"text":"port=nil' },
    { "--json test tests/fixtures/runner/sample_cases.lua", 1, '"event":"test_summary"' },
    { "--json history file=" .. hist .. "/none.jsonl", 0 },
    { "--json firmware cache cache=" .. hist .. "/cache", 0 },
    { "--json verify_repl --port sim://micropython", 0, "hello" },
    { "--json exec --port sim://micropython 'print(6*7)'", 0, "42" },
    { "--json fs --port sim://micropython ls :", 0, '"event":"file"' },
    { "--json nosuchrecipe", 2, '"kind":"usage"' },
    { "--json " .. probe .. " what=error", 1, '"event":"error"' },
  }
  for _, c in ipairs(cases) do
    local rc, out, err = run3(c[1])
    test.eq(rc, c[2], c[1] .. ": " .. out .. err)
    json_lines(c[1], out)
    if c[3] then test.contains(out, c[3]) end
  end
  sh(string.format("rm -rf %q", hist))
end)

test("-q: nothing but errors", function()
  local rc, out, err = run3("-q verify_repl --port sim://micropython")
  test.eq(rc, 0, out .. err)
  test.eq(out, "")
  test.eq(err, "")
  rc, out, err = run3("-q " .. probe .. " what=arg")
  test.eq(rc, 0, err)
  test.eq(out, "")
  rc, out, err = run3("-q " .. probe .. " what=error")
  test.eq(rc, 1)
  test.eq(out, "")
  test.contains(err, "boom from the recipe")
  -- the test runner keeps its failures, on stderr
  rc, out, err = run3("-q test tests/fixtures/runner/sample_cases.lua")
  test.eq(rc, 1)
  test.eq(out, "")
  test.contains(err, "FAIL  tests/fixtures/runner/sample_cases.lua: fails <&>")
  test.ok(not err:find("ok    ", 1, true), "passing cases are not shown: " .. err)
end)

test("-q keeps what a command was asked for (the result on stdout)", function()
  local rc, out = run3("-q --version")
  test.eq(rc, 0)
  test.ok(out:match("^mpctl %d"), out)
  -- fs ls is a result; exec's streamed output is chatter
  rc, out = run3("-q fs --port sim://micropython ls :")
  test.eq(rc, 0, out)
  test.contains(out, "tmp/")
  rc, out = run3("-q exec --port sim://micropython 'print(1)'")
  test.eq(rc, 0)
  test.eq(out, "")
end)
