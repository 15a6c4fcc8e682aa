-- `mpctl firmware fetch board=RPI_PICO` picks the .uf2 (what rp2_flash writes) from a
-- micropython.org-shaped board page that also offers the .elf, served over HTTP on 127.0.0.1
-- (tests/fixtures/firmware: the mirror folder and tests/fixtures/http_server.py); the Pico 2's
-- RISC-V variant is fetched with variant=RISCV.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")

local function serve(boards)
  S.BOARDS = boards
  local top = fs.tmpdir()
  local mirror = S.build_mirror(fs.join(top, "mirror"))
  local srv = S.start_server(mirror.dir, { logdir = top })
  local env = { MPCTL_MIRROR = srv.url, MPCTL_CACHE_DIR = fs.join(top, "cache"), MPCTL_HISTORY = fs.join(top, "history.jsonl"),
    MPCTL_FIRMWARE_LOCK = false, MPCTL_OFFLINE = false }
  return mirror, srv, env, top
end

local function fetch_event(out)
  for line in out:gmatch("[^\n]+") do
    local ok, v = pcall(ui.json_decode, line)
    if ok and type(v) == "table" and v.event == "firmware_fetch" then return v end
  end
end

for _, order in ipairs({ { "elf", "uf2" }, { "uf2", "elf" } }) do
  test("firmware fetch board=RPI_PICO gives the .uf2 when the page lists ." .. table.concat(order, " then ."), function()
    local mirror, srv, env, top = serve { RPI_PICO = { { version = "1.24.1", date = "20241129", types = order } } }
    local code, out, err = S.mpctl(test.exe(), { "--json", "firmware", "fetch", "board=RPI_PICO" }, env)
    srv.stop()
    test.eq(code, 0, "exit code; stderr: " .. err)
    local ev = fetch_event(out)
    test.ok(ev, "firmware_fetch event in: " .. out)
    test.eq(ev.type, "uf2", "file type")
    test.eq(ev.sha256, mirror.files["RPI_PICO-20241129-v1.24.1.uf2"].sha256, "the .uf2's bytes")
    fs.remove(top, { recursive = true })
  end)
end

test("firmware fetch board=RPI_PICO2 variant=RISCV gives the RISC-V .uf2", function()
  local mirror, srv, env, top = serve { RPI_PICO2 = {
    { version = "1.24.1", date = "20241129", types = { "uf2", "elf" } },
    { version = "1.24.1", date = "20241129", variant = "RISCV", types = { "uf2", "elf" } } } }
  local code, out, err = S.mpctl(test.exe(), { "--json", "firmware", "fetch", "board=RPI_PICO2", "variant=RISCV" }, env)
  srv.stop()
  test.eq(code, 0, "exit code; stderr: " .. err)
  local ev = fetch_event(out)
  test.ok(ev, "firmware_fetch event in: " .. out)
  test.eq(ev.type, "uf2", "file type")
  test.eq(ev.sha256, mirror.files["RPI_PICO2-RISCV-20241129-v1.24.1.uf2"].sha256, "the RISC-V variant's bytes")
  fs.remove(top, { recursive = true })
end)
