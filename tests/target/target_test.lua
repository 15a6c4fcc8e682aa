-- The target interface (mpctl.target): drivers are found and checked for every operation; the esp
-- driver on the ESP simulator does what the interface promises; the flash recipe built on it says
-- a skipped check is skipped and records every attempt in the history, whatever way it ends.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local hash = require("mpctl.hash")
local target = require("mpctl.target")
local imagegen = require("mpctl.esp.imagegen")
local history = require("mpctl.history")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")

local KB = 1024
local top = fs.tmpdir()
local IMG = imagegen.generate { chip = "esp32", size = 96 * KB, seed = 5 }

local function sim(name, extra)
  return "sim://esp32?timing=off&app=none&flash_size=2MB&flash_file=" .. fs.join(top, name) .. (extra or "")
end

local function kind_of(f)
  local ok, e = pcall(f)
  test.ok(not ok, "raised")
  return target.kind(e), target.text(e)
end

test("driver(family) finds and checks a driver; an unknown family is unsupported", function()
  local d = target.driver("esp")
  test.eq(d.family, "esp")
  test.eq(type(d.connect), "function")
  local kind, msg = kind_of(function() target.driver("z80") end)
  test.eq(kind, "unsupported")
  test.contains(msg, "z80")
  -- dfu and rp2: either a complete driver or a clear "not implemented yet", never a Lua crash
  for _, fam in ipairs { "dfu", "rp2" } do
    local ok, got = pcall(target.driver, fam)
    if ok then
      test.eq(got.family, fam)
    else
      test.eq(target.kind(got), "unsupported", target.text(got))
    end
  end
end)

test("check() names every operation a target lacks", function()
  local t = { family = "x", board = { id = "B" } }
  for _, op in ipairs(target.OPERATIONS) do t[op] = function() end end
  test.eq(target.check(t), t)
  t.read, t.reset_to_app = nil, nil
  local kind, msg = kind_of(function() target.check(t) end)
  test.eq(kind, "internal")
  test.contains(msg, "read")
  test.contains(msg, "reset_to_app")
end)

test("esp driver on sim://esp32: identify, refuse before erasing, write, read back, skip, erase, reset", function()
  local board = require("mpctl.board").load("ESP32_GENERIC")
  local url = sim("t1.bin")
  local t <close> = target.connect(board, url, { baud = 921600 })
  local info = t:identify()
  test.eq(info.chip, "ESP32")
  test.eq(info.flash_size, 2 * 1024 * KB)
  test.eq(info.flash_base, 0)
  test.ok(type(info.id) == "string" and info.id:match("^%x%x:%x%x:%x%x:%x%x:%x%x:%x%x$"), "MAC as id: " .. tostring(info.id))
  -- a C3 image and an oversize part are refused with kind "refused", nothing written
  local c3 = imagegen.generate { chip = "esp32c3", size = 32 * KB }
  test.eq((kind_of(function() t:check_image({ { offset = 0x1000, data = c3, name = "c3.bin" } }) end)), "refused")
  test.eq((kind_of(function() t:check_image({ { offset = 0x1F0000, data = IMG, name = "big" } }) end)), "refused")
  local bundle_part = { offset = 0x1000, data = IMG, name = "app", chip = "esp32s3" }
  local kind, msg = kind_of(function() t:check_image({ bundle_part }) end)
  test.eq(kind, "refused")
  test.contains(msg, "built for esp32s3")
  test.eq(t:read(0x1000, 16), string.rep("\255", 16), "nothing was written")

  local parts = { { offset = 0x1000, data = IMG, name = "image" } }
  t:check_image(parts)
  local st = t:write(parts, { verify = true })
  test.eq(st.verified, true)
  test.ok(not st.verify_skipped, "verified, not skipped")
  test.eq(st.raw, #IMG)
  test.eq(t:read(0x1000, #IMG), IMG)
  -- the same again: nothing to write; verify=false says it was skipped
  st = t:write(parts, { verify = false })
  test.eq(st.written, 0)
  test.eq({ st.verified, st.verify_skipped, st.verify_why }, { false, true, "verify=no" })
  t:erase(0x1000, 0x1000)
  test.eq(t:read(0x1000, 16), string.rep("\255", 16))
  local app = t:reset_to_app()
  test.eq(app:baud(), 115200, "the port is back at the app's rate")
end)

local function mpctl(args, env)
  local e = { MPCTL_HISTORY = fs.join(top, "history.jsonl"), MPCTL_BACKUP_DIR = fs.join(top, "backups") }
  for k, v in pairs(env or {}) do e[k] = v end
  return S.mpctl(test.exe(), args, e)
end

test("verify=no and repl=no: the skipped checks say skipped, never ok (text and --json)", function()
  if not test.exe() then test.skip("needs the mpctl executable") end
  local img = fs.join(top, "fw.bin")
  fs.write(img, IMG)
  local url = sim("t2.bin")
  local code, out, err = mpctl({ "esp32_flash", "--port", url, "firmware=" .. img, "--repl=no", "--verify=no" })
  test.eq(code, 0, err)
  local all = out .. err
  test.contains(all, "skipped: MD5 check (verify=no)")
  test.contains(all, "skipped: REPL answers print('hello') (repl=no)")
  test.ok(not all:find("ok: flash MD5", 1, true), "no ok for an MD5 not asked for:\n" .. all)
  code, out, err = mpctl({ "--json", "esp32_flash", "--port", url, "firmware=" .. img, "--repl=no", "--verify=no" })
  test.eq(code, 0, err)
  local checks = {}
  for line in out:gmatch("[^\n]+") do
    local ok, v = pcall(ui.json_decode, line)
    if ok and type(v) == "table" and v.event == "check" then checks[v.name] = v end
  end
  test.eq(checks["MD5 check"] and checks["MD5 check"].skipped, true, "check event skipped: " .. out)
  test.eq(checks["MD5 check"].ok, nil, "a skipped check has no ok")
  test.eq(checks["MD5 check"].why, "verify=no")
  -- verified by default: the ok check is there
  code, out, err = mpctl({ "esp32_flash", "--port", url, "firmware=" .. img, "--repl=no" })
  test.eq(code, 0, err)
  test.contains(out .. err, "ok: flash MD5 matches the image")
  -- the ESP8266 ROM loader cannot hash: the MD5 check is skipped and says why, it is not "ok"
  code, out, err = mpctl({ "esp8266_flash", "--port", "sim://esp8266?timing=off&app=none&flash_file=" ..
    fs.join(top, "t2-8266.bin"), "firmware=demo", "--repl=no", "stub=no" })
  test.eq(code, 0, err)
  test.contains(out .. err, "skipped: MD5 check (the ESP8266 ROM loader cannot compute an MD5)")
  test.ok(not (out .. err):find("ok: flash MD5", 1, true), "no ok for an MD5 the loader cannot make")
end)

test("every attempt is in the history: ok, and a refused image as failed with its kind", function()
  if not test.exe() then test.skip("needs the mpctl executable") end
  local hist = fs.join(top, "h3.jsonl")
  local url = sim("t3.bin")
  local c3 = fs.join(top, "c3.bin")
  fs.write(c3, imagegen.generate { chip = "esp32c3", size = 32 * KB })
  local code, _, err = mpctl({ "esp32_flash", "--port", url, "firmware=" .. c3, "--repl=no" }, { MPCTL_HISTORY = hist })
  test.eq(code, 1, err)
  test.contains(err, "built for ESP32-C3")
  code, _, err = mpctl({ "esp32_flash", "--port", url, "firmware=demo", "--repl=no" }, { MPCTL_HISTORY = hist })
  test.eq(code, 0, err)
  local recs = history.read({ path = hist })
  test.eq(#recs, 2)
  test.eq({ recs[1].result, recs[1].error_kind }, { "failed", "refused" })
  test.contains(recs[1].error, "built for ESP32-C3")
  test.eq(recs[1].firmware.sha256, hash.file(c3, "sha256"))
  test.eq(recs[2].result, "ok")
  test.eq(recs[2].family, "esp")
  test.ok(type(recs[2].duration) == "number" and recs[2].duration > 0, "duration recorded")
  test.ok(recs[2].device and recs[2].device == recs[1].device, "device recorded in both")
end)

test("cleanup", function() fs.remove(top, { recursive = true }) end)
