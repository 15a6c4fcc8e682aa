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
local port = serial.open("sim://micropython")
local r = repl.attach(port, { timeout = 10 })

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
  r:mkdir("/bk", { exist_ok = true })
  r:mkdir("/bk/lib", { exist_ok = true })
  for p, data in pairs(FILES) do r:put(data, p) end
  local view = rooted(r, "/bk")
  local m = backup.files(view, dir)
  test.eq(#m.files, 3)
  test.eq(#m.dirs, 1)
  local manifest = ui.json_decode(fs.read(fs.join(dir, "files.json")))
  local by = {}
  for _, f in ipairs(manifest.files) do by[f.path] = f end
  test.eq(by["/lib/util.py"].sha256, sha(FILES["/bk/lib/util.py"]))
  test.eq(fs.read(fs.join(dir, "files", "data.bin")), FILES["/bk/data.bin"])

  r:rm("/bk", { recursive = true })
  test.eq(r:stat("/bk"), nil, "gone from the device")
  r:mkdir("/bk", { exist_ok = true })
  test.eq(backup.restore_files(view, dir), 3)
  for p, data in pairs(FILES) do test.eq(r:sha256(p), sha(data), p) end
end)

test("a damaged files backup is refused before anything is written", function()
  fs.write(fs.join(dir, "files", "main.py"), "tampered\n")
  r:rm("/bk/main.py")
  test.raises(function() backup.restore_files(rooted(r, "/bk"), dir) end, "damaged")
end)

test("identify on a real REPL reports the version and machine", function()
  local id = firmware.identify(r)
  test.ok(id.version and id.version:match("^%d+%.%d+%.%d+"), "version " .. tostring(id.version))
  test.contains(id.machine, "Emscripten")
  test.eq(id.board, nil, "the WebAssembly port maps to no board id")
end)

test("cleanup", function()
  pcall(r.rm, r, "/bk", { recursive = true })
  r:close()
  port:close()
  fs.remove(dir, { recursive = true })
end)
