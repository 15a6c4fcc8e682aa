-- Issue 8's fault matrix, ESP32 half (the other chip's half is fault_matrix_esp8266_test.lua, so ctest
-- runs the two side by side): seeded faults (drop, corrupt, stall, reset) on the frames the board
-- receives, sends, or both, at two rates, in stub and ROM mode; every case
-- asserts the invariant (tests/esp/faultmatrix.lua): a verified exit 0 means the whole flash
-- equals the image inside its sectors and the previous content outside; every failure is a
-- structured error whose claims about the outside are true. No timing: the simulator runs with
-- timing=off and the client's reply timeouts are scaled down (timeout_scale) only to keep lost
-- replies cheap; whether a case recovers is not asserted (bench/fault_matrix.lua reports it).
local test = require("mpctl.test")
local matrix = require("faultmatrix")

local results = {}

test("baseline: no faults, both modes: verified and nothing else touched", function()
  for _, chip in ipairs { "esp32" } do
    for _, mode in ipairs { "stub", "rom" } do
      local r = matrix.run { chip = chip, mode = mode, kind = "drop", dir = "both", rate = 0, seed = 1 }
      test.eq(r.violation, nil, matrix.label(r.case))
      test.eq(r.outcome, (chip == "esp8266" and mode == "rom") and "unverified" or "ok", matrix.label(r.case) .. ": " .. tostring(r.msg))
      -- The ESP8266 ROM's erase-size bug makes it erase one sector past an image of an odd number
      -- of sectors (esptool's workaround too); without MD5 there it is not checked: said so.
      if not (chip == "esp8266" and mode == "rom") then test.eq(r.touched, false, matrix.label(r.case)) end
    end
  end
end)

for _, c in ipairs(matrix.cases { chips = { "esp32" } }) do
  test("invariant: " .. matrix.label(c), function()
    local r = matrix.run(c)
    results[#results + 1] = r
    test.eq(r.violation, nil, matrix.label(c) .. (r.msg and (" -> " .. r.msg) or ""))
  end)
end

test("summary", function()
  local n, ok = 0, 0
  for _, r in ipairs(results) do
    n = n + 1
    if r.outcome ~= "failed" then ok = ok + 1 end
  end
  print(string.format("fault matrix: %d cases, %d completed, %d failed cleanly", n, ok, n - ok))
  test.ok(n > 0, "cases ran")
end)
