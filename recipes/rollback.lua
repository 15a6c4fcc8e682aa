--- Undo the last flash of a board: write back its flash backup or the firmware it ran before (from the cache, by history), restore its files, verify.
-- @option device: TEXT; the device (MAC or unique id) when the port's history holds several boards
-- @option files: yes|no = yes; restore the board's files when a files backup exists
-- @option force: yes|no = no; write even when the board's id differs from the history's
-- @option reset: classic|usb-jtag|none; how to enter the bootloader (default: from the board file)
-- @option stub: FILE|no; flasher stub JSON, or no for ROM-only mode (ESP boards)
-- @option history: FILE; history file (default $MPCTL_HISTORY or ~/.local/state/mpctl/history.jsonl)
-- @option timeout: seconds = 10; how long to wait for the REPL after reset, for the files
--
--   mpctl rollback --port /dev/ttyUSB0
--   mpctl rollback --port /dev/ttyUSB0 device=24:0a:c4:12:34:56
-- What the board ran is read from `mpctl history`: flashes push, rollbacks pop. The flash backup
-- taken before the last flash (backup=) is preferred, since it also holds the filesystem;
-- otherwise the previous firmware is taken from the firmware cache by its SHA-256. Any board
-- family with a target driver (mpctl.target) rolls back the same way.

local fs = mpctl.fs
local history, backup, target = mpctl.history, mpctl.backup, mpctl.target

if not arg.port then mpctl.usage_error("rollback needs --port PORT (the board to roll back)") end
local device = arg.device
local hopts = { path = arg.history, port = arg.port, device = device }

-- 1. What to undo, from the history: the last successful flash, and what ran before it.
local stack, devices = history.stack(hopts)
if not device and #devices > 1 then
  mpctl.usage_error("the history of " .. arg.port .. " holds several boards (" .. table.concat(devices, ", ") ..
    "): give device=ID")
end
local undo, before = stack[#stack], stack[#stack - 1]
if not undo then
  mpctl.fail("nothing to roll back on " .. arg.port .. (device and (" for " .. device) or "") ..
    ": no successful flash recorded in " .. history.path(hopts))
end

-- 2. What to write: the flash backup taken before `undo`, else the firmware `before` recorded.
local flash_backup = type(undo.backup) == "table" and undo.backup.flash
if flash_backup and not fs.exists(flash_backup) then
  mpctl.warn("the flash backup %s recorded for the flash of %s is gone", flash_backup, undo.time or "?")
  flash_backup = nil
end
local image
if not flash_backup then
  if not before then
    mpctl.fail(string.format("the flash of %s on %s is the first one recorded and no flash backup was taken " ..
      "(backup= when flashing); nothing to roll back to", undo.time or "?", arg.port))
  end
  image = history.firmware_file(before.firmware)
  if not image then
    local fw = before.firmware or {}
    mpctl.fail(string.format("the previous firmware (%s %s, sha256 %s) is not in the cache and not at %s; " ..
      "fetch it with: mpctl firmware fetch board=%s %s", before.board or "?", fw.version or "?", fw.sha256 or "?",
      fw.path or fw.file or "its recorded path", before.board or "ID",
      fw.version and fw.version ~= "local" and ("version=" .. fw.version) or "version=VERSION (the one with that sha256)"))
  end
end

-- 3. Which board: from the history, --board, or asked of the device while its MicroPython still runs.
local board_id = undo.board or arg.board or target.board_on_port(arg.port)
if not board_id then
  mpctl.usage_error("the history does not say which board is on " .. arg.port .. " and the device did not tell; " ..
    "give --board ID")
end
local board = mpctl.board(board_id)

-- From here on the board is touched: the attempt goes into the history whatever happens (a
-- failed rollback pops nothing from the stack).
local restored = flash_backup and (before and before.firmware or { source = "flash backup" }) or before.firmware
local record <close> = mpctl.attempt({ kind = "rollback", board = board.id, port = arg.port, rollback_of = undo.time,
  source = flash_backup and "flash backup" or "firmware cache", firmware = restored }, { path = arg.history })

-- 4. Into the bootloader (the family's driver opens the port: serial, USB DFU, ...); make sure it
-- is the same board.
local t <close> = target.connect(board, arg.port, { reset = arg.reset, baud = arg.baud, stub = arg.stub })
record:target(t)
local id = t:identify().id
if undo.device and id and undo.device:lower() ~= id:lower() then
  if not arg.force then
    mpctl.fail(string.format("the board on %s is %s, but the flash being undone was made on %s (force=yes to go on)",
      arg.port, id, undo.device))
  end
  mpctl.skip("same board as the flash being undone", string.format("force=yes: %s here, %s in the history", id, undo.device))
elseif undo.device and not id then
  -- an RP2040 in BOOTSEL: its ROM shows the same serial on every board; its id comes with MicroPython
  mpctl.skip("same board as the flash being undone, before writing",
    "the board does not tell its id in its bootloader; it is compared once the board is back")
end

-- 5. Write it back, verified.
if flash_backup then
  mpctl.log("restoring the flash backup %s taken before the flash of %s", flash_backup, undo.time or "?")
  for _, st in ipairs(backup.restore_flash(t, flash_backup, { force = arg.force })) do
    mpctl.verified(st, string.format("flash at 0x%X matches the backup", st.offset))
  end
else
  local fw = before.firmware
  local parts = target.parts(image, board) -- a .dfu or .hex says where its bytes go
  mpctl.log("writing %s (%s, sha256 %s) at 0x%X", image, fw.version or "?", fw.sha256, target.extent(parts))
  t:check_image(parts)
  mpctl.verified(t:write(parts, { verify = true, label = "rollback" }), "flash matches the previous firmware")
end
local app = t:reset_to_app()
local after = t:identify().id
if undo.device and not id and after then
  record.device = after
  mpctl.check(after:lower() == undo.device:lower(), "the board rolled back is the one the flash was made on",
    string.format("it is %s, the flash undone was made on %s: that board's backup is now on this one; flash this " ..
      "board again with the firmware it should run", after, undo.device))
end

-- 6. Files: back from the backup taken before the flash, verified by SHA-256 on the device.
local files_dir = type(undo.backup) == "table" and undo.backup.files
if files_dir and not arg.files then
  mpctl.skip("restoring the board's files from " .. files_dir, "files=no")
elseif files_dir then
  if not fs.exists(files_dir) then
    mpctl.warn("the files backup %s is gone; files not restored", files_dir)
  else
    local r = target.repl(app, { timeout = arg.timeout })
    record.files_restored = backup.restore_files(r, files_dir) -- each file's hash checked on the device
    r:close()
    mpctl.log("%d file%s restored from %s, each checked by its hash on the device", record.files_restored,
      record.files_restored == 1 and "" or "s", files_dir)
  end
end

mpctl.log("rolled back %s on %s to %s in %.1f s", board.id, arg.port,
  (restored.version and restored.version ~= "local") and ("MicroPython " .. restored.version)
    or (flash_backup and ("the flash backup " .. flash_backup)) or restored.file or restored.sha256 or "?",
  mpctl.time.now() - mpctl.t_start)
