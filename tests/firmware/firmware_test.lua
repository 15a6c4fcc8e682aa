-- mpctl.firmware: names and versions, the catalog from a micropython.org-shaped mirror served
-- over HTTP, fetch by version/latest/type/variant, the content-addressed cache, SHA-256 checks,
-- the lock file (trust on first use), offline use, local folder mirrors, identify, bundles.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local hash = require("mpctl.hash")
local firmware = require("mpctl.firmware")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")

local top = fs.tmpdir()
local mirror = S.build_mirror(fs.join(top, "mirror"))
local srv = S.start_server(mirror.dir, { logdir = top })
local n_cache = 0

-- Every test gets its own cache and lock unless it says otherwise.
local function opts(extra)
  n_cache = n_cache + 1
  local o = { source = srv.url, cache_dir = fs.join(top, "cache" .. n_cache), progress = false,
    backoff = 0.05, connect_timeout = 5, stall_timeout = 5, lock = fs.join(top, "no-such-dir", "none.lock") }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

test("file names parse into board, variant, date, version and type", function()
  local e = firmware.parse_name("ESP32_GENERIC-SPIRAM-20241129-v1.24.1.app-bin", "ESP32_GENERIC")
  test.eq({ e.board, e.variant, e.date, e.version, e.type, e.preview },
    { "ESP32_GENERIC", "SPIRAM", "20241129", "1.24.1", "app-bin", false })
  e = firmware.parse_name("RPI_PICO_W-20240531-v1.24.0-preview.10.gc1a6b95bf.uf2", "RPI_PICO_W")
  test.eq({ e.variant, e.version, e.type, e.preview }, { nil, "1.24.0-preview.10.gc1a6b95bf", "uf2", true })
  test.eq(firmware.parse_name("ESP32_GENERIC-20241129-v1.24.1.elf", "ESP32_GENERIC"), nil, ".elf is not firmware")
  test.eq(firmware.parse_name("ESP32_GENERIC_S3-20241129-v1.24.1.bin", "ESP32_GENERIC"), nil, "another board")
  test.eq(firmware.parse_name("notes.txt", "ESP32_GENERIC"), nil)
end)

test("versions order previews before their release", function()
  local v = firmware.parse_version
  test.ok(firmware.version_less(v("1.24.0-preview.109.gfce3cea24"), v("1.24.0")))
  test.ok(firmware.version_less(v("1.23.0"), v("1.24.0-preview.1.gaaaa")))
  test.ok(firmware.version_less(v("1.24.0-preview.9.g1"), v("1.24.0-preview.10.g2")))
  test.ok(not firmware.version_less(v("1.24.1"), v("1.24.0")))
  test.eq(v("v1.20"), { 1, 20, 0, text = "1.20" })
  test.eq(v("banana"), nil)
end)

test("the catalog lists every build on the board page, newest first, on the mirror's host", function()
  local entries, info = firmware.catalog("ESP32_GENERIC", opts())
  test.eq(info.source, srv.url)
  test.eq(entries[1].version, "1.25.0-preview.52.gabcdef0123")
  local n, files = 0, {}
  for _, e in ipairs(entries) do
    n = n + 1
    files[e.file] = e
    test.ok(e.url:sub(1, #srv.url) == srv.url, "URL on the mirror: " .. e.url)
  end
  -- 3 releases x (bin, app-bin) + SPIRAM (2) + D2WD (1) + 2 previews x 2 = 13 (no .elf/.map)
  test.eq(n, 13)
  test.ok(files["ESP32_GENERIC-20241129-v1.24.1.app-bin"], "single-quoted absolute href parsed")
  test.eq(files["ESP32_GENERIC-D2WD-20241129-v1.24.1.bin"].variant, "D2WD")
end)

test("select: latest release, preview, exact version, file type by port, variant", function()
  local entries = firmware.catalog("ESP32_GENERIC", opts())
  test.eq(firmware.select(entries, "latest").file, "ESP32_GENERIC-20241129-v1.24.1.bin")
  test.eq(firmware.select(entries, "preview").file, "ESP32_GENERIC-20250115-v1.25.0-preview.52.gabcdef0123.bin")
  test.eq(firmware.select(entries, "1.24.0").file, "ESP32_GENERIC-20241025-v1.24.0.bin")
  test.eq(firmware.select(entries, "v1.24.0").file, "ESP32_GENERIC-20241025-v1.24.0.bin")
  test.eq(firmware.select(entries, "1.24.1", { type = "app-bin" }).file, "ESP32_GENERIC-20241129-v1.24.1.app-bin")
  test.eq(firmware.select(entries, "latest", { variant = "SPIRAM" }).file, "ESP32_GENERIC-SPIRAM-20241129-v1.24.1.bin")
  local e, why = firmware.select(entries, "1.99.0")
  test.eq(e, nil)
  test.contains(why, "no version 1.99.0; available: 1.25.0-preview.52")
  e, why = firmware.select(entries, "1.24.1", { type = "uf2" })
  test.eq(e, nil)
  test.contains(why, "has no .uf2 file (has: app-bin, bin)")
  local pico = firmware.catalog("RPI_PICO", opts())
  test.eq(firmware.select(pico, "latest").type, "uf2")
  local pyb = firmware.catalog("PYBV11", opts())
  test.eq(firmware.select(pyb, "latest").type, "dfu")
end)

test("an unknown board is a clear error", function()
  test.raises(function() firmware.catalog("NO_SUCH_BOARD", opts()) end, "no board NO_SUCH_BOARD at " .. srv.url)
end)

test("fetch latest downloads, verifies and stores by content, with a JSON sidecar", function()
  local o = opts()
  local img = firmware.fetch("ESP32_GENERIC", "latest", o)
  local want = mirror.files["ESP32_GENERIC-20241129-v1.24.1.bin"]
  test.eq(img.sha256, want.sha256)
  test.eq(img.size, want.size)
  test.eq(img.version, "1.24.1")
  test.eq(img.cached, false)
  test.eq(fs.read(img.path), want.data)
  test.eq(fs.basename(img.path), want.sha256 .. ".bin", "content-addressed name")
  local side = ui.json_decode(fs.read(fs.join(fs.dirname(img.path), want.sha256 .. ".json")))
  test.eq(side.board, "ESP32_GENERIC")
  test.eq(side.version, "1.24.1")
  test.eq(side.size, want.size)
  test.eq(side.sha256, want.sha256)
  test.eq(side.url, srv.url .. "/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.bin")
  test.ok(side.time:match("^%d%d%d%d%-%d%d%-%d%dT"), side.time)
  test.eq(#fs.list(fs.join(o.cache_dir, "partial")), 0, "no partial file left")

  -- A second fetch is served from the cache: the page is read, the file is not.
  local before = srv.count("ESP32_GENERIC-20241129-v1.24.1.bin")
  local again = firmware.fetch("ESP32_GENERIC", "1.24.1", o)
  test.eq(again.cached, true)
  test.eq(again.sha256, want.sha256)
  test.eq(srv.count("ESP32_GENERIC-20241129-v1.24.1.bin"), before)
end)

test("fetch by version, type and variant", function()
  local o = opts()
  local img = firmware.fetch("ESP32_GENERIC", "1.24.0", o)
  test.eq(img.file, "ESP32_GENERIC-20241025-v1.24.0.bin")
  img = firmware.fetch("ESP32_GENERIC", "1.24.1", opts({ type = "app-bin", cache_dir = o.cache_dir }))
  test.eq(img.sha256, mirror.files["ESP32_GENERIC-20241129-v1.24.1.app-bin"].sha256)
  img = firmware.fetch("ESP32_GENERIC", "latest", opts({ variant = "SPIRAM", cache_dir = o.cache_dir }))
  test.eq(img.file, "ESP32_GENERIC-SPIRAM-20241129-v1.24.1.bin")
  test.eq(#firmware.cached(o), 3)
end)

test("sha256= that does not match keeps nothing and shows both hashes", function()
  local o = opts()
  local wrong = string.rep("ab", 32)
  local msg = test.raises(function()
    firmware.fetch("RPI_PICO", "1.24.1", opts({ cache_dir = o.cache_dir, sha256 = wrong }))
  end, "SHA-256")
  test.contains(msg, wrong)
  test.contains(msg, mirror.files["RPI_PICO-20241129-v1.24.1.uf2"].sha256)
  test.eq(#firmware.cached(o), 0, "nothing in the cache")
  local partial = fs.join(o.cache_dir, "partial")
  test.ok(not fs.exists(partial) or #fs.list(partial) == 0, "no partial file kept")
  -- and the right hash passes
  local good = mirror.files["RPI_PICO-20241129-v1.24.1.uf2"].sha256
  local img = firmware.fetch("RPI_PICO", "1.24.1", opts({ cache_dir = o.cache_dir, sha256 = good:upper() }))
  test.eq(img.sha256, good)
end)

test("a malformed sha256= is a usage error", function()
  test.raises(function() firmware.fetch("RPI_PICO", "1.24.1", opts({ sha256 = "xyz" })) end, "64 hex digits")
end)

test("a download cut mid-file is resumed on the next run", function()
  local o = opts()
  local file = "ESP32_GENERIC-20241025-v1.24.0.app-bin"
  local want = mirror.files[file]
  -- An earlier run left the first 5000 bytes and the server's validator.
  local partial = fs.join(o.cache_dir, "partial")
  fs.mkdir(partial, { parents = true })
  fs.write(fs.join(partial, file .. ".part"), want.data:sub(1, 5000))
  local etag = '"' .. want.sha256:sub(1, 16) .. '"' -- the test server's ETag
  local url = srv.url .. "/resources/firmware/" .. file
  fs.write(fs.join(partial, file .. ".part.json"), ui.json_encode({ url = url, etag = etag }))
  local img = firmware.fetch("ESP32_GENERIC", "1.24.0", opts({ cache_dir = o.cache_dir, type = "app-bin" }))
  test.eq(img.sha256, want.sha256)
  local ranged
  for _, q in ipairs(srv.requests()) do
    if q.path == "/resources/firmware/" .. file and q.range == "bytes=5000-" then ranged = q end
  end
  test.ok(ranged and ranged.status == 206, "asked for the rest with a Range")
end)

test("pin records board, version, file, size and SHA-256 in a lock file", function()
  local lock = fs.join(top, "team", "firmware.lock")
  local img = firmware.pin("ESP32_GENERIC", "1.24.1", opts({ lock = lock }))
  test.eq(img.pinned, true)
  test.eq(img.newly_pinned, true)
  local l = ui.json_decode(fs.read(lock))
  test.eq(#l.firmware, 1)
  local p = l.firmware[1]
  test.eq({ p.board, p.version, p.type, p.file, p.size, p.sha256 }, { "ESP32_GENERIC", "1.24.1", "bin",
    "ESP32_GENERIC-20241129-v1.24.1.bin", img.size, img.sha256 })
  -- pinning again changes nothing (same text, so git sees no diff)
  local text = fs.read(lock)
  firmware.pin("ESP32_GENERIC", "1.24.1", opts({ lock = lock }))
  test.eq(fs.read(lock), text)
  -- another board is added beside it
  firmware.pin("RPI_PICO", "latest", opts({ lock = lock }))
  test.eq(#ui.json_decode(fs.read(lock)).firmware, 2)
end)

test("a mirror serving other bytes than the lock pins fails loudly and keeps nothing", function()
  local lock = fs.join(top, "team2", "firmware.lock")
  local first = firmware.pin("ESP32_GENERIC", "1.24.1", opts({ lock = lock }))
  local evil = S.build_mirror(fs.join(top, "evil-mirror"), { salt = "tampered" })
  local evil_srv = S.start_server(evil.dir, { logdir = fs.join(top, "evil-mirror") })
  local o = opts({ lock = lock, source = evil_srv.url })
  local msg = test.raises(function() firmware.fetch("ESP32_GENERIC", "1.24.1", o) end, "mismatch")
  test.contains(msg, first.sha256)
  test.contains(msg, evil.files["ESP32_GENERIC-20241129-v1.24.1.bin"].sha256)
  test.contains(msg, "locked in " .. lock)
  test.eq(#firmware.cached(o), 0)
  -- the same bytes from a local folder mirror pass
  local img = firmware.fetch("ESP32_GENERIC", "1.24.1", opts({ lock = lock, source = mirror.dir }))
  test.eq(img.sha256, first.sha256)
  evil_srv.stop()
end)

test("a new pin waits for the lock file's mutex, and says where it is when it is never released", function()
  local lock = fs.join(top, "team-mutex", "firmware.lock")
  firmware.pin("RPI_PICO", "1.23.0", opts({ lock = lock }))
  local text = fs.read(lock)
  local mutex = fs.join(top, "team-mutex", ".firmware.lock.lck")
  fs.mkdir(mutex) -- as if another mpctl were rewriting the lock file right now
  local msg = test.raises(function()
    firmware.pin("RPI_PICO", "1.24.1", opts({ lock = lock, lock_wait = 0.2 }))
  end, "another mpctl has been changing it")
  test.contains(msg, mutex)
  test.eq(fs.read(lock), text, "the lock file was not touched")
  -- a pin already in the file needs no mutex
  test.eq(firmware.pin("RPI_PICO", "1.23.0", opts({ lock = lock, lock_wait = 0.2 })).newly_pinned, false)
  fs.remove(mutex)
  test.eq(firmware.pin("RPI_PICO", "1.24.1", opts({ lock = lock })).newly_pinned, true)
  test.eq(#ui.json_decode(fs.read(lock)).firmware, 2)
  test.ok(not fs.exists(mutex), "the mutex is released")
end)

test("a lock file in the to= folder is used and extended (trust on first use)", function()
  local team = fs.join(top, "team3")
  fs.mkdir(team, { parents = true })
  firmware.lock_write(fs.join(team, "firmware.lock"), { version = 1, firmware = ui.array({}) })
  local o = opts({ to = team })
  o.lock = nil
  local img = firmware.fetch("RPI_PICO", "1.23.0", o)
  test.eq(img.lock, fs.join(team, "firmware.lock"))
  test.eq(img.newly_pinned, true)
  test.eq(fs.read(fs.join(team, img.file)), mirror.files[img.file].data, "copy in the folder")
  local l = ui.json_decode(fs.read(fs.join(team, "firmware.lock")))
  test.eq(l.firmware[1].sha256, img.sha256)
end)

test("a damaged cache entry is not served", function()
  local o = opts()
  local img = firmware.fetch("RPI_PICO", "1.24.1", o)
  fs.write(img.path, "garbage")
  local again = firmware.fetch("RPI_PICO", "1.24.1", o)
  test.eq(again.cached, false, "downloaded again")
  test.eq(fs.read(again.path), mirror.files[again.file].data)
end)

test("offline: served from the cache, and a clear message when nothing is cached", function()
  local o = opts()
  firmware.fetch("ESP32_GENERIC", "1.24.0", o)
  firmware.fetch("ESP32_GENERIC", "1.23.0", opts({ cache_dir = o.cache_dir }))
  local off = opts({ cache_dir = o.cache_dir, offline = true, source = "http://127.0.0.1:1" })
  local img = firmware.fetch("ESP32_GENERIC", "latest", off)
  test.eq(img.version, "1.24.0", "newest cached release")
  test.eq(img.cached, true)
  test.eq(firmware.fetch("ESP32_GENERIC", "1.23.0", off).version, "1.23.0")
  local msg = test.raises(function() firmware.fetch("RPI_PICO", "latest", off) end, "no cached firmware for RPI_PICO")
  test.contains(msg, "mpctl firmware fetch board=RPI_PICO version=latest")
  -- an unreachable source falls back to the cache by itself
  local down = opts({ cache_dir = o.cache_dir, source = "http://127.0.0.1:1", retries = 0 })
  test.eq(firmware.fetch("ESP32_GENERIC", "1.24.0", down).version, "1.24.0")
  msg = test.raises(function() firmware.fetch("PYBV11", "latest", down) end, "source unreachable")
  test.contains(msg, "no cached firmware for PYBV11")
end)

test("offline: sha256= is checked against the cached file, and to= gets its copy", function()
  local o = opts()
  local want = mirror.files["RPI_PICO-20241129-v1.24.1.uf2"]
  firmware.fetch("RPI_PICO", "1.24.1", o)
  local off = opts({ cache_dir = o.cache_dir, offline = true, source = "http://127.0.0.1:1" })
  local wrong = string.rep("cd", 32)
  off.sha256 = wrong
  local msg = test.raises(function() firmware.fetch("RPI_PICO", "1.24.1", off) end, "does not match sha256=")
  test.contains(msg, wrong)
  test.contains(msg, want.sha256)
  off.sha256 = want.sha256
  off.to = fs.join(top, "offline-to")
  local img = firmware.fetch("RPI_PICO", "1.24.1", off)
  test.eq(img.copy, fs.join(off.to, "RPI_PICO-20241129-v1.24.1.uf2"))
  test.eq(fs.read(img.copy), want.data)
end)

test("offline: among cached files of one version the port's file type wins", function()
  local o = opts()
  firmware.fetch("ESP32_GENERIC", "1.24.1", opts({ cache_dir = o.cache_dir, type = "app-bin" }))
  firmware.fetch("ESP32_GENERIC", "1.24.1", opts({ cache_dir = o.cache_dir }))
  firmware.fetch("ESP32_GENERIC", "1.24.0", opts({ cache_dir = o.cache_dir, type = "app-bin" }))
  local off = opts({ cache_dir = o.cache_dir, offline = true })
  for _, version in ipairs({ "1.24.1", "latest" }) do
    local img = firmware.fetch("ESP32_GENERIC", version, off)
    test.eq({ img.version, img.type }, { "1.24.1", "bin" }, "offline " .. version)
  end
  off.type = "app-bin"
  test.eq(firmware.fetch("ESP32_GENERIC", "latest", off).file, "ESP32_GENERIC-20241129-v1.24.1.app-bin")
end)

test("the board page cached earlier lets the catalog work when the source is down", function()
  local s2 = S.start_server(mirror.dir, { logdir = fs.tmpdir() })
  local o = opts({ source = s2.url, retries = 0 })
  local entries, info = firmware.catalog("RPI_PICO", o)
  test.ok(not info.from_cache)
  s2.stop()
  entries, info = firmware.catalog("RPI_PICO", o)
  test.eq(info.from_cache, true)
  test.contains(info.error, "Couldn't connect")
  test.eq(#entries, 2)
  test.eq(entries[1].url, s2.url .. "/resources/firmware/RPI_PICO-20241129-v1.24.1.uf2")
end)

test("a local folder mirror works without a server", function()
  local img = firmware.fetch("PYBV11", "1.24.1", opts({ source = mirror.dir }))
  test.eq(img.type, "dfu")
  test.eq(img.sha256, mirror.files["PYBV11-20241129-v1.24.1.dfu"].sha256)
  -- and without board pages: the files folder alone
  local bare = fs.join(top, "bare")
  fs.mkdir(fs.join(bare, "resources", "firmware"), { parents = true })
  for _, name in ipairs({ "RPI_PICO-20241129-v1.24.1.uf2", "RPI_PICO-20240602-v1.23.0.uf2" }) do
    fs.write(fs.join(bare, "resources", "firmware", name), mirror.files[name].data)
  end
  local entries = firmware.catalog("RPI_PICO", opts({ source = bare }))
  test.eq(#entries, 2)
  test.eq(firmware.fetch("RPI_PICO", "latest", opts({ source = "file://" .. bare })).version, "1.24.1")
end)

test("MPCTL_MIRROR-free defaults point at micropython.org", function()
  local src = firmware.source({})
  if os.getenv("MPCTL_MIRROR") then test.skip("MPCTL_MIRROR is set") end
  test.eq(src.base, "https://micropython.org")
end)

test("get(): board tables, version strings that look like file names, and local files", function()
  local o = opts()
  local img = firmware.get({ id = "ESP32_GENERIC", firmware = { ext = "app-bin" } }, "1.25.0-preview.52.gabcdef0123", o)
  test.eq(img.file, "ESP32_GENERIC-20250115-v1.25.0-preview.52.gabcdef0123.app-bin")
  local loc = firmware.get("ESP32_GENERIC", img.path)
  test.eq(loc.sha256, img.sha256)
  test.eq(loc.version, "local")
  test.raises(function() firmware.get("ESP32_GENERIC", "./nope.bin") end, "does not exist")
  test.raises(function() firmware.get("ESP32_GENERIC", "nope.uf2") end, "does not exist")
end)

test("identify: _build on 1.25+, machine names on older firmware", function()
  local id = firmware.identify_info({ version = "1.25.0", build = "ESP32_GENERIC-SPIRAM",
    machine = "Generic ESP32 module with SPIRAM with ESP32",
    uname = { version = "v1.25.0 on 2025-04-15", machine = "Generic ESP32 module with SPIRAM with ESP32" } })
  test.eq({ id.board, id.variant, id.version, id.how }, { "ESP32_GENERIC", "SPIRAM", "1.25.0", "sys.implementation._build" })
  id = firmware.identify_info({ version = "1.22.2", build = "", machine = "Raspberry Pi Pico W with RP2040",
    uname = { version = "v1.22.2 on 2024-02-22" } })
  test.eq({ id.board, id.variant, id.version, id.how }, { "RPI_PICO_W", nil, "1.22.2", "machine name" })
  id = firmware.identify_info({ version = "1.24.0-preview", machine = "ESP module (1M) with ESP8266",
    uname = { version = "v1.24.0-preview.109.gfce3cea24 on 2024-07-18" } })
  test.eq({ id.board, id.variant, id.version }, { "ESP8266_GENERIC", "FLASH_1M", "1.24.0-preview.109.gfce3cea24" })
  test.eq(firmware.board_from_machine("Generic ESP32 module with ESP32"), "ESP32_GENERIC")
  test.eq(firmware.board_from_machine("PYBv1.1 with STM32F405RG"), "PYBV11")
  test.eq(firmware.board_from_machine("Some custom board with ESP32"), nil)
end)

test("board files say their machine name and MicroPython port; a new board file is known at once", function()
  local board = require("mpctl.board")
  local d = fs.tmpdir()
  fs.mkdir(fs.join(d, "boards"), { parents = true })
  fs.write(fs.join(d, "boards", "ACME_WIDGET.lua"), 'return { id = "ACME_WIDGET", family = "esp", chip = "esp32s3", ' ..
    'offset = 0, mpy_port = "esp32", machine = "ACME Widget", machine_variants = { ["SPIRAM"] = "SPIRAM" } }')
  local old = board.dirs
  board.dirs = function() local t = old() table.insert(t, 1, fs.join(d, "boards")) return t end
  local ok, err = pcall(function()
    test.eq({ firmware.board_from_machine("ACME Widget with SPIRAM with ESP32S3") }, { "ACME_WIDGET", "SPIRAM" })
    test.eq(firmware.port_of("ACME_WIDGET"), "esp32")
    test.eq(firmware.type_order("ACME_WIDGET")[1], "bin")
    test.eq(firmware.board_from_machine("Generic ESP32S3 module with ESP32S3"), "ESP32_GENERIC_S3", "from boards/")
    test.eq(firmware.port_of("RPI_PICO2_W"), "rp2", "a board without a file: mpctl.board.KNOWN")
  end)
  board.dirs = old
  fs.remove(d, { recursive = true })
  if not ok then error(err, 0) end
end)

test("an HTTPS mirror with a private CA: ca_file trusts it; otherwise refused, with no silent cache fallback", function()
  local ca = S.make_ca(fs.tmpdir())
  local tls = S.start_server(mirror.dir, { tls = ca, logdir = fs.tmpdir() })
  local o = opts({ source = tls.url, ca_file = ca.ca })
  local img = firmware.fetch("RPI_PICO", "latest", o)
  test.eq(img.sha256, mirror.files["RPI_PICO-20241129-v1.24.1.uf2"].sha256)
  -- now cached; a TLS failure must still be reported, not papered over with the cache
  local msg = test.raises(function()
    firmware.fetch("RPI_PICO", "latest", opts({ source = tls.url, cache_dir = o.cache_dir, retries = 0 }))
  end, tls.url)
  test.ok(msg:find("SSL") or msg:lower():find("certificate"), msg)
  tls.stop()
end)

test("a connection cut mid-download is resumed in the same fetch", function()
  local o = opts({ source = srv.url .. "/_cutfiles/20000" })
  local img = firmware.fetch("ESP32_GENERIC", "1.23.0", o)
  test.eq(img.sha256, mirror.files["ESP32_GENERIC-20240602-v1.23.0.bin"].sha256)
  local ranged = false
  for _, q in ipairs(srv.requests()) do
    if q.path:find("/_cutfiles/20000/resources/firmware/ESP32_GENERIC-20240602-v1.23.0.bin", 1, true)
        and q.range == "bytes=20000-" and q.status == 206 then
      ranged = true
    end
  end
  test.ok(ranged, "the rest was asked for with a Range")
end)

test("a stalled mirror hits the stall timeout and leaves the partial file for a resume", function()
  -- pages load, firmware files send 3000 bytes and then nothing
  local o = opts({ source = srv.url .. "/_stallfiles/3000", stall_timeout = 1, retries = 0 })
  local msg = test.raises(function() firmware.fetch("ESP32_GENERIC", "1.24.1", o) end, "stalled")
  test.contains(msg, "ESP32_GENERIC-20241129-v1.24.1.bin")
  local part = fs.join(o.cache_dir, "partial", "ESP32_GENERIC-20241129-v1.24.1.bin.part")
  test.eq(fs.stat(part).size, 3000)
  test.eq(#firmware.cached(o), 0)
  -- the next run continues from byte 3000 (the server stalls only requests without a Range)
  local img = firmware.fetch("ESP32_GENERIC", "1.24.1", o)
  test.eq(img.sha256, mirror.files["ESP32_GENERIC-20241129-v1.24.1.bin"].sha256)
  local ranged
  for _, q in ipairs(srv.requests()) do
    if q.path:find("_stallfiles/3000/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.bin", 1, true) and q.range then
      ranged = q
    end
  end
  test.ok(ranged and ranged.range == "bytes=3000-" and ranged.status == 206, "resumed with a Range")
  test.eq(#fs.list(fs.join(o.cache_dir, "partial")), 0, "nothing left in partial/")
end)

test("firmware files: only regular files are read, bounded by the flash; a FIFO or /dev/zero is refused at once", function()
  local errors = require("mpctl.errors")
  local proc = require("mpctl.proc")
  local d = fs.tmpdir()
  local fifo = fs.join(d, "fw.bin")
  local p = proc.spawn({ argv = { "mkfifo", fifo }, pty = false })
  test.eq(p:wait(10), 0, "mkfifo")
  p:close()
  for _, path in ipairs({ fifo, "/dev/zero", d }) do
    local ok, e = pcall(firmware.load_file, path)
    test.eq(ok, false, path)
    test.eq(errors.kind(e), "refused", path)
    test.contains(tostring(e), "mpctl reads only regular files", path)
    -- the way recipes come to it: get() with a path, then parts()
    test.raises(function() firmware.get("ESP32_GENERIC", path) end, "regular files")
    test.raises(function() firmware.parts(path, { offset = 0x1000 }) end, "regular files")
  end
  local big = fs.join(d, "big.bin")
  fs.write(big, string.rep("\233", 5000))
  local ok, e = pcall(firmware.load_file, big, { max = 4096 })
  test.eq({ ok, errors.kind(e) }, { false, "refused" })
  test.contains(tostring(e), "5000 bytes, more than the 4 KB flash")
  test.eq(#firmware.load_file(big, { max = 5000 }), 5000)
  -- a board file's largest flash bounds get() and parts()
  local tiny = { id = "ESP32_GENERIC", offset = 0x1000, flash_sizes = { "4KB" } }
  test.raises(function() firmware.get(tiny, big) end, "more than the 4 KB flash")
  test.raises(function() firmware.parts(big, tiny) end, "more than the 4 KB flash")
  test.raises(function() firmware.load_file(fs.join(d, "nope.bin")) end, "does not exist")
  fs.remove(d, { recursive = true })
end)

test("firmware=- reads standard input, up to the limit", function()
  local d = fs.tmpdir()
  local script = fs.join(d, "read_stdin.lua")
  fs.write(script, 'local ok, e = pcall(require("mpctl.firmware").load_file, "-", { max = 100000 })\n' ..
    'if ok then print("read " .. #e) else print(require("mpctl.errors").kind(e) .. ": " .. tostring(e)) end\n')
  fs.write(fs.join(d, "small.bin"), string.rep("x", 1234))
  local function run(input)
    local code, out = S.mpctl("/bin/sh", { "-c", "exec '" .. test.exe() .. "' --allow-exec '" .. script .. "' < " .. input })
    test.eq(code, 0)
    return out
  end
  test.eq(run(fs.join(d, "small.bin")), "read 1234\n")
  local out = run("/dev/zero") -- endless: refused after max+1 bytes, not read forever
  test.contains(out, "refused: standard input: firmware is more than 100000 bytes")
  fs.remove(d, { recursive = true })
end)

test("cleanup", function()
  srv.stop()
  fs.remove(top, { recursive = true })
end)
