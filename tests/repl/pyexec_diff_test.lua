-- The rawrepl fixture against the real thing: the same key sequences go to the WebAssembly
-- MicroPython (sim://micropython) and to sim://rawrepl, and the replies must be byte for byte the
-- same, apart from the machine name in the banner. Raw-paste itself cannot be compared (the
-- WebAssembly port's is broken); everything around it can.
local test = require("mpctl.test")
local serial = require("mpctl.serial")

-- Everything the device sends until it has been quiet for `quiet` seconds.
local function reply(port, quiet, limit)
  local parts = {}
  local time = require("mpctl.time")
  local deadline = time.now() + (limit or 10)
  while time.now() < deadline do
    local s = port:read(65536, quiet)
    if s == "" then break end
    parts[#parts + 1] = s
  end
  return (table.concat(parts):gsub("(MicroPython v[%d%.]+ on [%d%-]+); [^\r\n]*", "%1; <machine>"))
end

local SEQUENCES = {
  "\r",                         -- empty line at the friendly prompt
  "\1",                         -- friendly -> raw
  "print(1)\4",                 -- OK, stdout, \x04, \x04, >
  "1/0\4",                      -- traceback in the second part
  "\1",                         -- Ctrl-A inside the raw REPL: banner again
  "\3",                         -- Ctrl-C in the raw REPL: clears the line, says nothing
  "abc\3print(3)\4",            -- the cleared line is not run
  "\5B\1",                      -- an unknown raw-paste mode: R\x00 and the prompt
  "print(4)\4",
  "\2",                         -- back to the friendly REPL: banner
  "\3",                         -- Ctrl-C at the friendly prompt
  "1+1\r",                      -- echo, the value's repr, the prompt
  "print('x')\r",
  "1/0\r",                      -- a traceback at the friendly prompt
}

test("rawrepl answers like real MicroPython outside raw-paste", function()
  local real = serial.open("sim://micropython")
  local model = serial.open("sim://rawrepl")
  local ok, err = pcall(function()
    test.eq(reply(model, 0.5), reply(real, 0.5), "banner on connect")
    for i, seq in ipairs(SEQUENCES) do
      real:write(seq)
      model:write(seq)
      local want = reply(real, 0.3)
      test.ok(want ~= "" or seq == "\3", "the real device answered step " .. i)
      test.eq(reply(model, 0.3), want, "step " .. i .. " " .. test.show(seq))
    end
  end)
  real:close()
  model:close()
  if not ok then error(err, 0) end
end, {timeout = 60})
