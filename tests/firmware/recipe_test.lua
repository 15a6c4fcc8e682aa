-- `mpctl firmware ...` and `mpctl history` as a person runs them: exit codes, stdout, stderr,
-- MPCTL_MIRROR, the lock file next to the team's recipes, offline use.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")

local exe = test.exe()
local top = fs.tmpdir()
local mirror = S.build_mirror(fs.join(top, "mirror"))
local srv = S.start_server(mirror.dir, { logdir = top })
local ENV = { MPCTL_MIRROR = srv.url, MPCTL_CACHE_DIR = fs.join(top, "cache"),
  MPCTL_HISTORY = fs.join(top, "history.jsonl"), MPCTL_FIRMWARE_LOCK = false, MPCTL_OFFLINE = false }

local function mpctl(args, env)
  local e = {}
  for k, v in pairs(ENV) do e[k] = v end
  for k, v in pairs(env or {}) do e[k] = v end
  return S.mpctl(exe, args, e)
end

test("firmware list shows versions, types and what is cached", function()
  local code, out, err = mpctl({ "firmware", "list", "board=ESP32_GENERIC" })
  test.eq(code, 0, err)
  test.contains(out, "ESP32_GENERIC at " .. srv.url)
  test.contains(out, "1.24.1")
  test.contains(out, "bin app-bin")
  test.contains(out, "(preview)")
  test.contains(out, "variants: D2WD, SPIRAM")
end)

test("firmware fetch prints the cached path; list then marks it cached", function()
  local code, out, err = mpctl({ "firmware", "fetch", "board=ESP32_GENERIC", "version=1.24.1" })
  test.eq(code, 0, err)
  local path = out:match("([^\n]+)\n$")
  test.eq(fs.read(path), mirror.files["ESP32_GENERIC-20241129-v1.24.1.bin"].data)
  test.contains(err, mirror.files["ESP32_GENERIC-20241129-v1.24.1.bin"].sha256)
  code, out = mpctl({ "firmware", "list", "board=ESP32_GENERIC" })
  test.eq(code, 0)
  test.ok(out:find("1.24.1%s+2024%-11%-29%s+bin%*"), out)
end)

test("firmware fetch --json gives one event with the file's facts", function()
  local code, out, err = mpctl({ "--json", "firmware", "fetch", "board=RPI_PICO" })
  test.eq(code, 0, err)
  local ev
  for line in out:gmatch("[^\n]+") do
    local ok, v = pcall(ui.json_decode, line)
    if ok and type(v) == "table" and v.event == "firmware_fetch" then ev = v end
  end
  test.ok(ev, "firmware_fetch event in: " .. out)
  test.eq(ev.version, "1.24.1")
  test.eq(ev.type, "uf2")
  test.eq(ev.sha256, mirror.files["RPI_PICO-20241129-v1.24.1.uf2"].sha256)
end)

test("a bad sha256= fails with exit 1 and both hashes", function()
  local code, _, err = mpctl({ "firmware", "fetch", "board=PYBV11", "sha256=" .. string.rep("0", 64) })
  test.eq(code, 1)
  test.contains(err, string.rep("0", 64))
  test.contains(err, mirror.files["PYBV11-20241129-v1.24.1.dfu"].sha256)
end)

test("pin writes firmware.lock in the team folder; a tampered mirror then fails", function()
  local team = fs.join(top, "team")
  fs.mkdir(team, { parents = true })
  local lock = fs.join(team, "firmware.lock")
  local code, _, err = mpctl({ "firmware", "pin", "board=ESP32_GENERIC_S3", "version=1.24.1", "lock=" .. lock })
  test.eq(code, 0, err)
  local l = ui.json_decode(fs.read(lock))
  test.eq(l.firmware[1].file, "ESP32_GENERIC_S3-20241129-v1.24.1.bin")
  local evil = S.build_mirror(fs.join(top, "evil"), { salt = "x" })
  code, _, err = mpctl({ "firmware", "fetch", "board=ESP32_GENERIC_S3", "version=1.24.1", "to=" .. team,
    "cache=" .. fs.join(top, "cache-evil") }, { MPCTL_MIRROR = evil.dir })
  test.eq(code, 1)
  test.contains(err, "mismatch")
  test.contains(err, l.firmware[1].sha256)
  test.ok(not fs.exists(fs.join(team, "ESP32_GENERIC_S3-20241129-v1.24.1.bin")), "nothing copied")
end)

test("pins made by several mpctl processes at once all land in the lock file", function()
  local proc = require("mpctl.proc")
  local lock = fs.join(top, "team-race", "firmware.lock")
  local want = { { "ESP32_GENERIC", "1.23.0" }, { "ESP32_GENERIC", "1.24.0" }, { "ESP32_GENERIC", "1.24.1" },
    { "RPI_PICO", "1.23.0" }, { "RPI_PICO", "1.24.1" }, { "PYBV11", "1.24.1" }, { "ESP32_GENERIC_S3", "1.24.1" } }
  local env = {}
  for k, v in pairs(ENV) do env[k] = v end
  env.MPCTL_MIRROR = mirror.dir -- a folder mirror: no server round trips, so the rewrites overlap
  local running = {}
  for i, w in ipairs(want) do
    running[i] = proc.spawn({ argv = { exe, "firmware", "pin", "board=" .. w[1], "version=" .. w[2], "lock=" .. lock,
      "cache=" .. fs.join(top, "cache-race") }, pty = false, stderr = "null", env = env })
  end
  for i, p in ipairs(running) do
    local code = p:wait(120)
    if code == nil then p:kill("KILL") p:wait(5) end
    p:close()
    test.eq(code, 0, "mpctl firmware pin " .. table.concat(want[i], " "))
  end
  local pinned = {}
  for _, p in ipairs(ui.json_decode(fs.read(lock)).firmware) do pinned[p.board .. " " .. p.version] = true end
  for _, w in ipairs(want) do test.ok(pinned[w[1] .. " " .. w[2]], "pin of " .. w[1] .. " " .. w[2] .. " kept") end
end)

test("offline=yes serves the cache, and says how to fetch when it has nothing", function()
  local code, out, err = mpctl({ "firmware", "fetch", "board=ESP32_GENERIC", "version=1.24.1", "offline=yes" },
    { MPCTL_MIRROR = "http://127.0.0.1:1" })
  test.eq(code, 0, err)
  test.ok(out:match("%.bin\n$"), out)
  code, out, err = mpctl({ "firmware", "fetch", "board=RPI_PICO", "version=1.23.0", "offline=yes" })
  test.eq(out, "", "nothing on stdout when nothing was fetched")
  test.eq(code, 1)
  test.contains(err, "mpctl firmware fetch board=RPI_PICO version=1.23.0")
end)

test("identify and fetch --port ask the device (real MicroPython behind sim://micropython)", function()
  local code, out, err = mpctl({ "firmware", "identify", "--port", "sim://micropython" })
  test.eq(code, 1, err) -- the WebAssembly port has no board id
  test.contains(out, "sim://micropython: unknown board  MicroPython ")
  test.contains(out, "Emscripten")
  code, out, err = mpctl({ "firmware", "fetch", "--port", "sim://micropython" })
  test.eq(code, 1)
  test.eq(out, "")
  test.contains(err, "cannot map to a board id; give board=ID")
end)

test("usage errors exit 2", function()
  local code, _, err = mpctl({ "firmware", "fetch" })
  test.eq(code, 2)
  test.contains(err, "board=ID")
  code, _, err = mpctl({ "firmware", "frobnicate", "board=X" })
  test.eq(code, 2)
  test.contains(err, "unknown firmware command")
end)

test("firmware cache lists what was downloaded", function()
  local code, out = mpctl({ "firmware", "cache" })
  test.eq(code, 0)
  test.contains(out, "ESP32_GENERIC-20241129-v1.24.1.bin")
  test.contains(out, "RPI_PICO-20241129-v1.24.1.uf2")
end)

test("history shows records, filters by port, and survives a torn line", function()
  local h = require("mpctl.history")
  local o = { path = ENV.MPCTL_HISTORY }
  h.record({ board = "ESP32_GENERIC", device = "24:0a:c4:00:00:01", port = "/dev/ttyUSB0", result = "ok",
    firmware = { version = "1.24.1", sha256 = string.rep("b", 64) }, duration = 30.2 }, o)
  h.record({ board = "RPI_PICO", device = "e66038b7", port = "/dev/ttyACM0", result = "failed",
    firmware = { version = "1.23.0", sha256 = string.rep("c", 64) }, duration = 3 }, o)
  local f = assert(io.open(o.path, "ab"))
  f:write('{"board": "ESP32_GEN')
  f:close()
  local code, out, err = mpctl({ "history" })
  test.eq(code, 0, err)
  test.contains(out, "ESP32_GENERIC")
  test.contains(out, "RPI_PICO")
  test.contains(err, "torn last line")
  code, out = mpctl({ "history", "--port", "/dev/ttyACM0" })
  test.eq(code, 0)
  test.ok(not out:find("ESP32_GENERIC", 1, true), out)
  code, out = mpctl({ "--json", "history", "--device", "24:0a:c4:00:00:01" })
  test.eq(code, 0)
  local n = 0
  for line in out:gmatch("[^\n]+") do
    local ok, v = pcall(ui.json_decode, line)
    if ok and type(v) == "table" and v.board then
      n = n + 1
      test.eq(v.device, "24:0a:c4:00:00:01")
    end
  end
  test.eq(n, 1)
end)

test("the proxy comes from the environment (http_proxy)", function()
  -- The test server answers absolute-URI requests too, so it can stand in for a proxy; the
  -- mirror's host name does not resolve, so only the proxy can get the page.
  local code, out, err = mpctl({ "firmware", "list", "board=RPI_PICO", "mirror=http://mirror.invalid" },
    { http_proxy = srv.url, HTTP_PROXY = srv.url, no_proxy = false, NO_PROXY = false })
  test.eq(code, 0, err)
  test.contains(out, "RPI_PICO at http://mirror.invalid")
  test.ok(srv.count("http://mirror.invalid/download/RPI_PICO/") >= 1, "the request went through the proxy")
end)

test("list falls back to the board page cached earlier when the source is down (no crash on its time)", function()
  local s2 = S.start_server(mirror.dir, { logdir = fs.tmpdir() })
  local env = { MPCTL_MIRROR = s2.url, MPCTL_CACHE_DIR = fs.join(top, "cache-down") }
  local code, out, err = mpctl({ "firmware", "list", "board=RPI_PICO" }, env)
  test.eq(code, 0, err)
  s2.stop()
  code, out, err = mpctl({ "firmware", "list", "board=RPI_PICO", "retries=0" }, env)
  test.eq(code, 0, err)
  test.ok(out:find("offline: board page cached %d%d%d%d%-%d%d%-%d%d %d%d:%d%d"), out)
  test.contains(out, "1.24.1")
  test.contains(err, "using the board page cached earlier")
end)

test("list offline=yes makes no network request", function()
  local env = { MPCTL_CACHE_DIR = fs.join(top, "cache-offline-list") }
  local code, _, err = mpctl({ "firmware", "fetch", "board=ESP32_GENERIC", "version=1.24.0" }, env)
  test.eq(code, 0, err)
  local before = #srv.requests()
  local out
  code, out, err = mpctl({ "firmware", "list", "board=ESP32_GENERIC", "offline=yes" }, env)
  test.eq(code, 0, err)
  test.eq(#srv.requests(), before, "requests to the mirror during list offline=yes")
  test.contains(out, "offline: board page cached")
  test.ok(out:find("1.24.0%s+2024%-10%-25%s+bin%*"), out)
  -- with no page cached either, the cached files themselves are listed
  code, out, err = mpctl({ "firmware", "list", "board=ESP32_GENERIC", "offline=yes" },
    { MPCTL_CACHE_DIR = env.MPCTL_CACHE_DIR, MPCTL_MIRROR = srv.url .. "/other" })
  test.eq(code, 0, err)
  test.eq(#srv.requests(), before)
  test.contains(out, "offline: what the cache holds")
  test.ok(out:find("1.24.0%s+2024%-10%-25%s+bin%*"), out)
  test.ok(not out:find("1.24.1", 1, true), out)
end)

test("list variant=SPIRAM shows only SPIRAM builds", function()
  local code, out, err = mpctl({ "firmware", "list", "board=ESP32_GENERIC", "variant=SPIRAM" })
  test.eq(code, 0, err)
  test.contains(out, "ESP32_GENERIC-SPIRAM at")
  test.ok(out:find("1.24.1%s+2024%-11%-29%s+bin app%-bin\n"), out)
  for _, other in ipairs({ "1.24.0", "1.23.0", "preview" }) do
    test.ok(not out:find(other, 1, true), "no " .. other .. " (it has no SPIRAM build): " .. out)
  end
  code, out = mpctl({ "--json", "firmware", "list", "board=ESP32_GENERIC", "variant=SPIRAM" })
  test.eq(code, 0)
  local n = 0
  for line in out:gmatch("[^\n]+") do
    local ev = ui.json_decode(line)
    if ev.event == "firmware" then
      n = n + 1
      for _, f in ipairs(ev.files) do test.contains(f.file, "ESP32_GENERIC-SPIRAM-") end
    end
  end
  test.eq(n, 1)
end)

test("an unknown board fails (exit 1) and names the closest ids, from a server and from a folder mirror", function()
  for _, source in ipairs({ srv.url, mirror.dir }) do
    local code, out, err = mpctl({ "firmware", "list", "board=ESP32_GENRIC" }, { MPCTL_MIRROR = source })
    test.eq(code, 1, source .. ": " .. out .. err)
    test.contains(err, "no board ESP32_GENRIC at " .. source)
    test.contains(err, "closest board ids: ESP32_GENERIC")
    code, out, err = mpctl({ "firmware", "fetch", "board=RPI_PICOO" }, { MPCTL_MIRROR = source })
    test.eq(code, 1, source)
    test.eq(out, "")
    test.contains(err, "closest board ids: RPI_PICO")
  end
end)

test("a hung server: every retry is shown with its reason, then the cache; an exact cached version never asks", function()
  local env = { MPCTL_CACHE_DIR = fs.join(top, "cache-hung") }
  local code, _, err = mpctl({ "firmware", "fetch", "board=RPI_PICO", "version=1.24.1" }, env)
  test.eq(code, 0, err)
  -- /_stall/0/ answers with headers and then nothing, for every request
  env.MPCTL_MIRROR = srv.url .. "/_stall/0"
  local before = srv.count("/_stall/0/")
  local out
  code, out, err = mpctl({ "firmware", "fetch", "board=RPI_PICO", "version=1.24.1" }, env)
  test.eq(code, 0, err)
  test.ok(out:match("%.uf2\n$"), out)
  test.eq(srv.count("/_stall/0/"), before, "no request for a version already in the cache")
  -- refresh=yes asks; latest must ask: both see the hung server, say so per attempt, then use the cache
  for _, args in ipairs({ { "version=1.24.1", "refresh=yes" }, { "version=latest" } }) do
    code, out, err = mpctl({ "firmware", "fetch", "board=RPI_PICO", "stall=1", "retries=1", table.unpack(args) }, env)
    test.eq(code, 0, err)
    test.contains(err, "board page RPI_PICO: stalled: no data for 1")
    test.contains(err, "; attempt 1 of 2 failed, trying again in")
    test.contains(err, "using cached RPI_PICO-20241129-v1.24.1.uf2")
    test.ok(out:match("%.uf2\n$"), out)
  end
  test.eq(srv.count("/_stall/0/download/RPI_PICO/"), before + 4, "two attempts per run")
end)

test("Ctrl-C during fetch: exit 130, the bytes so far kept as .part, and the rerun resumes them", function()
  local proc = require("mpctl.proc")
  local time = require("mpctl.time")
  local cache = fs.join(top, "cache-int")
  local file = "ESP32_GENERIC-20240602-v1.23.0.app-bin"
  local d = fs.tmpdir()
  local env = {}
  for k, v in pairs(ENV) do env[k] = v end
  -- firmware files send 6000 bytes, then nothing (the server stalls requests without a Range)
  env.MPCTL_MIRROR, env.MPCTL_CACHE_DIR = srv.url .. "/_stallfiles/6000", cache
  local cmd = string.format("exec '%s' firmware fetch board=ESP32_GENERIC version=1.23.0 type=app-bin >'%s' 2>'%s'",
    exe, fs.join(d, "out"), fs.join(d, "err"))
  local p = proc.spawn({ argv = { "/bin/sh", "-c", cmd }, pty = false, env = env })
  local partial = fs.join(cache, "partial")
  local deadline, got = time.now() + 60, 0
  while time.now() < deadline and got < 6000 do
    time.sleep(0.05)
    for _, name in ipairs(fs.exists(partial) and fs.list(partial) or {}) do
      if name:sub(1, #file) == file and name:match("%.part%.%d+%-%d+$") then got = (fs.stat(fs.join(partial, name)) or { size = 0 }).size end
    end
  end
  test.eq(got, 6000, "the first 6000 bytes arrived")
  p:kill("INT")
  local code = p:wait(30)
  if code == nil then p:kill("KILL") p:wait(5) end
  p:close()
  local out, err = fs.read(fs.join(d, "out")), fs.read(fs.join(d, "err"))
  fs.remove(d, { recursive = true })
  test.eq(code, 130, err)
  test.eq(out, "", "nothing on stdout: nothing was fetched")
  test.contains(err, "kept 6000 bytes of " .. file)
  test.contains(err, "interrupted")
  test.eq(fs.stat(fs.join(partial, file .. ".part")).size, 6000, "the partial file is there for the rerun")
  for _, name in ipairs(fs.list(partial)) do test.ok(not name:match("%.part%.%d+%-%d+$"), "no stray claimed file " .. name) end
  -- the rerun asks for the rest only, and the result is the whole file
  local e2 = { MPCTL_MIRROR = env.MPCTL_MIRROR, MPCTL_CACHE_DIR = cache }
  local c2, o2, err2 = mpctl({ "firmware", "fetch", "board=ESP32_GENERIC", "version=1.23.0", "type=app-bin" }, e2)
  test.eq(c2, 0, err2)
  test.eq(fs.read((o2:gsub("\n$", ""))), mirror.files[file].data)
  local ranged
  for _, q in ipairs(srv.requests()) do
    if q.path:find("_stallfiles/6000/resources/firmware/" .. file, 1, true) and q.range == "bytes=6000-" then ranged = q end
  end
  test.ok(ranged and ranged.status == 206, "resumed with a Range from byte 6000")
end)

test("esp32_flash firmware=: a FIFO, /dev/zero and a file bigger than the flash are refused at once", function()
  local proc = require("mpctl.proc")
  local d = fs.tmpdir()
  local fifo = fs.join(d, "fw.bin")
  local p = proc.spawn({ argv = { "mkfifo", fifo }, pty = false })
  test.eq(p:wait(10), 0, "mkfifo")
  p:close()
  local big = fs.join(d, "big.bin")
  local f = assert(io.open(big, "wb"))
  f:write(string.rep("\255", 1024 * 1024))
  f:seek("set", 17 * 1024 * 1024) -- a sparse 17 MB file: more than ESP32_GENERIC's largest flash (16 MB)
  f:write("x")
  f:close()
  for path, want in pairs({ [fifo] = "is not a regular file", ["/dev/zero"] = "is not a regular file",
    [big] = "more than the 16 MB flash" }) do
    local code, out, err = mpctl({ "esp32_flash", "--port", "sim://esp32", "firmware=" .. path })
    test.eq(code, 1, path .. ": " .. out .. err)
    test.contains(err, want, path)
  end
  fs.remove(d, { recursive = true })
end)

test("--json: every firmware command writes JSON lines only on stdout", function()
  local env = { MPCTL_CACHE_DIR = fs.join(top, "cache-json") }
  for _, args in ipairs({ { "list", "board=ESP32_GENERIC" }, { "fetch", "board=RPI_PICO", "version=1.24.1" },
    { "pin", "board=RPI_PICO", "version=1.24.1", "lock=" .. fs.join(top, "json.lock") }, { "cache" },
    { "list", "board=ESP32_GENERIC", "offline=yes" }, { "list", "board=NO_SUCH" } }) do
    local code, out, err = mpctl({ "--json", "firmware", table.unpack(args) }, env)
    local what = table.concat(args, " ")
    test.eq(code, args[2] == "board=NO_SUCH" and 1 or 0, what .. ": " .. err)
    local n = 0
    for line in out:gmatch("[^\n]*\n?") do
      if line ~= "" then
        n = n + 1
        local ok, v = pcall(ui.json_decode, line)
        test.ok(ok and type(v) == "table" and v.event, what .. ": not a JSON event line: " .. line)
      end
    end
    test.ok(n > 0, what .. ": some event")
  end
end)

test("cleanup", function()
  srv.stop()
  fs.remove(top, { recursive = true })
end)
