--[[ mpctl.fuzz: a seeded random-input driver for the Lua parsers of untrusted input.

    fuzz.run(target, opts) -> stats {name=, execs=, seconds=, ok=, refused=, findings={...}, unique=}
        target = {
          name = "esp_image",
          corpus = { "seed input", ... }     -- or loaded from opts.corpus_dir/<name>/
          run = function(input, rng) -> result   -- feed one input to the parser
          check = function(result, input) -> true | false, why   -- what a valid result looks like
          generate = function(rng) -> input  -- optional: structure-aware inputs beside the mutations
          legacy_error = function(err) -> bool  -- optional: a plain-string error the parser raises on
                                             -- purpose (until it raises mpctl.errors objects)
        }
        opts: seed, execs (stop after this many), seconds (or after this long), max_len,
              corpus_dir, instructions (per input, default 20e6: more is a hang), on_finding(f)
    fuzz.mutate(input, rng, corpus) -> input   one random mutation (or a splice with another seed)
    fuzz.load_corpus(dir) -> { inputs }

The invariant asserted on every input: the parser either returns a result its target's `check`
accepts, or raises a structured error (mpctl.errors, any kind but "internal"). A Lua runtime error
(indexing nil, a bad argument to string.pack, ...), a result that fails `check`, or an input that
runs past `instructions` VM instructions (a hang) is a finding: {input=, seed=, exec=, what=, error=}.
Findings are deduplicated by their message with numbers and quoted text blanked.
]]
local errors = require("mpctl.errors")
local random = require("mpctl.random")

local M = {}

-- Values that sit on the edges parsers get wrong (sizes, signs, widths).
local INTERESTING = { 0, 1, 0x7F, 0x80, 0xFF, 0x00, 0xE9, 0x0A, 0x22, 0x2D, 0x2E, 0x2F, 0x30, 0x39, 0x7B, 0x7D }
local NUMBERS = { "0", "-1", "-0x1000", "0x100000000", "0xFFFFFFFF", "0x1fffffffffffffffff", "1e308", "nan",
  "99999999999999999999", "-9223372036854775808", "4096", "0x", "", "1.5", "null", "true", "[]", "{}" }

local function mutate_once(s, g, corpus)
  local n = #s
  local op = g:below(10)
  if n == 0 then op = 4 end
  if op == 0 then -- flip a bit
    local i = g:int(1, n)
    return s:sub(1, i - 1) .. string.char(s:byte(i) ~ (1 << g:below(8))) .. s:sub(i + 1)
  elseif op == 1 then -- an interesting byte
    local i = g:int(1, n)
    return s:sub(1, i - 1) .. string.char(g:pick(INTERESTING)) .. s:sub(i + 1)
  elseif op == 2 then -- random bytes over a range
    local i = g:int(1, n)
    local len = g:int(1, math.min(8, n - i + 1))
    return s:sub(1, i - 1) .. g:bytes(len) .. s:sub(i + len)
  elseif op == 3 then -- delete a range
    local i = g:int(1, n)
    local len = g:int(1, math.min(64, n - i + 1))
    return s:sub(1, i - 1) .. s:sub(i + len)
  elseif op == 4 then -- insert random bytes
    local i = g:int(1, n + 1)
    return s:sub(1, i - 1) .. g:bytes(g:int(1, 16)) .. s:sub(i)
  elseif op == 5 then -- duplicate a chunk
    local i = g:int(1, n)
    local len = g:int(1, math.min(256, n - i + 1))
    local chunk = s:sub(i, i + len - 1)
    return s:sub(1, i - 1) .. chunk:rep(g:int(2, 4)) .. s:sub(i)
  elseif op == 6 then -- truncate
    return s:sub(1, g:int(0, n - 1))
  elseif op == 7 then -- replace a number in text with an edge value
    local starts = {}
    for pos in s:gmatch("()%-?%w*%d[%w%.]*") do starts[#starts + 1] = pos end
    if #starts == 0 then return s .. g:pick(NUMBERS) end
    local pos = g:pick(starts)
    local stop = s:find("[^%w%.%-]", pos) or (n + 1)
    return s:sub(1, pos - 1) .. g:pick(NUMBERS) .. s:sub(stop)
  elseif op == 8 and corpus and #corpus > 1 then -- splice with another seed
    local other = g:pick(corpus)
    local i, j = g:int(0, n), g:int(0, #other)
    return s:sub(1, i) .. other:sub(j + 1)
  else -- overwrite a 32-bit little-endian word with an edge value
    if n < 4 then return s .. string.pack("<I4", g:u32()) end
    local i = g:int(1, n - 3)
    local v = g:pick({ 0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x01000000, n, n + 1, g:u32() })
    return s:sub(1, i - 1) .. string.pack("<I4", v) .. s:sub(i + 4)
  end
end

function M.mutate(s, g, corpus)
  for _ = 1, 1 + g:below(4) do s = mutate_once(s, g, corpus) end
  return s
end

function M.load_corpus(dir)
  local fs = require("mpctl.fs")
  local out = {}
  if not dir or not fs.exists(dir) then return out end
  local names = fs.list(dir)
  table.sort(names)
  for _, name in ipairs(names) do
    local p = fs.join(dir, name)
    local st = fs.stat(p)
    if st and st.type == "file" then out[#out + 1] = fs.read(p) end
  end
  return out
end

local function signature(what, msg)
  msg = tostring(msg):gsub("%b\"\"", '""'):gsub("%b''", "''"):gsub("0[xX]%x+", "N"):gsub("%d+", "N")
  return what .. ": " .. msg:sub(1, 200)
end

local HANG = setmetatable({}, { __tostring = function() return "hang: the instruction budget ran out" end })

-- One input through the target under an instruction budget. A hook already there (the test
-- runner's deadline, the interrupt check) is chained when it is a Lua function and put back after.
local STEP = 10000
local function exec(target, input, g, budget)
  local prev_fn, prev_mask, prev_count = debug.gethook()
  if prev_fn ~= nil and type(prev_fn) ~= "function" then
    return pcall(target.run, input, g) -- a C hook cannot be chained or put back: no budget then
  end
  local used = 0
  debug.sethook(function(...)
    used = used + STEP
    if used >= budget then error(HANG, 0) end
    if type(prev_fn) == "function" then prev_fn(...) end
  end, "", STEP)
  local ok, res = pcall(target.run, input, g)
  if prev_fn then debug.sethook(prev_fn, prev_mask, prev_count) else debug.sethook() end
  return ok, res
end

-- What happened to one input: "ok", "refused" (a structured error), or a finding (what, message).
local function judge(target, input, ok, res)
  if ok then
    local good, why = true, nil
    if target.check then good, why = target.check(res, input) end
    if good then return "ok" end
    return "finding", "invalid result", why or "check failed"
  end
  if res == HANG then return "finding", "hang", tostring(res) end
  if getmetatable(res) == errors.Error and res.kind ~= "internal" then return "refused" end
  if type(res) == "string" and target.legacy_error and target.legacy_error(res) then return "refused" end
  local msg = type(res) == "table" and (res.msg or res.detail) or res
  return "finding", "internal error", tostring(msg)
end

function M.run(target, opts)
  opts = opts or {}
  local time = require("mpctl.time")
  local seed = opts.seed or 1
  local g = random.new(seed)
  local corpus = {}
  for _, c in ipairs(target.corpus or {}) do corpus[#corpus + 1] = c end
  if opts.corpus_dir then
    for _, c in ipairs(M.load_corpus(opts.corpus_dir .. "/" .. target.name)) do corpus[#corpus + 1] = c end
  end
  if #corpus == 0 then corpus[1] = "" end
  local max_len = opts.max_len or 1 << 20
  local budget = math.tointeger(opts.instructions) or 20000000
  local stats = { name = target.name, execs = 0, ok = 0, refused = 0, findings = {}, unique = 0, seed = seed }
  local seen = {}
  -- parsers that warn (a skipped history line) would flood stderr a thousand times a second
  local ui = require("mpctl.ui")
  local level = ui.config().level
  ui.configure({ level = "error" })
  local t0 = time.now()
  local limit_execs = opts.execs or (opts.seconds and math.huge) or 1000
  local i = 0
  while stats.execs < limit_execs and not (opts.seconds and time.now() - t0 >= opts.seconds) do
    i = i + 1
    local input
    if i <= #corpus then
      input = corpus[i] -- every seed as it is first
    elseif target.generate and g:chance(0.2) then
      input = target.generate(g)
    else
      input = M.mutate(g:pick(corpus), g, corpus)
    end
    if #input > max_len then input = input:sub(1, max_len) end
    local ok, res = exec(target, input, g, budget)
    local verdict, what, msg = judge(target, input, ok, res)
    stats.execs = stats.execs + 1
    if verdict == "ok" then
      stats.ok = stats.ok + 1
      -- an accepted mutant is a new starting point (no coverage feedback in Lua: keep a sample)
      if i > #corpus and #corpus < 2000 and g:chance(0.02) then corpus[#corpus + 1] = input end
    elseif verdict == "refused" then
      stats.refused = stats.refused + 1
    else
      local sig = signature(what, msg)
      if not seen[sig] then
        seen[sig] = true
        stats.unique = stats.unique + 1
        local f = { target = target.name, what = what, error = msg, input = input, seed = seed, exec = stats.execs,
          signature = sig }
        stats.findings[#stats.findings + 1] = f
        if opts.on_finding then opts.on_finding(f) end
      end
    end
  end
  stats.seconds = time.now() - t0
  ui.configure({ level = level })
  return stats
end

return M
