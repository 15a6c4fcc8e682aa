-- The Lua parsers of untrusted input under the seeded random-input driver (mpctl.fuzz), briefly:
-- every seed of the committed corpus, then mutations, a fixed number per parser and a fixed seed,
-- so a run is the same everywhere and a finding is reproduced from the seed and its number.
-- The hour-long run is bench/fuzz_parsers.lua.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local fuzz = require("mpctl.fuzz")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local tmp = fs.tmpdir()
local targets = dofile(here .. "/targets.lua")(tmp)
local EXECS = tonumber(os.getenv("MPCTL_FUZZ_EXECS")) or 3000

local function show(f)
  local input = f.input:sub(1, 120):gsub("[^\32-\126]", function(c) return string.format("\\x%02x", c:byte()) end)
  return string.format("%s after %d inputs (seed %d): %s: %s\n  input (%d bytes): %s", f.target, f.exec, f.seed,
    f.what, f.error, #f.input, input)
end

for _, t in ipairs(targets) do
  test(t.name .. ": every input gives a valid result or a structured error", function()
    local stats = fuzz.run(t, { seed = 20261130, execs = EXECS, corpus_dir = fs.join(here, "corpus") })
    test.eq(stats.execs, EXECS)
    test.ok(stats.ok > 0, "some inputs parse (the corpus seeds at least)")
    local lines = {}
    for _, f in ipairs(stats.findings) do lines[#lines + 1] = show(f) end
    test.eq(#stats.findings, 0, table.concat(lines, "\n"))
  end)
end

test("the driver finds what it is meant to find: a runtime error, a bad result, a hang", function()
  local seeds = { "0x10 a.bin" }
  local stats = fuzz.run({ name = "broken", corpus = seeds, run = function(input)
    if input:find("\0", 1, true) then local t = nil; return t.x end -- an internal error
    if #input > 20 then while true do end end                          -- a hang
    return #input
  end, check = function(n) return n ~= 3, "three" end }, { seed = 7, execs = 3000, instructions = 100000 })
  local what = {}
  for _, f in ipairs(stats.findings) do what[f.what] = true end
  test.ok(what["internal error"], "runtime error found")
  test.ok(what["hang"], "hang found")
  test.ok(what["invalid result"], "invalid result found")
end)

test("the same seed gives the same inputs", function()
  local seen = {}
  for round = 1, 2 do
    local inputs = {}
    fuzz.run({ name = "record", corpus = { "abc 0x1000 def" }, run = function(input)
      inputs[#inputs + 1] = input
    end }, { seed = 99, execs = 200 })
    seen[round] = table.concat(inputs, "\0")
  end
  test.eq(seen[1], seen[2])
end)

test("cleanup", function() fs.remove(tmp, { recursive = true }) end)
