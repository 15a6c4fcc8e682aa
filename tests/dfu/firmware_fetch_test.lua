-- `mpctl firmware fetch board=PYBV11` picks the .dfu (what pyboard_flash and dfu-util write) from
-- a micropython.org-shaped board page that offers .dfu and .hex, served over HTTP on 127.0.0.1
-- (tests/fixtures/firmware: the mirror folder and tests/fixtures/http_server.py).
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")

-- Only the board under test, in the given order of file types on its page: the first type is the
-- bold link, the others follow it as [.ext] links.
local function serve(types)
  S.BOARDS = { PYBV11 = { { version = "1.24.1", date = "20241129", types = types } } }
  local top = fs.tmpdir()
  local mirror = S.build_mirror(fs.join(top, "mirror"))
  local srv = S.start_server(mirror.dir, { logdir = top })
  local env = { MPCTL_MIRROR = srv.url, MPCTL_CACHE_DIR = fs.join(top, "cache"), MPCTL_HISTORY = fs.join(top, "history.jsonl"),
    MPCTL_FIRMWARE_LOCK = false, MPCTL_OFFLINE = false }
  return mirror, srv, env, top
end

for _, order in ipairs({ { "dfu", "hex" }, { "hex", "dfu" } }) do
  test("firmware fetch board=PYBV11 gives the .dfu when the page lists ." .. table.concat(order, " then ."), function()
    local mirror, srv, env, top = serve(order)
    local code, out, err = S.mpctl(test.exe(), { "--json", "firmware", "fetch", "board=PYBV11" }, env)
    srv.stop()
    test.eq(code, 0, "exit code; stderr: " .. err)
    local ev, path
    for line in out:gmatch("[^\n]+") do
      local ok, v = pcall(ui.json_decode, line)
      if ok and type(v) == "table" and v.event == "firmware_fetch" then ev = v end
    end
    test.ok(ev, "firmware_fetch event in: " .. out)
    test.eq(ev.type, "dfu", "file type")
    test.eq(ev.version, "1.24.1", "version")
    local want = mirror.files["PYBV11-20241129-v1.24.1.dfu"]
    test.eq(ev.sha256, want.sha256, "the .dfu's bytes")
    path = ev.path or ev.file
    if ev.path then test.eq(fs.read(ev.path), want.data, "the cached file holds the .dfu") end
    test.ok(path and path:match("%.dfu$"), "a .dfu file: " .. tostring(path))
    -- type=hex still gets the other file when asked for
    local code2, out2, err2 = S.mpctl(test.exe(), { "firmware", "fetch", "board=PYBV11", "type=hex", "mirror=" .. mirror.dir }, env)
    test.eq(code2, 0, "type=hex exit code; stderr: " .. err2)
    local hex = out2:match("([^\n]+)\n$")
    test.eq(fs.read(hex), mirror.files["PYBV11-20241129-v1.24.1.hex"].data, "type=hex gives the .hex")
    fs.remove(top, { recursive = true })
  end)
end
