-- Reset sequences against a fake port: order of DTR/RTS changes (timings are not asserted).
local test = require("mpctl.test")
local reset = require("mpctl.esp.reset")
local fake = require("fakeport")

local function lines(port)
  local out = {}
  for _, l in ipairs(port.lines) do
    if l[1] == "both" then out[#out + 1] = string.format("D%dR%d", l[2] and 1 or 0, l[3] and 1 or 0)
    else out[#out + 1] = (l[1] == "dtr" and "D" or "R") .. (l[2] and 1 or 0) end
  end
  return table.concat(out, " ")
end

test("classic: EN low with IO0 high, then IO0 low as EN rises, then release (DTR rewritten after RTS)", function()
  local p = fake.new()
  reset.classic(p, 0)
  test.eq(lines(p), "D0 R1 D0 D1 R0 D1 D0")
  test.eq({ p.dtr, p.rts }, { false, false })
end)

test("tight: both lines in one call per step (esptool UnixTightReset order)", function()
  local p = fake.new()
  reset.tight(p, 0)
  test.eq(lines(p), "D0R0 D1R1 D0R1 D1R0 D0R0 D0")
end)

test("usb-jtag sequence", function()
  local p = fake.new()
  reset.usb_jtag(p)
  test.eq(lines(p), "R0 D0 D1 R0 R1 D0 R1 D0 R0")
end)

test("hard reset pulses EN with IO0 released", function()
  local p = fake.new()
  reset.hard(p)
  test.eq(lines(p), "D0 R1 R0 D0")
end)

test("classic mode alternates atomic and one-line variants with short and long delays", function()
  local seq = reset.sequence("classic")
  test.eq(#seq, 4)
  test.contains(seq[1].name, "atomic")
  test.contains(seq[2].name, "one line")
  test.contains(seq[3].name, "550 ms")
  test.eq(#reset.sequence("none"), 1)
  test.raises(function() reset.sequence("bogus") end, "unknown reset mode 'bogus'")
end)
