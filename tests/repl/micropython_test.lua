-- mpctl.repl against the real MicroPython: the WebAssembly port from npm behind sim://micropython
-- (a node process on a pty, restarted when it exits).
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local repl = require("mpctl.repl")
local hash = require("mpctl.hash")

local random_bytes = test.random_bytes

local function connect(opts)
  local port = serial.open("sim://micropython")
  local o = {timeout = 10, owns_port = true}
  for k, v in pairs(opts or {}) do o[k] = v end
  return repl.attach(port, o), port
end


test("exec, eval and info on real MicroPython", function()
  local r = connect()
  test.eq(r:exec("print('hello')"), "hello\n")
  test.eq(r:exec("x = 6 * 7"), "")
  test.eq(r:eval("x"), "42")
  test.eq(r:eval("'a' + 'b'"), "'ab'")
  test.ok(r.wasm, "WebAssembly port detected")
  test.eq(r.paste, false, "raw-paste must not be tried on the WebAssembly port")
  test.eq(r.platform, "webassembly")
  local info = r:info()
  test.eq(info.name, "micropython")
  test.ok(info.version:match("^%d+%.%d+%.%d+"), "version looks like X.Y.Z: " .. tostring(info.version))
  test.contains(info.machine, "JS with Emscripten")
  test.eq(info.platform, "webassembly")
  test.eq(info.uname, nil, "this port has no os.uname")
  r:close()
end)

test("a device traceback is raised as a Lua error with the exception line first", function()
  local r = connect()
  local ok, e = pcall(r.exec, r, "print('before')\n1/0")
  test.ok(not ok, "exec raised")
  test.ok(repl.is_error(e, "device"), "kind is device")
  test.eq(e.exception, "ZeroDivisionError: divide by zero")
  test.eq(e.stdout, "before\n")
  test.contains(e.traceback, "Traceback (most recent call last):")
  test.eq(tostring(e):match("^[^\n]*"):match("^(.-) %(on "), "ZeroDivisionError: divide by zero")
  -- the connection stays usable
  test.eq(r:exec("print(1+1)"), "2\n")
  r:close()
end)

for _, size in ipairs({64 * 1024, 256 * 1024}) do
  test(string.format("%d KB put/get round trip verified by sha256 on the device", size // 1024), function()
    local r = connect()
    local data = random_bytes(size, size)
    local want = hash.hex(hash.sha256(data))
    local s = r:put(data, "/tmp/round.bin")
    test.eq(s.status, "written")
    test.eq(s.mode, "base64-raw", "the WebAssembly port takes base64 through the plain raw REPL")
    test.eq(s.bytes, size)
    test.ok(s.wire_bytes >= size * 4 / 3 and s.wire_bytes < size * 1.4, "base64 wire bytes: " .. s.wire_bytes)
    test.eq(r:sha256("/tmp/round.bin"), want, "device-side sha256")
    test.eq(r:stat("/tmp/round.bin"), {type = "file", size = size})
    local back, g = r:get("/tmp/round.bin")
    test.ok(back == data, "read back equals what was written")
    test.eq(g.mode, "binary", "stdout takes binary on this port")
    test.eq(g.sha256, want)
    local b2, g2 = r:get("/tmp/round.bin", {mode = "base64"})
    test.ok(b2 == data, "base64 read back equals what was written")
    test.eq(g2.mode, "base64")
    r:close()
  end, {timeout = 120})
end

test("put skips a file whose device hash matches, and rewrites a changed one", function()
  local r = connect()
  local data = random_bytes(5000, 7)
  test.eq(r:put(data, "/tmp/same.bin").status, "written")
  local s = r:put(data, "/tmp/same.bin")
  test.eq(s.status, "up to date")
  test.ok(s.skipped, "skipped")
  test.eq(r:put(data .. "x", "/tmp/same.bin").status, "written")
  test.eq(r:put(data, "/tmp/same.bin", {force = true}).status, "written")
  test.eq(r:put("", "/tmp/empty.bin").status, "written")
  test.eq(r:get("/tmp/empty.bin"), "")
  r:close()
end)

-- A port that refuses every write larger than 1000 bytes once `allow` of them have passed,
-- as a USB adapter pulled mid-transfer would: the device never sees the refused piece.
local function cut_port(port)
  local p = {name = "cut " .. port.name}
  function p.write(_, data)
    if p.allow and #data > 1000 then
      if p.allow == 0 then
        error(require("mpctl.errors").new{kind = "eof", where = p.name, detail = "write: Broken pipe"}, 0)
      end
      p.allow = p.allow - 1
    end
    return port:write(data)
  end
  for _, m in ipairs({"read", "read_exact", "read_until", "unread", "pending", "counters", "set_trace",
                      "is_eof", "baud"}) do
    p[m] = function(_, ...) return port[m](port, ...) end
  end
  return p
end

test("an upload cut short leaves the device file as it was", function()
  local r, port = connect()
  r:put("old", "/tmp/cut.bin")
  local cut = cut_port(port)
  local r1 = repl.attach(cut, {timeout = 10, batch = 4096})
  test.eq(r1:sha256("/tmp/cut.bin"), hash.hex(hash.sha256("old")))   -- helpers sent before the cut
  cut.allow = 1                    -- the first base64 exec of the file passes, the second is lost
  local ok, e = pcall(r1.put, r1, random_bytes(20000, 4), "/tmp/cut.bin", {compress = false})
  test.ok(not ok and repl.is_error(e, "reset"), "put failed with the port: " .. tostring(e))
  local r2 = repl.attach(port, {timeout = 10})
  test.eq(r2:get("/tmp/cut.bin"), "old", "the half-sent file did not replace the old one")
  r2:close()
  r:close()
end)

test("without hashlib on the device, put checks the temporary file by reading it back", function()
  local r = connect()
  -- hide hashlib from the device's code (builtins.__import__ is looked up on every import)
  r:exec("import builtins\n_oi=builtins.__import__\ndef _ni(n,*a):\n if n=='hashlib':\n"
    .. "  raise ImportError('no hashlib')\n return _oi(n,*a)\nbuiltins.__import__=_ni")
  test.raises(function() r:sha256("/tmp/nh.bin") end, "no hashlib")
  r:put("old", "/tmp/nh.bin")
  local data = random_bytes(3000, 21)
  local s = r:put(data, "/tmp/nh.bin", {compress = false})
  test.eq(s.status, "written")
  test.eq(s.sha256, hash.hex(hash.sha256(data)))
  test.ok(r:get("/tmp/nh.bin") == data, "moved into place")
  test.eq(r:stat("/tmp/nh.bin.mpctl~"), nil, "temporary file gone")
  r:close()
end)

test("binary upload is refused cleanly where stdin cannot be read", function()
  local r = connect()
  test.raises(function() r:put("abc", "/tmp/b.bin", {mode = "binary"}) end, "does not take binary")
  test.eq(r:exec("print('still here')"), "still here\n")
  r:close()
end)

test("ls, stat, mkdir, rm on the device filesystem", function()
  local r = connect()
  r:mkdir("/tmp/d")
  test.raises(function() r:mkdir("/tmp/d") end, "OSError")
  r:mkdir("/tmp/d", {exist_ok = true})
  r:put("hello", "/tmp/d/a.txt")
  r:put(("z"):rep(1000), "/tmp/d/b.bin")
  r:mkdir("/tmp/d/sub")
  test.eq(r:ls("/tmp/d"), {
    {name = "a.txt", type = "file", size = 5},
    {name = "b.bin", type = "file", size = 1000},
    {name = "sub", type = "dir"},
  })
  test.eq(r:stat("/tmp/nothing"), nil, "absent (Emscripten errno) is nil")
  test.eq(r:sha256("/tmp/nothing"), nil)
  test.raises(function() r:get("/tmp/nothing") end, "OSError")
  r:rm("/tmp/d/a.txt")
  test.eq(r:stat("/tmp/d/a.txt"), nil)
  r:rm("/tmp/d", {recursive = true})
  test.eq(r:stat("/tmp/d"), nil)
  r:close()
end)

test("code that cannot be interrupted gives a clean timeout error", function()
  local r = connect()
  local ok, e = pcall(r.exec, r, "while True:\n pass", {timeout = 1, interrupt_timeout = 1})
  test.ok(not ok, "exec raised")
  test.ok(repl.is_error(e, "timeout"), "kind is timeout: " .. tostring(e))
  test.contains(tostring(e), "did not return to the prompt")
  test.eq(e.recovered, false)
  r:close()   -- the sim kills the spinning node process when its client hangs up
end, {timeout = 30})

test("soft reset is seen as a reset and the REPL works afterwards", function()
  local r = connect()
  r:exec("marker = 1")
  local how = r:soft_reset()
  test.eq(how, "banner", "the WebAssembly process ends; the fixture restarts it with a fresh banner")
  test.eq(r:exec("print('marker' in globals())"), "False\n")
  r:close()
end, {timeout = 60})

test("raw-paste forced on the WebAssembly port is detected as broken (R\\x01 then \\x04)", function()
  local r = connect({raw_paste = true})
  local ok, e = pcall(r.exec, r, "print(1)")
  test.ok(not ok, "exec raised")
  test.ok(repl.is_error(e, "unsupported"), "kind is unsupported: " .. tostring(e))
  test.contains(tostring(e), "broken raw-paste")
  test.eq(r.paste, false, "raw-paste disabled for the connection")
  r:close()
end, {timeout = 30})

test("sim micropython serves socket:// and rfc2217:// listeners to one client after another", function()
  local proc = require("mpctl.proc")
  local exe = (assert(test.exe(), "mpctl executable"))
  for _, kind in ipairs({"socket", "rfc2217"}) do
    local p = proc.spawn{argv = {exe, "sim", "micropython", "--listen", kind .. "://127.0.0.1:0"}, pty = false,
      stderr = "null"}
    local ok, err = pcall(function()
      local out = serial.wrap_fd(p:stdout_fd(), "sim stdout")
      local url = out:read_until("\n", 15):match("%S+")
      test.ok(url:match("^" .. kind .. "://127%.0%.0%.1:%d+$") and not url:match(":0$"), "bound URL printed: " .. url)
      for i = 1, 2 do
        local port = serial.open(url)
        local r = repl.attach(port, {timeout = 10})
        test.eq(r:exec("print('client', " .. i .. ")"), "client " .. i .. "\n")
        r:close()
        port:close()
      end
      out:close()
    end)
    p:kill()
    p:wait(5)
    if not ok then error(err, 0) end
  end
end, {timeout = 60})

test("friendly REPL exchange on real MicroPython, then back to the raw REPL", function()
  local r = connect()
  r:exec("y = 5")
  test.eq(r:friendly("y * 2"), "10\n")
  r:interrupt()
  test.eq(r:friendly("print('hi')"), "hi\n")
  test.eq(r:exec("print(y)"), "5\n", "globals survive leaving and re-entering the raw REPL")
  r:close()
end)

local function source_text(n)
  local t, i = {}, 0
  while #table.concat(t) < n do
    i = i + 1
    t[#t + 1] = string.format("def handler_%d(pin, value=%d):\n    if value > %d:\n        print('pin', pin, 'high', value)\n    return value * %d\n\n", i, i * 7 % 100, i % 13, i % 5 + 1)
  end
  return table.concat(t):sub(1, n)
end

test("compressible files go deflated and are inflated on the device", function()
  local r = connect()
  local text = source_text(64 * 1024)
  local s = r:put(text, "/tmp/src.py")
  test.eq(s.mode, "base64-raw+deflate")
  test.ok(s.wire_per_byte < 0.5, "deflate cuts the wire bytes: " .. s.wire_per_byte)
  test.eq(r:get("/tmp/src.py"), text)
  test.eq(r:stat("/tmp/src.py.mpctl~"), nil, "temporary file removed")
  test.eq(r:stat("/tmp/src.py.mpctl~z"), nil, "compressed temporary file removed")
  local p = r:put(text .. "#", "/tmp/src.py", {compress = false})
  test.eq(p.mode, "base64-raw")
  test.eq(r:get("/tmp/src.py"), text .. "#")
  r:close()
end, {timeout = 60})
