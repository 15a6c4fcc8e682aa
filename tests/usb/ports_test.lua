-- `mpctl ports` on the simulated bus: the Pyboard's ROM bootloader is listed as a DFU device with its
-- alt-setting names and the boards whose ids match; after leave, its CDC port with the MicroPython
-- version the probe reads from the REPL.
local test = require("mpctl.test")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

test("mpctl ports lists the DFU device with alt names, then the CDC port after leave", function()
  S.need()
  local exe = S.sh_quote(test.exe() or debug.getregistry()["mpctl.exe"])
  local out, code = S.run_sim("pyboard", {}, exe .. " ports; " .. exe .. " ports --json", 60)
  test.eq(code, 0, "exit code; output: " .. out)
  test.ok(out:find("usb:1%-1%s+0483:DF11%s+3276345E3233%s+STMicroelectronics STM32  BOOTLOADER%s+DFU"), "DFU row: " .. out)
  test.contains(out, "alt: @Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg", "alt 0 name")
  test.contains(out, "PYBV11", "matching board")
  test.contains(out, '"mode":"DFU"', "--json row")
  local out2, code2 = S.run_sim("pyboard", { "start=app" }, exe .. " ports", 60)
  test.eq(code2, 0, "exit code")
  test.ok(out2:find("/dev/ttyACM0%s+F055:9800"), "CDC port with its ids: " .. out2)
  test.contains(out2, "runs MicroPython", "probed")
end)
