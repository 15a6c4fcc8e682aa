-- mpctl.history: append with fsync, read back, filters, and a torn last line skipped with a warning.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local history = require("mpctl.history")

local dir = fs.tmpdir()

local function rec(port, device, version, result)
  return { board = "ESP32_GENERIC", chip = "ESP32", device = device, port = port, result = result or "ok",
    firmware = { version = version, sha256 = string.rep("a", 64), file = "x.bin", source = "https://example" },
    backup = { flash = "/tmp/b.bin" }, duration = 12.5 }
end

test("records round trip with time and mpctl version added", function()
  local o = { path = fs.join(dir, "h1", "history.jsonl") }
  history.record(rec("/dev/ttyUSB0", "aa:bb:cc:dd:ee:01", "1.23.0"), o)
  history.record(rec("/dev/ttyUSB1", "aa:bb:cc:dd:ee:02", "1.24.0"), o)
  history.record(rec("/dev/ttyUSB0", "aa:bb:cc:dd:ee:01", "1.24.1", "failed"), o)
  local all, warnings = history.read(o)
  test.eq(#all, 3)
  test.eq(#warnings, 0)
  test.eq(all[1].firmware.version, "1.23.0")
  test.eq(all[1].duration, 12.5)
  test.ok(all[1].time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), all[1].time)
  test.ok(type(all[1].mpctl) == "string", "mpctl version recorded")
  -- one JSON object per line
  local n = 0
  for _ in fs.read(o.path):gmatch("[^\n]+") do n = n + 1 end
  test.eq(n, 3)
end)

test("filters by port and device; last() skips failed flashes", function()
  local o = { path = fs.join(dir, "h1", "history.jsonl") }
  local p0 = history.read({ path = o.path, port = "/dev/ttyUSB0" })
  test.eq(#p0, 2)
  local d2 = history.read({ path = o.path, device = "aa:bb:cc:dd:ee:02" })
  test.eq(#d2, 1)
  test.eq(d2[1].port, "/dev/ttyUSB1")
  local last = history.last({ path = o.path, port = "/dev/ttyUSB0" })
  test.eq(last.firmware.version, "1.23.0", "the failed 1.24.1 flash is not a rollback target")
end)

test("a torn last line is skipped with a warning, and the next append starts a fresh line", function()
  local o = { path = fs.join(dir, "h2", "history.jsonl") }
  history.record(rec("/dev/ttyACM0", "id-1", "1.22.0"), o)
  history.record(rec("/dev/ttyACM0", "id-1", "1.23.0"), o)
  -- a crash in the middle of an append
  local f = assert(io.open(o.path, "ab"))
  f:write('{"board":"ESP32_GENERIC","firmware":{"vers')
  f:close()
  local all, warnings = history.read(o)
  test.eq(#all, 2)
  test.eq(#warnings, 1)
  test.contains(warnings[1], "history.jsonl:3")
  test.contains(warnings[1], "torn last line")
  history.record(rec("/dev/ttyACM0", "id-1", "1.24.0"), o)
  all, warnings = history.read(o)
  test.eq(#all, 3, "the record after the torn line survives")
  test.eq(all[3].firmware.version, "1.24.0")
  test.eq(#warnings, 1)
  test.contains(warnings[1], "not a JSON record")
end)

test("a valid JSON line with a field of an unexpected type is skipped with a warning, not fatal", function()
  local o = { path = fs.join(dir, "h3", "history.jsonl") }
  history.record(rec("/dev/ttyUSB0", "id-3", "1.22.0"), o)
  local f = assert(io.open(o.path, "ab"))
  f:write('{"board":"ESP32_GENERIC","result":"ok","duration":"12 s"}\n')
  f:write('{"board":"ESP32_GENERIC","result":"ok","firmware":{"version":1.24}}\n')
  f:write('{"board":"ESP32_GENERIC","result":"ok","firmware":"x.bin"}\n')
  f:write('[1,2,3]\n')
  f:close()
  history.record(rec("/dev/ttyUSB0", "id-3", "1.23.0"), o)
  local all, warnings = history.read(o)
  test.eq(#all, 2)
  test.eq({ all[1].firmware.version, all[2].firmware.version }, { "1.22.0", "1.23.0" })
  test.eq(#warnings, 4)
  test.contains(warnings[1], "history.jsonl:2: field duration is a string, not a number")
  test.contains(warnings[2], "history.jsonl:3: field firmware.version is a number, not a string")
  test.contains(warnings[3], "history.jsonl:4: field firmware is a string, not an object")
  test.contains(warnings[4], "history.jsonl:5: not a JSON record")
  -- every record left formats without error, and the stack only holds the valid ones
  for _, r in ipairs(all) do test.ok(history.format(r):find("ESP32_GENERIC", 1, true), "formats") end
  test.eq(#history.stack(o), 2)
end)

test("the mpctl history command lists the good lines and warns about a bad one (exit 0)", function()
  local exe = test.exe()
  if not exe then test.skip("needs the mpctl executable") end
  local o = { path = fs.join(dir, "h3", "history.jsonl") }
  local proc = require("mpctl.proc")
  local out, err = fs.join(dir, "out"), fs.join(dir, "err")
  local p = proc.spawn({ argv = { "/bin/sh", "-c", 'exec "$0" history file="$1" >"$2" 2>"$3"', exe, o.path, out, err },
    pty = false })
  local code = p:wait(60)
  p:close()
  test.eq(code, 0, fs.read(err))
  test.contains(fs.read(out), "1.22.0")
  test.contains(fs.read(out), "1.23.0")
  test.contains(fs.read(err), "field duration is a string, not a number")
end)

test("stack: flashes push, rollbacks pop, failed and interrupted attempts change nothing", function()
  local o = { path = fs.join(dir, "h4", "history.jsonl") }
  history.record(rec("/dev/ttyUSB0", "id-4", "1.22.0"), o)
  history.record(rec("/dev/ttyUSB0", "id-4", "1.23.0"), o)
  history.record(rec("/dev/ttyUSB0", "id-4", "1.24.0", "interrupted"), o)
  history.record(rec("/dev/ttyUSB0", "id-4", "1.24.1"), o)
  local r = rec("/dev/ttyUSB0", "id-4", "1.23.0")
  r.kind = "rollback"
  history.record(r, o)
  local stack, devices = history.stack(o)
  test.eq(#stack, 2)
  test.eq(stack[2].firmware.version, "1.23.0")
  test.eq(devices, { "id-4" })
  local line = history.format(history.read(o)[5])
  test.contains(line, "rollback")
end)

test("no history file reads as empty", function()
  local all, warnings = history.read({ path = fs.join(dir, "none.jsonl") })
  test.eq(#all, 0)
  test.eq(#warnings, 0)
end)

test("the default path is in the XDG state folder (or $MPCTL_HISTORY)", function()
  local p = history.path()
  if os.getenv("MPCTL_HISTORY") then
    test.eq(p, os.getenv("MPCTL_HISTORY"))
  else
    test.eq(p, fs.join(fs.xdg("state"), "history.jsonl"))
  end
end)

test("format gives one line with the essentials", function()
  local line = history.format(history.read({ path = fs.join(dir, "h1", "history.jsonl") })[1])
  test.contains(line, "ESP32_GENERIC")
  test.contains(line, "1.23.0")
  test.contains(line, "aaaaaaaaaaaa")
  test.ok(not line:find("\n"), "one line")
end)

test("cleanup", function() fs.remove(dir, { recursive = true }) end)
