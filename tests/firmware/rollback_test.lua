-- Backup then rollback on sim://esp32, end to end through the recipes: flash image A, flash image
-- B with backup=, `mpctl rollback` brings A back (from the flash backup); without a backup the
-- previous firmware comes from the firmware cache by its SHA-256; the history records it all.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local imagegen = require("mpctl.esp.imagegen")
local history = require("mpctl.history")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local S = dofile(here .. "/../fixtures/firmware/support.lua")

local exe = test.exe()
local top = fs.tmpdir()
local hist = fs.join(top, "history.jsonl")
local cache = fs.join(top, "cache")
local ENV = { MPCTL_HISTORY = hist, MPCTL_CACHE_DIR = cache, MPCTL_BACKUP_DIR = fs.join(top, "backups"),
  MPCTL_MIRROR = false, MPCTL_FIRMWARE_LOCK = false, MPCTL_OFFLINE = false }
local OFFSET = 0x1000 -- ESP32_GENERIC

local A = imagegen.generate({ chip = "esp32", size = 256 * 1024, seed = 11 })
local B = imagegen.generate({ chip = "esp32", size = 256 * 1024, seed = 22 })
local a_path, b_path = fs.join(top, "A.bin"), fs.join(top, "B.bin")
fs.write(a_path, A)
fs.write(b_path, B)

local function mpctl(args)
  local code, out, err = S.mpctl(exe, args, ENV)
  return code, out, err
end

local function sim(flash_file)
  return "sim://esp32?timing=off&app=none&flash_size=2MB&flash_file=" .. flash_file
end

local function flash_at(file, offset, n)
  return fs.read(file):sub(offset + 1, offset + n)
end

-- A team mirror (a folder) holding A as 1.24.0 and B as 1.24.1; flashes 1.24.0 then `second`
-- through it (version= goes through the firmware cache). Returns the mirror's folder.
local function flash_two_versions(port, name, second)
  local mirror = fs.join(top, name)
  fs.mkdir(fs.join(mirror, "resources", "firmware"), { parents = true })
  fs.write(fs.join(mirror, "resources", "firmware", "ESP32_GENERIC-20241025-v1.24.0.bin"), A)
  fs.write(fs.join(mirror, "resources", "firmware", "ESP32_GENERIC-20241129-v1.24.1.bin"), B)
  ENV.MPCTL_MIRROR = mirror
  local code, _, err = mpctl({ "esp32_flash", "--port", port, "version=1.24.0", "repl=no" })
  test.eq(code, 0, err)
  code, _, err = mpctl({ "esp32_flash", "--port", port, "--board", "ESP32_GENERIC", "version=" .. second, "repl=no" })
  ENV.MPCTL_MIRROR = false
  test.eq(code, 0, err)
  return mirror
end

test("flash A, flash B with a flash backup, roll back: A is on the board again", function()
  local board = fs.join(top, "board1.bin")
  local port = sim(board)
  local code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. a_path, "repl=no" })
  test.eq(code, 0, err)
  test.eq(flash_at(board, OFFSET, #A), A)
  local bk = fs.join(top, "before-B.bin")
  code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. b_path, "repl=no", "backup=" .. bk })
  test.eq(code, 0, err)
  test.eq(flash_at(board, OFFSET, #B), B)
  test.eq(fs.read(bk):sub(OFFSET + 1, OFFSET + #A), A, "the backup holds A")

  code, _, err = mpctl({ "rollback", "--port", port })
  test.eq(code, 0, err)
  test.eq(flash_at(board, OFFSET, #A), A, "A is back")
  test.eq(fs.read(board), fs.read(bk), "the whole flash equals the backup")
  test.contains(err, "matches the backup")

  local recs = history.read({ path = hist, port = port })
  test.eq(#recs, 3)
  test.eq(recs[3].kind, "rollback")
  test.eq(recs[3].result, "ok")
  test.eq(recs[3].rollback_of, recs[2].time)
  test.eq(recs[3].firmware.sha256, hash.hex(hash.sha256(A)))
  test.eq(recs[3].device, recs[1].device)
end)

test("version= flashes go through the firmware cache, and rollback takes the previous one from it", function()
  local board = fs.join(top, "board2.bin")
  local port = sim(board)
  local mirror = flash_two_versions(port, "mirror", "latest")
  test.eq(flash_at(board, OFFSET, #B), B)
  local recs = history.read({ path = hist, port = port })
  test.eq({ recs[1].firmware.version, recs[2].firmware.version }, { "1.24.0", "1.24.1" })
  test.eq(recs[2].firmware.sha256, hash.hex(hash.sha256(B)))
  -- the mirror goes away; the cache still has 1.24.0 under its hash
  fs.remove(mirror, { recursive = true })
  local code, _, err = mpctl({ "rollback", "--port", port })
  test.eq(code, 0, err)
  test.contains(err, fs.join(cache, "objects", hash.hex(hash.sha256(A)) .. ".bin"))
  test.eq(flash_at(board, OFFSET, #A), A)
  recs = history.read({ path = hist, port = port })
  test.eq(recs[3].firmware.version, "1.24.0")
  test.eq(recs[3].source, "firmware cache")
  -- a second rollback has nothing left to go back to (the stack is down to the first flash)
  code, _, err = mpctl({ "rollback", "--port", port })
  test.eq(code, 1)
  test.contains(err, "first one recorded")
end)

test("a damaged cached copy of the previous firmware is not written back", function()
  local board = fs.join(top, "board4.bin")
  local port = sim(board)
  local mirror = flash_two_versions(port, "mirror4", "1.24.1")
  fs.remove(mirror, { recursive = true })
  -- the cached A rots on disk: same name and size, other bytes
  local a_obj = fs.join(cache, "objects", hash.hex(hash.sha256(A)) .. ".bin")
  fs.write(a_obj, string.rep("\0", #A))
  local code, _, err = mpctl({ "rollback", "--port", port })
  test.eq(code, 1)
  test.contains(err, "not in the cache")
  test.eq(flash_at(board, OFFSET, #B), B, "the board still runs B")
  test.ok(not fs.exists(a_obj), "the damaged copy was removed")
end)

test("a rollback that fails after connecting is recorded as failed, and pops nothing", function()
  local board = fs.join(top, "board5.bin")
  local port = sim(board)
  local code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. a_path, "repl=no" })
  test.eq(code, 0, err)
  local bk = fs.join(top, "before-B5.bin")
  code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. b_path, "repl=no", "backup=" .. bk })
  test.eq(code, 0, err)
  -- the flash of B claims a files backup too; the simulated chip runs no MicroPython to restore it to
  local recs = history.read({ path = hist, port = port })
  local last = recs[#recs]
  last.line = nil
  last.backup.files = top
  local f = assert(io.open(hist, "ab"))
  f:write(require("mpctl.ui").json_encode(last), "\n")
  f:close()
  code, _, err = mpctl({ "rollback", "--port", port, "timeout=1" })
  test.eq(code, 1, err)
  recs = history.read({ path = hist, port = port })
  test.eq(#recs, 4)
  test.eq({ recs[4].kind, recs[4].result }, { "rollback", "failed" })
  test.ok(type(recs[4].error) == "string" and recs[4].error ~= "", "the error is recorded")
  test.eq(recs[4].rollback_of, last.time)
end)

test("rollback refuses a different board, and says so when nothing was recorded", function()
  local board = fs.join(top, "board3.bin")
  local port = sim(board)
  local code, _, err = mpctl({ "rollback", "--port", port })
  test.eq(code, 1)
  test.contains(err, "nothing to roll back")
  code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. a_path, "repl=no",
    "backup=" .. fs.join(top, "b3.bin") })
  test.eq(code, 0, err)
  -- the same port now answers with another MAC
  local other = port .. "&mac=aa:bb:cc:dd:ee:ff"
  local recs = history.read({ path = hist, port = port })
  local f = assert(io.open(hist, "ab"))
  local line = require("mpctl.ui").json_encode({ board = "ESP32_GENERIC", port = other, device = recs[#recs].device,
    result = "ok", backup = { flash = fs.join(top, "b3.bin") }, firmware = recs[#recs].firmware })
  f:write(line, "\n")
  f:close()
  code, _, err = mpctl({ "rollback", "--port", other })
  test.eq(code, 1)
  test.contains(err, "aa:bb:cc:dd:ee:ff")
  test.contains(err, "force=yes")
end)

-- mpctl run in a given folder (the history must not depend on where a command ran).
local function mpctl_in(cwd, args)
  local dir = fs.tmpdir()
  local out, err = fs.join(dir, "out"), fs.join(dir, "err")
  local sh = { "cd '" .. cwd .. "' && exec" }
  for _, a in ipairs({ exe, table.unpack(args) }) do sh[#sh + 1] = "'" .. tostring(a):gsub("'", "'\\''") .. "'" end
  local proc = require("mpctl.proc")
  local p = proc.spawn({ argv = { "/bin/sh", "-c", table.concat(sh, " ") .. " >'" .. out .. "' 2>'" .. err .. "'" },
    pty = false, env = ENV })
  local code = p:wait(120)
  if code == nil then p:kill("KILL") p:wait(5) end
  p:close()
  local o, e = fs.read(out), fs.read(err)
  fs.remove(dir, { recursive = true })
  return code, o, e
end

test("firmware= given relative to one folder; rollback from another finds it by its absolute path", function()
  local board = fs.join(top, "board6.bin")
  local port = sim(board)
  local here_dir, there = fs.join(top, "work"), fs.join(top, "elsewhere")
  fs.mkdir(here_dir, { parents = true })
  fs.mkdir(there, { parents = true })
  local name = "ESP32_GENERIC-20241025-v1.24.0.bin" -- a release file's name carries its version
  fs.write(fs.join(here_dir, name), A)
  local code, _, err = mpctl_in(here_dir, { "esp32_flash", "--port", port, "firmware=" .. name, "repl=no" })
  test.eq(code, 0, err)
  code, _, err = mpctl_in(here_dir, { "esp32_flash", "--port", port, "firmware=../B.bin", "repl=no" })
  test.eq(code, 0, err)
  local recs = history.read({ path = hist, port = port })
  test.eq(recs[1].firmware.path, fs.realpath(fs.join(here_dir, name)), "absolute path recorded")
  test.eq(recs[1].firmware.version, "1.24.0", "version from the release file's name")
  test.eq(recs[2].firmware.path, fs.realpath(b_path))
  code, _, err = mpctl_in(there, { "rollback", "--port", port })
  test.eq(code, 0, err)
  test.eq(flash_at(board, OFFSET, #A), A, "A is back")
  test.contains(err, "to MicroPython 1.24.0", "the final message names the version restored")
  local out
  code, out, err = mpctl_in(there, { "history", "--port", port })
  test.eq(code, 0, err)
  local last = out:match("([^\n]+)\n$")
  test.contains(last, " rollback ")
  test.contains(last, "1.24.0")
  test.contains(last, "rollback of " .. recs[2].time)
end)

test("backup=all on a board without MicroPython: the flash is kept, the files are said to be unsaved, the flash goes on",
  function()
  local board = fs.join(top, "board7.bin")
  local port = sim(board) -- app=none: whatever is on flash, no MicroPython answers
  local code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. a_path, "repl=no" })
  test.eq(code, 0, err)
  local before = fs.read(board)
  code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. b_path, "repl=no", "backup=all", "timeout=1" })
  test.eq(code, 0, err)
  test.contains(err, "files could not be saved")
  test.eq(flash_at(board, OFFSET, #B), B, "B was written")
  local recs = history.read({ path = hist, port = port })
  local bk = recs[#recs].backup
  test.ok(type(bk) == "table" and bk.flash and fs.exists(fs.join(bk.flash, "flash.json")), "flash backup folder recorded")
  test.eq(bk.files, nil, "no files backup claimed")
  test.ok(type(bk.files_skipped) == "string", "why the files were not saved is recorded")
  code, _, err = mpctl({ "rollback", "--port", port })
  test.eq(code, 0, err)
  test.eq(fs.read(board), before, "the whole flash is as it was before B")
  -- backup=files alone insists: without the files there is no backup at all, so nothing is written
  code, _, err = mpctl({ "esp32_flash", "--port", port, "firmware=" .. b_path, "repl=no", "backup=files", "timeout=1" })
  test.eq(code, 1, err)
  test.contains(err, "backup of the board's files")
  test.eq(fs.read(board), before, "nothing written")
end)

test("rollback without --port is a usage error", function()
  local code, _, err = mpctl({ "rollback" })
  test.eq(code, 2)
  test.contains(err, "--port")
end)

test("cleanup", function() fs.remove(top, { recursive = true }) end)
