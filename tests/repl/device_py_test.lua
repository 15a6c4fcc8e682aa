-- The device's side of mpctl.repl (lua/mpctl/repl/device.py) run by the real MicroPython
-- (WebAssembly build from npm, sim://micropython): the receiver's deadline with a test stream (the
-- WebAssembly port's code cannot read its stdin), ls of a file, stale temporaries, and OSErrors in
-- words with the operation and the path (Emscripten's errno numbers on this build).
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local repl = require("mpctl.repl")

local function connect()
  local port = serial.open("sim://micropython")
  local r = repl.attach(port, {timeout = 10, owns_port = true})
  r:_ensure_helpers()
  return r
end

test("the receiver writes what it reads and acks each chunk", function()
  local r = connect()
  local out = r:exec("import io\ns=io.BytesIO(b'hello world')\n_mpctl_rx('/tmp/rx.bin',11,4,50,s,lambda:True)")
  test.eq(out, "\6\6\6\6", "ready byte and three chunk acks")
  test.eq(r:get("/tmp/rx.bin"), "hello world")
  r:close()
end)

test("the receiver gives up after a silence, removes its partial file and lets Ctrl-C in again", function()
  local r = connect()
  local ok, e = pcall(r.exec, r, "import io\ns=io.BytesIO(b'hello')\n"
    .. "_mpctl_rx('/tmp/cut.bin',11,4,50,s,lambda:s.tell()<5)")
  test.ok(not ok and repl.is_error(e, "device"), "receiver raised: " .. tostring(e))
  test.eq(e.exception, "OSError: [Errno 110] ETIMEDOUT")
  test.eq(r:stat("/tmp/cut.bin"), nil, "partial file removed")
  r:close()
end)

test("ls of a file lists the file; ls hides put's temporaries", function()
  local r = connect()
  r:put("abc", "/tmp/one.txt")
  test.eq(r:ls("/tmp/one.txt"), {{name = "/tmp/one.txt", type = "file", size = 3}})
  r:exec("open('/tmp/x.py.mpctl~','w').close()")
  local names = {}
  for _, e in ipairs(r:ls("/tmp")) do names[#names + 1] = e.name end
  test.eq(names, {"one.txt"})
  r:close()
end)

test("OSErrors name the operation, the path and the reason (Emscripten's errno numbers)", function()
  local r = connect()
  local ok, e = pcall(r.get, r, "/nope.py")
  test.ok(not ok and repl.is_error(e, "not_found"), "not_found: " .. tostring(e))
  test.contains(tostring(e), "read: :/nope.py: no such file")
  test.eq(e.errno, 44)
  test.eq(e.errno_name, "ENOENT")
  r:mkdir("/tmp/d")
  e = select(2, pcall(r.mkdir, r, "/tmp/d"))
  test.contains(tostring(e), "mkdir: :/tmp/d: already exists")
  test.eq(e.errno_name, "EEXIST")
  r:put("x", "/tmp/d/f")
  e = select(2, pcall(r.rmdir, r, "/tmp/d"))
  test.contains(tostring(e), "rmdir: :/tmp/d: folder not empty")
  e = select(2, pcall(r.rm, r, "/tmp/d"))
  test.contains(tostring(e), "rm: :/tmp/d: is a folder")
  e = select(2, pcall(r.ls, r, "/tmp/none"))
  test.contains(tostring(e), "ls: :/tmp/none: no such file")
  r:close()
end)
