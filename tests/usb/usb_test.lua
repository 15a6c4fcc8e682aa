-- mpctl.usb (the libusb primitive) against two simulated STM32 ROM bootloaders on the umockdev bus:
-- the checks run inside `mpctl sim pyboard boards=2 -- mpctl test tests/fixtures/usb/usb_checks.lua`.
local test = require("mpctl.test")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

test("mpctl.usb lists, opens, transfers and waits on the simulated bus", function()
  S.need()
  local root = debug.getinfo(1, "S").source:match("^@(.*/)tests/usb/") or "./"
  local exe = test.exe() or debug.getregistry()["mpctl.exe"]
  local out, code = S.run_sim("pyboard", { "boards=2" },
    S.sh_quote(exe) .. " --allow-exec test " .. S.sh_quote(root .. "tests/fixtures/usb/usb_checks.lua"), 120)
  test.eq(code, 0, "inner tests; output: " .. out:sub(-1500))
  test.contains(out, "5 passed, 0 failed", "all five inner tests ran and passed")
end)
