-- Bad options of `mpctl sim pico`: a clear usage error (exit status 2) naming what to give, before
-- the board or COMMAND starts; flash=FILE larger than the chip is refused and left as it was.
local test = require("mpctl.test")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

test("unknown option, unknown value, fault without fault_at, oversized flash file: usage errors", function()
  S.need()
  local p, cleanup = S.tmp()
  for _, c in ipairs({
    { { "timng=on" }, "no option timng=", "options: boards, drive, fault" },
    { { "start=foo" }, "start=foo is not known", "app|bootsel" },
    { { "fault=stall" }, "needs fault_at=N", "fault_at=3" },
    { { "flash=" .. p("big.bin") }, "more than the 2097152-byte flash", "at most 2097152" },
  }) do
    S.write(p("big.bin"), string.rep("\0", 2 * 1024 * 1024 + 1))
    local out, code = S.run_sim("pico", c[1], "echo COMMAND-RAN", 60)
    test.eq(code, 2, table.concat(c[1], " ") .. ": exit status; output: " .. out)
    test.contains(out, c[2], "what is wrong")
    test.contains(out, c[3], "what to give")
    test.ok(not out:find("COMMAND-RAN", 1, true), "the command did not run")
  end
  test.eq(#S.read(p("big.bin")), 2 * 1024 * 1024 + 1, "the oversized flash file is untouched")
  cleanup()
end)
