-- mpctl.repl against sim://rawrepl: the raw REPL / raw-paste protocol modelled as pyexec.c does it,
-- with code run by the real (WebAssembly) MicroPython behind it. Window sizes, fallbacks, aborts
-- and binary transfer, which the WebAssembly port alone cannot show.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local repl = require("mpctl.repl")
local hash = require("mpctl.hash")

local random_bytes = test.random_bytes

local function connect(query, opts)
  local port = serial.open("sim://rawrepl" .. (query and ("?" .. query) or ""))
  local o = {timeout = 10, owns_port = true}
  for k, v in pairs(opts or {}) do o[k] = v end
  return repl.attach(port, o)
end

test("raw-paste is used, with the window the device announces", function()
  local r = connect()
  test.eq(r.platform, "mpctl-sim")
  test.eq(r:exec("print('hello')"), "hello\n")
  test.eq(r.paste, true)
  test.eq(r.paste_window, 128)
  local long = {}
  for i = 1, 200 do long[i] = "a" .. i .. " = " .. i end
  long[#long + 1] = "print(a1 + a200)"
  test.eq(r:exec(table.concat(long, "\n")), "201\n", "code much longer than the window")
  r:close()
end)

for _, w in ipairs({32, 128, 1024}) do
  test(string.format("64 KB base64 through raw-paste with a %d-byte window", w), function()
    local r = connect("window=" .. w)
    local data = random_bytes(65536, w)
    local s = r:put(data, "/w.bin", {mode = "base64"})
    test.eq(s.mode, "base64-paste")
    test.eq(r.paste_window, w)
    test.eq(r:sha256("/w.bin"), hash.hex(hash.sha256(data)))
    test.ok(s.wire_per_byte < 1.36, "base64 lines cost under 1.36 wire bytes per byte: " .. s.wire_per_byte)
    r:close()
  end, {timeout = 60})
end

for _, size in ipairs({64 * 1024, 256 * 1024}) do
  test(string.format("%d KB binary put and get, all byte values, sha256 on the device", size // 1024), function()
    local r = connect()
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    local data = table.concat(t):rep(4) .. random_bytes(size - 1024, 3)    -- \x03 \x04 included
    local s = r:put(data, "/bin.bin")
    test.eq(s.mode, "binary", "the modelled device reads binary stdin")
    test.ok(s.wire_per_byte < 1.01, "binary costs about one wire byte per byte: " .. s.wire_per_byte)
    local back, g = r:get("/bin.bin")
    test.eq(g.mode, "binary")
    test.ok(back == data, "read back equals what was written")
    test.ok(g.wire_per_byte < 1.01, "binary read: " .. g.wire_per_byte)
    test.eq(r:put(data, "/bin.bin").status, "up to date")
    r:close()
  end, {timeout = 120})
end

test("R\\x00 (raw-paste understood, unsupported) falls back to the plain raw REPL", function()
  local r = connect("raw_paste=R0")
  test.eq(r:exec("print('plain')"), "plain\n")
  test.eq(r.paste, false)
  local data = random_bytes(20000, 5)
  local s = r:put(data, "/r0.bin", {mode = "base64"})
  test.eq(s.mode, "base64-raw")
  test.eq(r:get("/r0.bin"), data)
  r:close()
end, {timeout = 60})

test("old firmware (no raw-paste, banner reprinted) falls back to the plain raw REPL", function()
  local r = connect("raw_paste=false")
  test.eq(r:exec("print('old')"), "old\n")
  test.eq(r.paste, false)
  test.eq(r:exec("print('again')"), "again\n", "no second raw-paste attempt")
  r:close()
end)

test("a device that aborts right after the raw-paste window is reported as broken", function()
  local r = connect("raw_paste=broken")
  local ok, e = pcall(r.exec, r, "print(1)")
  test.ok(not ok and repl.is_error(e, "unsupported"), "unsupported error: " .. tostring(e))
  test.contains(tostring(e), "broken raw-paste")
  r:close()
end)

test("a device abort during raw-paste stops the transfer and reports the device error", function()
  local r = connect("abort_after=300")
  local code = "x = '" .. ("y"):rep(2000) .. "'\nprint(len(x))"
  local ok, e = pcall(r.exec, r, code)
  test.ok(not ok and repl.is_error(e, "device"), "device error: " .. tostring(e))
  test.eq(e.exception, "MemoryError: memory allocation failed")
  test.eq(r:exec("print('next')"), "next\n", "the device takes the next command")
  r:close()
end)

test("no binary stdin: put falls back to base64 through raw-paste, binary mode is refused", function()
  local r = connect("binary_stdin=false")
  local data = random_bytes(10000, 9)
  local s = r:put(data, "/nb.bin")
  test.eq(s.mode, "base64-paste")
  test.ok(r.binary_reason and r.binary_reason:find("OSError", 1, true), "reason: " .. tostring(r.binary_reason))
  test.raises(function() r:put(data, "/nb2.bin", {mode = "binary"}) end, "does not take binary")
  test.eq(r:get("/nb.bin"), data)
  r:close()
end, {timeout = 60})

test("Ctrl-C interrupts running code; the error says the device came back", function()
  local r = connect()
  local ok, e = pcall(r.exec, r, "while True:\n pass", {timeout = 1, interrupt_timeout = 10})
  test.ok(not ok and repl.is_error(e, "timeout"), "timeout error: " .. tostring(e))
  test.eq(e.recovered, true)
  test.contains(tostring(e), "back at the prompt")
  test.eq(r:exec("print('alive')"), "alive\n")
  r:close()
end, {timeout = 30})

test("soft reset: MPY: soft reboot, globals gone, files kept", function()
  local r = connect()
  r:exec("keep = 1")
  r:put("data", "/kept.txt")
  test.eq(r:soft_reset(), "soft reboot")
  test.eq(r:exec("print('keep' in globals())"), "False\n")
  test.eq(r:get("/kept.txt"), "data")
  r:close()
end, {timeout = 30})

test("friendly REPL line and interrupt to the prompt", function()
  local r = connect()
  test.eq(r:friendly("1+1"), "2\n")
  r:interrupt()
  test.eq(r:exec("print(3)"), "3\n", "raw REPL entered again after the friendly prompt")
  r:close()
end)

test("a byte corrupted on the way is caught by the device-side sha256", function()
  local r = connect("corrupt_at=1000")
  test.eq(r:put("old", "/bad.bin").mode, "binary", "short enough to arrive intact")
  local data = random_bytes(4096, 11)
  local ok, e = pcall(r.put, r, data, "/bad.bin")
  test.ok(not ok, "put raised")
  test.contains(tostring(e), "sha256 mismatch after writing 4096 bytes")
  test.ok(e.device_sha256 and e.device_sha256 ~= e.sha256, "both hashes reported")
  test.eq(r:get("/bad.bin"), "old", "the corrupted copy did not replace the file")
  test.eq(r:stat("/bad.bin.mpctl~"), nil, "the corrupted temporary file was removed")
  r:close()
end)

test("friendly lines after an interrupt see only their own output", function()
  local r = connect()
  r:interrupt()
  test.eq(r:friendly("print('x' * 3)"), "xxx\n")
  test.eq(r:friendly("6 * 7"), "42\n")
  r:close()
end)

test("raw-paste bytes on the wire match the repl.rst example", function()
  -- docs/reference/repl.rst: host \x01\x05A\x01print(123)\x04 ->
  -- device \r\nraw REPL; CTRL-B to exit\r\n>R\x01\x80\x00\x01\x04123\r\n\x04\x04>
  -- (stdout here is the WebAssembly port's, which ends lines with \n alone)
  local port = serial.open("sim://rawrepl")
  port:expect(">>> ", 10, true)
  port:write("\1")
  test.eq(port:read_until(">", 10), "\r\nraw REPL; CTRL-B to exit\r\n>")
  port:write("\5A\1")
  test.eq(port:read_exact(5, 10), "R\1\128\0\1")
  port:write("print(123)\4")
  test.eq(port:read_until("\4>", 10), "\4" .. "123\n\4\4>")
  port:close()
end)

test("compressible files: binary+deflate through the fixture", function()
  local r = connect()
  local t = {}
  for i = 1, 3000 do t[i] = "LED_PIN_" .. i .. " = const(" .. (i % 40) .. ")\n" end
  local text = table.concat(t)
  local s = r:put(text, "/consts.py")
  test.eq(s.mode, "binary+deflate")
  test.ok(s.wire_per_byte < 0.5, "wire bytes per byte: " .. s.wire_per_byte)
  test.eq(r:get("/consts.py"), text)
  test.eq(r:put(text, "/consts.py").status, "up to date")
  r:close()
end, {timeout = 60})
