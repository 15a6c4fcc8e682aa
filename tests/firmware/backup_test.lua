-- mpctl.backup of a MicroPython filesystem against real MicroPython (the WebAssembly port behind
-- sim://micropython): files and folders saved with a SHA-256 manifest, deleted, restored and
-- checked on the device; a damaged backup is refused; identify on a real REPL.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local repl = require("mpctl.repl")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local hash = require("mpctl.hash")
local backup = require("mpctl.backup")
local firmware = require("mpctl.firmware")

local dir = fs.tmpdir()
local port, r

-- A target stand-in (the mpctl.target interface) over a flash array: enough for
-- backup.flash/restore_flash's bookkeeping.
local function fake_chip(mem, mac)
  local chip = { family = "esp", board = { id = "ESP32_GENERIC" }, writes = {} }
  function chip.identify() return { chip = "ESP32", id = mac or "24:0a:c4:00:00:01", mac = mac or "24:0a:c4:00:00:01",
    flash_size = #mem.data, flash_base = 0 } end
  function chip.read(_, off, size) return mem.data:sub(off + 1, off + size) end
  function chip.write(self, parts)
    for _, p in ipairs(parts) do
      mem.data = mem.data:sub(1, p.offset) .. p.data .. mem.data:sub(p.offset + #p.data + 1)
      self.writes[#self.writes + 1] = { p.offset, #p.data }
    end
    return { verified = true }
  end
  return chip
end

test("regions_for covers the 4 KiB sectors a write touches", function()
  test.eq(backup.regions_for(0x1000, 0x2000), { { offset = 0x1000, size = 0x2000 } })
  test.eq(backup.regions_for(0x1800, 0x10), { { offset = 0x1000, size = 0x1000 } })
  test.eq(backup.regions_for(0x1ff0, 0x20), { { offset = 0x1000, size = 0x2000 } })
end)

test("flash regions are saved with a manifest and written back; damage and another MAC are refused", function()
  local mem = { data = string.rep("\255", 0x1000) .. string.rep("A", 0x3000) .. string.rep("\255", 0x4000) }
  local original = mem.data
  local chip = fake_chip(mem)
  local bdir = fs.join(dir, "flash-bk")
  fs.mkdir(bdir, { parents = true })
  local m = backup.flash(chip, bdir, backup.regions_for(0x1000, 0x3000))
  test.eq(#m.regions, 1)
  test.eq(m.regions[1].sha256, hash.hex(hash.sha256(string.rep("A", 0x3000))))
  mem.data = mem.data:sub(1, 0x1000) .. string.rep("B", 0x3000) .. mem.data:sub(0x4001)
  backup.restore_flash(chip, bdir)
  test.eq(mem.data, original)
  test.raises(function() backup.restore_flash(fake_chip(mem, "aa:bb:cc:dd:ee:ff"), bdir) end, "force=yes")
  fs.write(fs.join(bdir, m.regions[1].file), string.rep("C", 0x3000))
  local w = #chip.writes
  test.raises(function() backup.restore_flash(chip, bdir) end, "damaged")
  test.eq(#chip.writes, w, "nothing written from a damaged backup")
  fs.write(fs.join(bdir, "flash.json"), '{"regions": [')
  test.raises(function() backup.restore_flash(chip, bdir) end, fs.join(bdir, "flash.json") .. " is damaged")
  test.eq(#chip.writes, w, "nothing written from a garbled manifest")
end)

test("take(path) saves the whole flash as one raw image, restorable as is", function()
  local mem = { data = string.rep("Z", 0x2000) }
  local chip = fake_chip(mem)
  local file = fs.join(dir, "whole.bin")
  test.eq(backup.take(file, { target = chip }).flash, file)
  mem.data = string.rep("Y", 0x2000)
  backup.restore_flash(chip, file)
  test.eq(mem.data, string.rep("Z", 0x2000))
end)

test("backup folders made at the same moment by several processes are all distinct", function()
  local proc = require("mpctl.proc")
  local exe = test.exe()
  local work = fs.join(dir, "race")
  fs.mkdir(work, { parents = true })
  local recipe = fs.join(work, "newdir.lua")
  fs.write(recipe, 'io.stdout:write(require("mpctl.backup").dir("race"), "\\n")\n')
  local running = {}
  for i = 1, 8 do
    local out = fs.join(work, "out" .. i)
    running[i] = { out = out, p = proc.spawn({ argv = { "/bin/sh", "-c", "exec \"$0\" \"$1\" > \"$2\"", exe, recipe, out },
      pty = false, stderr = "null", env = { MPCTL_BACKUP_DIR = fs.join(work, "root") } }) }
  end
  local seen = {}
  for _, r in ipairs(running) do
    local code = r.p:wait(60)
    r.p:close()
    test.eq(code, 0)
    local got = fs.read(r.out):match("^(.-)\n$")
    test.ok(got and fs.stat(got) and fs.stat(got).type == "dir", "a folder: " .. tostring(got))
    test.ok(not seen[got], "folder " .. tostring(got) .. " given to two processes")
    seen[got] = true
  end
end)

local connect_error
local function connect()
  if connect_error then error(connect_error, 0) end
  if not r then
    local ok, err = pcall(function()
      port = serial.open("sim://micropython")
      r = repl.attach(port, { timeout = 10 })
    end)
    if not ok then
      connect_error = "sim://micropython: " .. tostring(err)
      error(connect_error, 0)
    end
  end
  return r
end

local FILES = {
  ["/bk/main.py"] = "print('hello from main')\n",
  ["/bk/lib/util.py"] = "def f():\n    return 42\n",
  ["/bk/data.bin"] = string.rep("\0\1\2\255", 700),
}

local function sha(s) return hash.hex(hash.sha256(s)) end

-- The WebAssembly port's filesystem root holds its own files; back up a subtree by giving the
-- walker a REPL whose "/" is /bk.
local function rooted(real, root)
  return setmetatable({
    ls = function(_, p) return real:ls(root .. (p == "/" and "" or p)) end,
    get = function(_, p) return real:get(root .. p) end,
    put = function(_, data, p) return real:put(data, root .. p) end,
    mkdir = function(_, p, o) return real:mkdir(root .. p, o) end,
  }, { __index = real })
end

test("files and folders are saved with a manifest, then restored and verified on the device", function()
  connect()
  r:mkdir("/bk", { exist_ok = true })
  r:mkdir("/bk/lib", { exist_ok = true })
  for p, data in pairs(FILES) do r:put(data, p) end
  local view = rooted(r, "/bk")
  local m = backup.files(view, fs.join(dir, "files-bk"))
  test.eq(#m.files, 3)
  test.eq(#m.dirs, 1)
  local fdir = fs.join(dir, "files-bk")
  local manifest = ui.json_decode(fs.read(fs.join(fdir, "files.json")))
  local by = {}
  for _, f in ipairs(manifest.files) do by[f.path] = f end
  test.eq(by["/lib/util.py"].sha256, sha(FILES["/bk/lib/util.py"]))
  test.eq(fs.read(fs.join(fdir, "files", "data.bin")), FILES["/bk/data.bin"])

  r:rm("/bk", { recursive = true })
  test.eq(r:stat("/bk"), nil, "gone from the device")
  r:mkdir("/bk", { exist_ok = true })
  test.eq(backup.restore_files(view, fdir), 3)
  for p, data in pairs(FILES) do test.eq(r:sha256(p), sha(data), p) end
end)

test("a damaged files backup is refused before anything is written", function()
  connect()
  local fdir = fs.join(dir, "files-bk")
  fs.write(fs.join(fdir, "files", "main.py"), "tampered\n")
  r:rm("/bk/main.py")
  -- files listed before and after the damaged one must not come back either
  r:rm("/bk/data.bin")
  r:rm("/bk/lib", { recursive = true })
  local msg = test.raises(function() backup.restore_files(rooted(r, "/bk"), fdir) end, "damaged")
  test.contains(msg, sha("tampered\n"))
  test.contains(msg, sha(FILES["/bk/main.py"]))
  test.eq(r:stat("/bk/data.bin"), nil, "data.bin not written")
  test.eq(r:stat("/bk/lib"), nil, "lib/ not created")
end)

test("identify on a real REPL reports the version and machine", function()
  connect()
  local id = firmware.identify(r)
  test.ok(id.version and id.version:match("^%d+%.%d+%.%d+"), "version " .. tostring(id.version))
  test.contains(id.machine, "Emscripten")
  test.eq(id.board, nil, "the WebAssembly port maps to no board id")
end)

test("cleanup", function()
  if r then
    pcall(r.rm, r, "/bk", { recursive = true })
    r:close()
    port:close()
  end
  fs.remove(dir, { recursive = true })
end)
