--- Undo the last flash of a board: write back its flash backup or the firmware it ran before (from the cache, by history), restore its files, verify.
-- @option device: TEXT; the device (MAC or unique id) when the port's history holds several boards
-- @option files: yes|no = yes; restore the board's files when a files backup exists
-- @option force: yes|no = no; write even when the board's MAC differs from the history's
-- @option reset: classic|usb-jtag|none; how to enter the bootloader (default: from the board file)
-- @option stub: FILE|no; a flasher stub JSON, or no for ROM-only mode
-- @option history: FILE; history file (default $MPCTL_HISTORY or ~/.local/state/mpctl/history.jsonl)
-- @option timeout: seconds = 10; how long to wait for the REPL after reset, for the files
--
--   mpctl rollback --port /dev/ttyUSB0
--   mpctl rollback --port /dev/ttyUSB0 device=24:0a:c4:12:34:56
-- What the board ran is read from `mpctl history`: flashes push, rollbacks pop. The flash backup
-- taken before the last flash (backup=) is preferred, since it also holds the filesystem;
-- otherwise the previous firmware is taken from the firmware cache by its SHA-256.

local fs, time, hash = mpctl.fs, mpctl.time, mpctl.hash
local history, backup, firmware = mpctl.history, require("mpctl.backup"), mpctl.firmware
local t0 = time.now()

local yes = mpctl.yes

if not arg.port then mpctl.usage_error("rollback needs --port PORT (the board to roll back)") end
local device = arg.device
if device == true then device = arg[1] end
local hopts = { path = arg.history, port = arg.port, device = device }

-- The stack of firmware the board has run, from its history.
local recs = history.read(hopts)
local stack = {}
local devices = {}
for _, r in ipairs(recs) do
  if r.result == "ok" then
    if r.device then devices[r.device] = true end
    if r.kind == "rollback" then
      stack[#stack] = nil
    else
      stack[#stack + 1] = r
    end
  end
end
if not device then
  local list = {}
  for d in pairs(devices) do list[#list + 1] = d end
  if #list > 1 then
    table.sort(list)
    mpctl.usage_error("the history of " .. arg.port .. " holds several boards (" .. table.concat(list, ", ") ..
      "): give device=ID")
  end
end
local undo = stack[#stack]
if not undo then
  mpctl.fail("nothing to roll back on " .. arg.port .. (device and (" for " .. device) or "") ..
    ": no successful flash recorded in " .. history.path(hopts))
end
local before = stack[#stack - 1]

-- What to write: the flash backup taken before `undo`, else the firmware `before` recorded.
local flash_backup = type(undo.backup) == "table" and undo.backup.flash
if flash_backup and not fs.exists(flash_backup) then
  mpctl.warn("the flash backup %s recorded for the flash of %s is gone", flash_backup, undo.time or "?")
  flash_backup = nil
end
local image
local function find_image(fwrec)
  if type(fwrec) ~= "table" or type(fwrec.sha256) ~= "string" then return nil end
  -- cached_by_sha256 hashes the cached file again: a damaged copy would pass the MD5 check
  -- after writing (the chip is compared with the bytes read, not with the recorded hash).
  local cached = firmware.cached_by_sha256(fwrec.sha256)
  if cached then return cached end
  for _, p in ipairs({ fwrec.path, fwrec.file }) do
    if type(p) == "string" and fs.exists(p) and hash.file(p, "sha256") == fwrec.sha256 then return p end
  end
end
if not flash_backup then
  if not before then
    mpctl.fail(string.format("the flash of %s on %s is the first one recorded and no flash backup was taken " ..
      "(backup= when flashing); nothing to roll back to", undo.time or "?", arg.port))
  end
  image = find_image(before.firmware)
  if not image then
    local fw = before.firmware or {}
    mpctl.fail(string.format("the previous firmware (%s %s, sha256 %s) is not in the cache; fetch it with: " ..
      "mpctl firmware fetch board=%s version=%s", before.board or "?", fw.version or "?", fw.sha256 or "?",
      before.board or "ID", fw.version or "X.Y.Z"))
  end
end

-- The board: from the history, --board, or asked of the device while its MicroPython still runs.
local board_id = undo.board or arg.board
if not board_id then
  local ok, id = pcall(function()
    local p <close> = mpctl.open_port(arg)
    local r = mpctl.repl.attach(p, { timeout = 5 })
    local got = firmware.identify(r)
    r:close()
    return got
  end)
  board_id = ok and id.board or nil
  if not board_id then
    mpctl.usage_error("the history does not say which board is on " .. arg.port .. " and the device did not tell; " ..
      "give --board ID")
  end
end
local board = mpctl.board(board_id)
if board.family ~= "esp" then
  mpctl.fail("rollback of " .. board.family .. " boards (" .. board.id .. ") is not implemented yet; " ..
    "flash the previous firmware with its flash recipe")
end

-- Into the bootloader; make sure it is the same board.
local esp = mpctl.esp
local port = mpctl.open_port(arg, { baud = 115200 })
local chip = esp.connect(port, { reset = arg.reset or board.reset, baud = tonumber(arg.baud) or board.max_baud or board.baud,
  chip = board.chip, stub = arg.stub == "no" and "no" or arg.stub })
if undo.device and chip.mac and undo.device:lower() ~= chip.mac:lower() and not yes(arg.force) then
  mpctl.fail(string.format("the board on %s is %s, but the flash being undone was made on %s (force=yes to go on)",
    arg.port, chip.mac, undo.device))
end

-- From here on the board is being written: a failure goes into the history too, so that
-- `mpctl history` shows the attempt (a failed rollback pops nothing from the stack).
local record = { kind = "rollback", board = board.id, chip = chip.name, device = chip.mac, port = arg.port,
  result = "ok", rollback_of = undo.time, source = flash_backup and "flash backup" or "firmware cache" }
local _ <close> = setmetatable({}, { __close = function(_, err)
  if err then
    record.result, record.error = "failed", tostring(type(err) == "table" and err.msg or err)
    record.duration = time.now() - t0
    pcall(history.record, record, { path = arg.history })
  end
end })

local restored
if flash_backup then
  mpctl.log("restoring the flash backup %s taken before the flash of %s", flash_backup, undo.time or "?")
  local stats = backup.restore_flash(chip, flash_backup, { force = yes(arg.force) })
  for _, st in ipairs(stats) do
    mpctl.check(st.verified or not chip:can_md5(), string.format("flash at 0x%X matches the backup (MD5)", st.offset))
  end
  restored = before and before.firmware or { source = "flash backup" }
else
  local fw = before.firmware
  mpctl.log("writing %s (%s, sha256 %s) at 0x%X", image, fw.version or "?", fw.sha256, board.offset)
  local data = fs.read(image)
  chip:check_image(data, board.offset)
  local st = chip:write(board.offset, data, { verify = true, label = "rollback" })
  mpctl.check(st.verified or not chip:can_md5(), "flash MD5 matches the previous firmware")
  restored = fw
end
chip:hard_reset(board.reset == "usb-jtag")
port:set_baud(115200)

-- Files: back from the backup taken before the flash, verified by SHA-256 on the device.
local files_dir = type(undo.backup) == "table" and undo.backup.files
local nfiles
if files_dir and not yes(arg.files, true) then files_dir = nil end
if files_dir then
  if not fs.exists(files_dir) then
    mpctl.warn("the files backup %s is gone; files not restored", files_dir)
  else
    local r = mpctl.repl.attach(port, { timeout = tonumber(arg.timeout) or 10 })
    nfiles = backup.restore_files(r, files_dir)
    -- restore_files checks each file's hash on the device and raises on a mismatch
    mpctl.log("%d file%s restored from %s, each checked by its hash on the device", nfiles, nfiles == 1 and "" or "s", files_dir)
    r:close()
  end
end

local secs = time.now() - t0
record.firmware, record.files_restored, record.duration = restored, nfiles, secs
history.record(record, { path = arg.history })
mpctl.log("rolled back %s on %s to %s in %.1f s", board.id, arg.port,
  (restored and restored.version) or (flash_backup and "the flash backup") or "?", secs)
