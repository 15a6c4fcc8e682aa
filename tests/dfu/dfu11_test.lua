-- mpctl's plain DFU 1.1 path against the simulated DFU 1.1 device; what it wrote must be in the
-- device (flash=FILE) and dfu-util must upload the same bytes back.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "../usb/support.lua")

test("plain DFU 1.1: mpctl downloads and uploads; the device and dfu-util agree", function()
  S.need("dfu-util")
  local root = debug.getinfo(1, "S").source:match("^@(.*/)tests/dfu/") or "./"
  local dir = fs.tmpdir()
  local img = test.random_bytes(50 * 1024 + 99, 31)
  S.write(fs.join(dir, "fw.bin"), img)
  local exe = S.sh_quote(test.exe() or debug.getregistry()["mpctl.exe"])
  local out, code = S.run_sim("dfu11", { "flash=" .. fs.join(dir, "mem.bin") },
    "MPCTL_DFU11_IMAGE=" .. S.sh_quote(fs.join(dir, "fw.bin")) .. " " .. exe .. " --allow-exec test "
    .. S.sh_quote(root .. "tests/fixtures/usb/dfu11_checks.lua") .. " && dfu-util -U " .. S.sh_quote(fs.join(dir, "up.bin")), 60)
  test.eq(code, 0, "exit code; output: " .. out:sub(-1200))
  test.contains(out, "1 passed, 0 failed", "inner test ran")
  test.ok(S.read(fs.join(dir, "mem.bin")) == img, "the device holds the image")
  test.ok(S.read(fs.join(dir, "up.bin")) == img, "dfu-util uploads the same image")
  fs.remove(dir, { recursive = true })
end)
