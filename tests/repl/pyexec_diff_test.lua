-- The rawrepl fixture against the real thing: the same key sequences go to the WebAssembly
-- MicroPython (sim://micropython) and to sim://rawrepl, and the replies must be byte for byte the
-- same, apart from the machine name in the banner. Raw-paste itself cannot be compared (the
-- WebAssembly port's is broken); everything around it can.
local test = require("mpctl.test")
local serial = require("mpctl.serial")

local function normal(s)
  return (s:gsub("(MicroPython v[%d%.]+ on [%d%-]+); [^\r\n]*", "%1; <machine>"))
end

-- A reply is read up to the prompt that ends it (both devices are read the same way, so a slow
-- machine cannot split a reply and fail the comparison); a step with no reply is read for 0.3 s.
local function reply(port, ends)
  if ends then return normal(port:read_until(ends, 10)) end
  return normal(port:read(65536, 0.3))
end

local RAW = "exit\r\n>"         -- the end of "raw REPL; CTRL-B to exit\r\n>"
local SEQUENCES = {
  {"\r", ">>> "},               -- empty line at the friendly prompt
  {"\1", RAW},                  -- friendly -> raw
  {"print(1)\4", "\4>"},        -- OK, stdout, \x04, \x04, >
  {"1/0\4", "\4>"},             -- traceback in the second part
  {"\1", RAW},                  -- Ctrl-A inside the raw REPL: banner again
  {"\3", nil},                  -- Ctrl-C in the raw REPL: clears the line, says nothing
  {"abc\3print(3)\4", "\4>"},  -- the cleared line is not run
  {"\5B\1", ">"},               -- an unknown raw-paste mode: R\x00 and the prompt
  {"print(4)\4", "\4>"},
  {"\2", ">>> "},               -- back to the friendly REPL: banner
  {"\3", ">>> "},               -- Ctrl-C at the friendly prompt
  {"1+1\r", ">>> "},            -- echo, the value's repr, the prompt
  {"print('x')\r", ">>> "},
  {"1/0\r", ">>> "},            -- a traceback at the friendly prompt
}

test("rawrepl answers like real MicroPython outside raw-paste", function()
  local real = serial.open("sim://micropython")
  local model = serial.open("sim://rawrepl")
  local ok, err = pcall(function()
    test.eq(reply(model, ">>> "), reply(real, ">>> "), "banner on connect")
    for i, step in ipairs(SEQUENCES) do
      local seq, ends = step[1], step[2]
      real:write(seq)
      model:write(seq)
      local want = reply(real, ends)
      test.ok(want ~= "" or not ends, "the real device answered step " .. i)
      test.eq(reply(model, ends), want, "step " .. i .. " " .. test.show(seq))
    end
    test.eq(model:read(65536, 0.3), real:read(65536, 0.3), "nothing more after the last prompt")
  end)
  real:close()
  model:close()
  if not ok then error(err, 0) end
end, {timeout = 60})
