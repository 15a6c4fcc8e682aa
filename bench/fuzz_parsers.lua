--- The Lua parsers of untrusted input under mpctl.fuzz for a long run: executions and findings per parser.
-- @option seconds: how long each parser runs (default 3600)
-- @option seed: the driver's seed (default: the clock, printed so a finding can be reproduced)
-- @option only: run just this parser (a name from tests/parsers/targets.lua)
-- @option out: folder for the inputs of findings (default: a new folder in the temporary directory)
--
-- Run: mpctl --allow-exec bench/fuzz_parsers.lua [seconds=3600] [seed=N] [only=esp_image]
-- Prints one row per parser: executions, executions per second, inputs accepted / refused with a
-- structured error, and unique findings (internal errors, invalid results, hangs), whose inputs are
-- written to out= as <parser>-<n>.bin with a .txt beside it saying what happened.

local fs, time, ui = mpctl.fs, mpctl.time, mpctl.ui
local fuzz = require("mpctl.fuzz")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench"
local tests = fs.join(here, "..", "tests", "parsers")
local seconds = tonumber(arg.seconds) or 3600
local seed = math.tointeger(tonumber(arg.seed)) or (math.floor(time.wall() * 1000) & 0x7FFFFFFF)
local tmp = fs.tmpdir()
local out = arg.out or fs.join(fs.dirname(tmp), "mpctl-fuzz-findings-" .. seed)
fs.mkdir(out, { parents = true })
local targets = dofile(fs.join(tests, "targets.lua"))(tmp)

io.stdout:write(string.format("seed %d, %g s per parser, findings in %s\n\n", seed, seconds, out))
io.stdout:write("| parser          | executions | exec/s  | accepted | refused  | findings |\n")
io.stdout:write("|-----------------|------------|---------|----------|----------|----------|\n")
local total = 0
for _, t in ipairs(targets) do
  if not arg.only or arg.only == t.name then
    local n = 0
    local stats = fuzz.run(t, { seed = seed, seconds = seconds, corpus_dir = fs.join(tests, "corpus"),
      on_finding = function(f)
        n = n + 1
        local base = fs.join(out, string.format("%s-%d", t.name, n))
        fs.write(base .. ".bin", f.input)
        fs.write(base .. ".txt", string.format("%s\nseed %d, input %d\n%s\n", f.what, f.seed, f.exec, tostring(f.error)))
      end })
    total = total + stats.unique
    io.stdout:write(string.format("| %-15s | %10d | %7.0f | %8d | %8d | %8d |\n", t.name, stats.execs,
      stats.execs / math.max(stats.seconds, 1e-9), stats.ok, stats.refused, stats.unique))
    for _, f in ipairs(stats.findings) do
      ui.log("warn", "%s: %s: %s", t.name, f.what, tostring(f.error):sub(1, 200))
    end
  end
end
fs.remove(tmp, { recursive = true })
if total == 0 then fs.remove(out, { recursive = true }) end
io.stdout:write(string.format("\n%d unique finding%s\n", total, total == 1 and "" or "s"))
