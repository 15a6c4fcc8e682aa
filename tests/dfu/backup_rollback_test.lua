-- Backup, history and rollback of a DFU board through the family-neutral mpctl.backup and
-- recipes/rollback.lua, on the simulated Pyboard (umockdev bus, real libusb). The simulator's
-- flash=FILE keeps the flash between runs and lets the test read it.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "../usb/support.lua")

local function exe() return test.exe() or debug.getregistry()["mpctl.exe"] end

-- Runs mpctl with argv under the test's own state folders; returns output and exit code.
local function mpctl_run(dir, args, timeout)
  local cmd = { "env", "XDG_STATE_HOME=" .. dir, "XDG_CACHE_HOME=" .. dir, "MPCTL_BACKUP_DIR=" .. fs.join(dir, "backups"),
    S.sh_quote(exe()) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = S.sh_quote(a) end
  -- run_sim with the "echo" simulator would add a bus; a plain sh under a bounded spawn is enough:
  -- --port sim://pyboard starts the simulated board itself.
  local proc, serial, time = require("mpctl.proc"), require("mpctl.serial"), require("mpctl.time")
  local p = proc.spawn { argv = { "sh", "-c", table.concat(cmd, " ") }, stderr = "stdout" }
  local out <close> = serial.wrap_fd(p:stdout_fd(), "mpctl")
  local chunks, deadline = {}, time.now() + (timeout or 150)
  while true do
    local left = deadline - time.now()
    if left <= 0 then
      p:kill("KILL"); p:wait(5); p:close()
      error("mpctl " .. table.concat(args, " ") .. " did not finish in time; output: " .. table.concat(chunks), 0)
    end
    local ok, s = pcall(out.read, out, 65536, math.min(left, 1))
    if not ok or (s == "" and out:is_eof()) then break end
    chunks[#chunks + 1] = s
  end
  local code = p:wait(10)
  p:close()
  return table.concat(chunks), code
end

local function history(dir)
  local lines = {}
  local text = S.read(fs.join(dir, "mpctl", "history.jsonl")) or ""
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = ui.json_decode(line) end
  return lines
end

local FLASH_SIZE = 1024 * 1024

test("pyboard_flash backup=flash: the same backup folder as an ESP board's, recorded in the history", function()
  S.need()
  local dir = fs.tmpdir()
  local flash = fs.join(dir, "flash.bin")
  local old = S.image(120 * 1024, 31) .. string.rep("\255", FLASH_SIZE - 120 * 1024)
  S.write(flash, old)
  local fw = fs.join(dir, "fw.bin")
  S.write(fw, S.image(64 * 1024, 32))
  local port = "sim://pyboard?flash=" .. flash
  local out, code = mpctl_run(dir, { "pyboard_flash", "--port", port, "firmware=" .. fw, "backup=flash", "repl=no" })
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  test.contains(out, "ok: flash reads back equal to the image", "verified")
  test.contains(out, "skipped: check of the flash outside what was written", "the outside is not claimed unchanged")
  test.ok(not out:find("ok: flash outside what was written is unchanged", 1, true), "no unchecked claim")
  local h = history(dir)
  test.eq(#h, 1, "one history line")
  local rec = h[1]
  test.eq(rec.result, "ok", "result")
  test.eq(rec.board, "PYBV11", "board")
  test.eq(rec.family, "dfu", "family from the target")
  test.eq(rec.port, port, "port as given")
  test.ok(type(rec.backup) == "table" and type(rec.backup.flash) == "string", "the backup is recorded: " .. ui.json_encode(rec))
  local bdir = rec.backup.flash
  test.eq(fs.dirname(bdir), fs.join(dir, "backups"), "a folder under the backup root")
  local manifest = ui.json_decode(S.read(fs.join(bdir, "flash.json")))
  test.eq(manifest.family, "dfu", "manifest family")
  test.eq(manifest.flash_base, 0x08000000, "manifest flash base")
  test.eq(manifest.flash_size, FLASH_SIZE, "manifest flash size")
  test.eq(#manifest.regions, 1, "one region: the whole flash")
  local region = manifest.regions[1]
  test.eq(region.offset, 0x08000000, "region offset")
  test.ok(S.read(fs.join(bdir, region.file)) == old, "the backup holds the flash as it was")
  test.eq(region.sha256, require("mpctl.hash").hex(require("mpctl.hash").sha256(old)), "manifest sha256")
  test.eq(rec.firmware.path, fs.realpath(fw), "firmware recorded by its absolute path")
  fs.remove(dir, { recursive = true })
end)

test("mpctl rollback --port sim://pyboard: image A, image B with backup, rollback: the flash holds A again", function()
  S.need()
  local dir = fs.tmpdir()
  local flash = fs.join(dir, "flash.bin")
  S.write(flash, string.rep("\255", FLASH_SIZE))
  local a, b = S.image(200 * 1024, 41), S.image(150 * 1024, 42)
  S.write(fs.join(dir, "a.bin"), a)
  S.write(fs.join(dir, "b.bin"), b)
  local port = "sim://pyboard?flash=" .. flash
  local out, code = mpctl_run(dir, { "pyboard_flash", "--port", port, "firmware=" .. fs.join(dir, "a.bin"), "repl=no" })
  test.eq(code, 0, "flash A; output: " .. out:sub(-1500))
  local after_a = S.read(flash)
  test.ok(after_a:sub(1, #a) == a, "the flash holds A")
  out, code = mpctl_run(dir, { "pyboard_flash", "--port", port, "firmware=" .. fs.join(dir, "b.bin"), "backup=flash", "repl=no" })
  test.eq(code, 0, "flash B with backup; output: " .. out:sub(-1500))
  test.ok(S.read(flash):sub(1, #b) == b, "the flash holds B")
  test.ok(S.read(flash) ~= after_a, "B changed the flash")
  out, code = mpctl_run(dir, { "rollback", "--port", port })
  test.eq(code, 0, "rollback; output: " .. out:sub(-1500))
  test.contains(out, "restoring the flash backup", "from the backup taken before B")
  test.contains(out, "ok: flash at 0x8000000 matches the backup", "verified")
  test.ok(S.read(flash) == after_a, "the flash holds exactly what it held after A")
  local h = history(dir)
  test.eq(#h, 3, "three history lines")
  test.eq(h[3].kind, "rollback", "the last is the rollback")
  test.eq(h[3].result, "ok", "rollback result")
  test.eq(h[3].family, "dfu", "through the dfu driver")
  fs.remove(dir, { recursive = true })
end)

test("mpctl rollback without a backup: the previous .dfu, found by its recorded path, is written back", function()
  S.need()
  local dir = fs.tmpdir()
  local flash = fs.join(dir, "flash.bin")
  S.write(flash, string.rep("\255", FLASH_SIZE))
  local a, b = S.image(90 * 1024, 51), S.image(90 * 1024, 52)
  local build = require("mpctl.dfu.file").build_dfu
  S.write(fs.join(dir, "a.dfu"), build({ { offset = 0x08000000, data = a } }, { vid = 0x0483, pid = 0xdf11 }))
  S.write(fs.join(dir, "b.dfu"), build({ { offset = 0x08000000, data = b } }, { vid = 0x0483, pid = 0xdf11 }))
  local port = "sim://pyboard?flash=" .. flash
  for _, f in ipairs({ "a.dfu", "b.dfu" }) do
    local out, code = mpctl_run(dir, { "pyboard_flash", "--port", port, "firmware=" .. fs.join(dir, f), "repl=no" })
    test.eq(code, 0, f .. "; output: " .. out:sub(-1500))
  end
  test.ok(S.read(flash):sub(1, #b) == b, "the flash holds B")
  local out, code = mpctl_run(dir, { "rollback", "--port", port })
  test.eq(code, 0, "rollback; output: " .. out:sub(-1500))
  test.contains(out, "ok: flash matches the previous firmware", "verified")
  -- the .dfu's element, not the file's bytes, went to 0x08000000
  test.ok(S.read(flash):sub(1, #a) == a, "the flash holds A again")
  local h = history(dir)
  test.eq(h[#h].source, "firmware cache", "written from the recorded firmware")
  test.eq(h[#h].firmware.sha256, h[1].firmware.sha256, "A's record")
  fs.remove(dir, { recursive = true })
end)
