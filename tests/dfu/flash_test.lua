-- mpctl's DFU path end to end on the simulated Pyboard (umockdev bus, real libusb): the recipe
-- reaches the verified REPL; mpctl and dfu-util leave identical flash for the same image; a
-- reflash erases only the changed sector; device faults and bad images give clear errors and
-- nothing half-written goes unreported; a fault is followed by a run that completes (resume).
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "../usb/support.lua")

local ROOT = debug.getinfo(1, "S").source:match("^@(.*/)tests/dfu/") or "./"
local WRITE = ROOT .. "tests/fixtures/dfu/write.lua"

local function exe() return test.exe() or debug.getregistry()["mpctl.exe"] end

-- mpctl writes `firmware` through the fixture; returns its JSON result and the sim's output.
local function mpctl_write(simargs, firmware, extra)
  local cmd = string.format("%s %s firmware=%s %s", S.sh_quote(exe()), S.sh_quote(WRITE), S.sh_quote(firmware), extra or "")
  local out, code = S.run_sim("pyboard", simargs, cmd, 120)
  local line = out:match("({.-})%s*$") or out:match("({.-})\n")
  test.ok(line, "the fixture printed a result; output: " .. out:sub(-500))
  return ui.json_decode(line), code, out
end

test("pyboard_flash --port sim://pyboard?flash=F firmware=<.dfu> backup=B: backup of the old flash, then the verified REPL", function()
  S.need()
  local dir = fs.tmpdir()
  local old = S.image(100 * 1024, 20) .. string.rep("\255", 1024 * 1024 - 100 * 1024)
  S.write(fs.join(dir, "flash.bin"), old)
  local dfu = require("mpctl.dfu.file").build_dfu({ { offset = 0x08000000, data = S.image(256 * 1024, 21) } },
    { vid = 0x0483, pid = 0xdf11 })
  S.write(fs.join(dir, "fw.dfu"), dfu)
  local p = require("mpctl.proc").spawn { argv = { exe(), "pyboard_flash", "--port", "sim://pyboard?flash=" .. fs.join(dir, "flash.bin"),
    "firmware=" .. fs.join(dir, "fw.dfu"), "backup=" .. fs.join(dir, "backup.bin") }, stderr = "stdout", env = { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir } }
  local port <close> = require("mpctl.serial").wrap_fd(p:stdout_fd(), "pyboard_flash")
  local out = {}
  local deadline = require("mpctl.time").now() + 150
  while require("mpctl.time").now() < deadline do
    local ok, s = pcall(port.read, port, 65536, 1)
    if not ok or (s == "" and port:is_eof()) then break end
    out[#out + 1] = s
  end
  local code = p:wait(10)
  p:close()
  out = table.concat(out)
  test.eq(code, 0, "exit code; output: " .. out:sub(-800))
  test.contains(out, "ok: flash reads back equal to the image", "verified")
  test.contains(out, "ok: print('hello') prints hello", "REPL answered")
  test.ok(S.read(fs.join(dir, "backup.bin")) == old, "the backup holds the flash as it was")
  local img = require("mpctl.dfu.file").load(fs.join(dir, "fw.dfu"))[1].data
  test.ok(S.read(fs.join(dir, "flash.bin")):sub(1, #img) == img, "the simulator's flash holds the new image")
  fs.remove(dir, { recursive = true })
end)

test("a Pyboard running MicroPython (sim pyboard start=app): machine.bootloader() brings the ROM DFU bootloader, the image is written and verified, and MicroPython comes back on the next ttyACM and answers print('hello')", function()
  S.need()
  local dir = fs.tmpdir()
  local dfu = require("mpctl.dfu.file").build_dfu({ { offset = 0x08000000, data = S.image(128 * 1024, 23) } },
    { vid = 0x0483, pid = 0xdf11 })
  S.write(fs.join(dir, "fw.dfu"), dfu)
  local out, code = S.run({ exe(), "sim", "pyboard", "quiet=yes", "start=app", "flash=" .. fs.join(dir, "flash.bin"), "--",
    exe(), "pyboard_flash", "--port", "/dev/ttyACM0", "firmware=" .. fs.join(dir, "fw.dfu") }, 150, "sim pyboard start=app",
    { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir })
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  test.contains(out, "asking MicroPython on /dev/ttyACM0 to enter its bootloader (machine.bootloader())", "the way in")
  test.contains(out, "PYBV11 in DFU mode", "reached the ROM bootloader")
  test.contains(out, "ok: flash reads back equal to the image", "verified")
  -- the CDC port appears a second time in this run: the simulator gives it the next minor (as
  -- Linux does while the old node is held) and the recipe finds it by USB id, not by name
  test.contains(out, "MicroPython's USB serial port: /dev/ttyACM1", "found again after leaving DFU")
  test.contains(out, "ok: print('hello') prints hello", "REPL answered")
  local img = require("mpctl.dfu.file").load(fs.join(dir, "fw.dfu"))[1].data
  test.ok((S.read(fs.join(dir, "flash.bin")) or ""):sub(1, #img) == img, "the simulator's flash holds the new image")
  fs.remove(dir, { recursive = true })
end)

test("mpctl and dfu-util leave identical flash for the same image", function()
  S.need("dfu-util")
  local dir = fs.tmpdir()
  local img = S.image(180 * 1024 + 77, 22)
  local bin = fs.join(dir, "fw.bin")
  S.write(bin, img)
  local r = mpctl_write({ "flash=" .. fs.join(dir, "a.bin") }, bin)
  test.ok(r.ok, "mpctl wrote: " .. tostring(r.msg))
  local _, code = S.run_sim("pyboard", { "flash=" .. fs.join(dir, "b.bin") }, "dfu-util -a 0 -s 0x08000000 -D " .. S.sh_quote(bin), 120)
  test.eq(code, 0, "dfu-util exit code")
  local a, b = S.read(fs.join(dir, "a.bin")), S.read(fs.join(dir, "b.bin"))
  test.eq(#a, 1024 * 1024, "flash size")
  test.ok(a == b, "identical flash")
  test.ok(a:sub(1, #img) == img, "holding the image")
  fs.remove(dir, { recursive = true })
end)

test("a reflash after a change inside one sector erases that sector only", function()
  S.need()
  local dir = fs.tmpdir()
  local img = S.image(300 * 1024, 23)
  S.write(fs.join(dir, "fw.bin"), img)
  local flash = fs.join(dir, "flash.bin")
  local r1 = mpctl_write({ "flash=" .. flash }, fs.join(dir, "fw.bin"))
  test.ok(r1.ok, "first write")
  test.eq(r1.erased, 7, "sectors covering 300 KiB: 4x16K + 64K + 2x128K")
  local changed = img:sub(1, 70000) .. "CHANGED" .. img:sub(70008)
  S.write(fs.join(dir, "fw2.bin"), changed)
  local r2 = mpctl_write({ "flash=" .. flash }, fs.join(dir, "fw2.bin"))
  test.ok(r2.ok, "second write")
  test.eq(r2.erased, 1, "one sector erased")
  test.eq(r2.skipped, 6, "six sectors already held the image")
  test.ok(S.read(flash):sub(1, #changed) == changed, "flash holds the changed image")
  fs.remove(dir, { recursive = true })
end)

test("device faults give clear errors with the offset reached; the next run completes", function()
  S.need()
  local dir = fs.tmpdir()
  local img = S.image(64 * 1024, 24)
  S.write(fs.join(dir, "fw.bin"), img)
  local flash = fs.join(dir, "flash.bin")
  for _, fault in ipairs({ "error", "stall", "disconnect" }) do
    local r = mpctl_write({ "flash=" .. flash, "fault=" .. fault, "fault_at=9" }, fs.join(dir, "fw.bin"))
    test.eq(r.ok, false, fault .. ": the write fails")
    test.ok(r.kind == "protocol" or r.kind == "not_found" or r.kind == "io", fault .. ": error kind " .. tostring(r.kind) .. ": " .. tostring(r.msg))
    test.ok(type(r.offset) == "number" and r.offset >= 0x08000000 and r.offset < 0x08000000 + #img,
      fault .. ": the error names the offset reached (" .. tostring(r.offset) .. ")")
    test.contains(tostring(r.hint), "run the same command again", fault .. ": resume hint")
    if fault == "error" then test.contains(r.msg, "errWRITE", "the device's status is named") end
  end
  local r = mpctl_write({ "flash=" .. flash }, fs.join(dir, "fw.bin"))
  test.ok(r.ok, "the run after the faults completes: " .. tostring(r.msg))
  test.ok(S.read(flash):sub(1, #img) == img, "flash holds the image")
  fs.remove(dir, { recursive = true })
end)

test("an image larger than the flash is refused before the device is touched", function()
  S.need()
  local dir = fs.tmpdir()
  S.write(fs.join(dir, "big.bin"), S.image(1024 * 1024 + 2048, 25))
  local flash = fs.join(dir, "flash.bin")
  S.write(flash, S.image(64 * 1024, 26) .. string.rep("\255", 1024 * 1024 - 64 * 1024))
  local before = S.read(flash)
  local r = mpctl_write({ "flash=" .. flash }, fs.join(dir, "big.bin"))
  test.eq(r.ok, false, "refused")
  test.eq(r.kind, "refused", "kind")
  test.contains(r.msg, "outside the flash", "message")
  test.ok(S.read(flash) == before, "flash untouched")
  fs.remove(dir, { recursive = true })
end)

test("pyboard_flash: two boards in DFU mode are listed, not guessed; none: it says what to press and waits (bounded)", function()
  S.need()
  local q = S.sh_quote(exe())
  local out, code = S.run_sim("pyboard", { "boards=2" }, q .. " pyboard_flash firmware=demo", 60)
  test.eq(code, 2, "usage error exit code; output: " .. out)
  test.contains(out, "2 DFU devices are connected", "says why")
  test.contains(out, "usb:1-1", "lists the first")
  test.contains(out, "usb:1-2", "lists the second")
  -- a DFU device of another kind (1209:0001) is not a Pyboard: the recipe asks for one and waits
  local out2, code2 = S.run_sim("dfu11", {}, q .. " pyboard_flash firmware=demo wait=1", 60)
  test.eq(code2, 1, "exit code; output: " .. out2)
  test.contains(out2, "connect the DFU pin to 3V3", "tells the person what to do")
  test.contains(out2, "no DFU device appeared in 1 s", "the wait is bounded")
end)

test("unprotect=yes: read unprotect wipes the chip, the board comes back in DFU and is flashed", function()
  S.need()
  local dir = fs.tmpdir()
  local old = S.image(300 * 1024, 27)
  local flash = fs.join(dir, "flash.bin")
  S.write(flash, old .. string.rep("\255", 1024 * 1024 - #old))
  local img = S.image(20 * 1024, 28)
  S.write(fs.join(dir, "fw.bin"), img)
  local out, code = S.run_sim("pyboard", { "flash=" .. flash },
    S.sh_quote(exe()) .. " pyboard_flash unprotect=yes repl=no firmware=" .. S.sh_quote(fs.join(dir, "fw.bin")), 90)
  test.eq(code, 0, "exit code; output: " .. out:sub(-800))
  test.contains(out, "removing read protection", "said what it does")
  local f = S.read(flash)
  test.ok(f:sub(1, #img) == img, "the new image is there")
  test.eq(f:sub(#img + 1, 300 * 1024), string.rep("\255", 300 * 1024 - #img), "the rest of the old image was wiped")
  fs.remove(dir, { recursive = true })
end)

test("Ctrl-C during a flash: exit 130, the offset reached and the resume hint, an 'interrupted' history line", function()
  S.need()
  local dir = fs.tmpdir()
  local proc, serial, time = require("mpctl.proc"), require("mpctl.serial"), require("mpctl.time")
  local env = { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir }
  local p = proc.spawn { argv = { exe(), "sim", "pyboard", "timing=on", "--", exe(), "pyboard_flash", "firmware=demo" },
    stderr = "stdout", env = env }
  local out <close> = serial.wrap_fd(p:stdout_fd(), "sim")
  local seen = out:read_until("in DFU mode", 60)
  test.contains(seen, "in DFU mode", "the recipe reached the board")
  time.sleep(1.5) -- inside the ~14 s the datasheet-timed write takes
  p:kill("INT")
  local text = {}
  local deadline = time.now() + 30
  while time.now() < deadline do
    local ok, s = pcall(out.read, out, 65536, 1)
    if not ok or (s == "" and out:is_eof()) then break end
    text[#text + 1] = s
  end
  local code = p:wait(10)
  p:close()
  text = table.concat(text)
  test.eq(code, 130, "exit code; output: " .. text)
  test.contains(text, "run the same command again to resume", "resume hint")
  test.ok(text:find("flash known good up to 0x080%x+"), "offset reached: " .. text)
  local h = require("mpctl.proc").spawn { argv = { exe(), "history" }, env = env, stderr = "stdout" }
  local hout <close> = serial.wrap_fd(h:stdout_fd(), "history")
  local hist = {}
  local hdeadline = time.now() + 20
  while time.now() < hdeadline do
    local ok, s = pcall(hout.read, hout, 65536, 1)
    if not ok or (s == "" and hout:is_eof()) then break end
    hist[#hist + 1] = s
  end
  hist = table.concat(hist)
  h:wait(10); h:close()
  test.ok(hist:find("\n[^\n]*interrupted%s+flash%s+PYBV11"), "history line: " .. hist)
  fs.remove(dir, { recursive = true })
end)
