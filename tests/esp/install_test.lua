-- Issue 13: an installed mpctl flashes sim://esp32 with the flasher stub it installed, from
-- another folder, with the build and source trees out of reach; without stubs it flashes with
-- the ROM loader, says so in one line naming MPCTL_STUB_DIR, and still verifies.
local test = require("mpctl.test")
local fs = require("mpctl.fs")

-- Runs a shell command; returns its exit code and its combined stdout and stderr.
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), (out:gsub("rc=%d+%s*$", ""))
end

local build = os.getenv("MPCTL_TEST_BUILD_DIR")

test("installed mpctl: esp32_flash on sim://esp32 uses the installed stub; without it ROM mode, verified", function()
  if not build then test.skip("MPCTL_TEST_BUILD_DIR not set (run under ctest)") end
  local prefix = fs.tmpdir()
  local rc, out = sh(string.format("cmake --install %q --prefix %q/inst", build, prefix))
  test.eq(rc, 0, out)
  -- A copy of the installed tree elsewhere: the binary finds share/mpctl next to itself, and
  -- nothing of the source or build tree is on its search paths (no MPCTL_PATH, HOME, cwd).
  rc, out = sh(string.format("cp -a %q/inst %q/moved", prefix, prefix))
  test.eq(rc, 0, out)
  local root = prefix .. "/moved"
  test.ok(fs.exists(root .. "/share/mpctl/stubs/esp32.json"), "stubs installed")
  test.ok(fs.exists(root .. "/share/mpctl/stubs/LICENSE.esptool-js"), "their licence installed")
  local flash = "sim://esp32?timing=off&app=none&flash_file=" .. prefix .. "/flash.bin"
  local function command(stub_dir)
    return string.format("cd %q && env -u MPCTL_PATH -u MPCTL_STUB_DIR -u MPCTL_NODE_MODULES HOME=%q "
      .. "MPCTL_HISTORY=%q/h.jsonl %s %q/bin/mpctl esp32_flash --port %q firmware=demo repl=no", prefix, prefix,
      prefix, stub_dir and ("MPCTL_STUB_DIR=" .. stub_dir) or "", root, flash)
  end
  local cmd = command()
  rc, out = sh(cmd)
  test.eq(rc, 0, out)
  test.contains(out, "stub")
  test.ok(not out:find("ROM loader", 1, true), "stub mode: " .. out)
  test.contains(out, "flash MD5 matches the image")
  -- no stub anywhere: ROM mode, one warning line naming the variables, still verified
  sh(string.format("rm -rf %q/share/mpctl/stubs", root))
  rc, out = sh(cmd .. " erase=yes")
  test.eq(rc, 0, out)
  test.contains(out, "no flasher stub for esp32 found: flashing with the ROM loader")
  test.contains(out, "MPCTL_STUB_DIR")
  test.contains(out, "MPCTL_NODE_MODULES")
  test.contains(out, "flash MD5 matches the image")
  local warn = 0
  for line in out:gmatch("[^\n]+") do if line:find("no flasher stub", 1, true) then warn = warn + 1 end end
  test.eq(warn, 1, "one line")
  -- MPCTL_STUB_DIR names a folder of stubs: the stub again
  local stubs = prefix .. "/mystubs"
  fs.mkdir(stubs)
  sh(string.format("cp %q/inst/share/mpctl/stubs/esp32.json %q/", prefix, stubs))
  rc, out = sh(command(stubs) .. " erase=yes")
  test.eq(rc, 0, out)
  test.ok(not out:find("ROM loader", 1, true), "stub from MPCTL_STUB_DIR: " .. out)
  sh(string.format("rm -rf %q", prefix))
end)

test("installed mpctl: the simulated board's MicroPython comes with it (esp32_flash reaches the REPL, exec on sim://micropython)", function()
  if not build then test.skip("MPCTL_TEST_BUILD_DIR not set (run under ctest)") end
  local prefix = fs.tmpdir()
  local rc, out = sh(string.format("cmake --install %q --prefix %q/inst && mv %q/inst %q/moved", build, prefix, prefix, prefix))
  test.eq(rc, 0, out)
  local root = prefix .. "/moved"
  test.ok(fs.exists(root .. "/share/mpctl/node_modules/@micropython/micropython-webassembly-pyscript/micropython.wasm"),
    "MicroPython's WebAssembly build installed")
  local env = string.format("cd %q && env -u MPCTL_PATH -u MPCTL_STUB_DIR -u MPCTL_NODE_MODULES HOME=%q MPCTL_HISTORY=%q/h.jsonl",
    prefix, prefix, prefix)
  rc, out = sh(string.format("%s %q/bin/mpctl esp32_flash --port 'sim://esp32?timing=off' firmware=demo", env, root))
  test.eq(rc, 0, out)
  test.contains(out, "print('hello') prints hello")
  rc, out = sh(string.format("%s %q/bin/mpctl exec --port sim://micropython 'print(6*7)'", env, root))
  test.eq(rc, 0, out)
  test.contains(out, "42")
  sh(string.format("rm -rf %q", prefix))
end)
