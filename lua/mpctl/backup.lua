--[[ mpctl.backup: keep what a board had before it is flashed, and put it back.

Works on any family through the target interface (mpctl.target): the flash is read with
t:read, written back with t:write (skipping what is already there, verified), and identified
with t:identify(); the files go through the MicroPython REPL.

    backup.dir(tag) -> new folder <XDG state>/mpctl/backups/<tag>-<UTC time>/ ($MPCTL_BACKUP_DIR overrides the root)
    backup.files_before(port, what, opts) -> kept    step 1 of a flash, while MicroPython still runs:
        what "files" or "all" saves the files ({dir=, files=}); opts = {tag=, timeout=}
    backup.flash_before(t, what, kept) -> record      after connecting: what "flash", "all" or FILE saves
        the flash; returns the history's backup field {flash=, files=} (nil when nothing was kept)
    backup.take(what, ctx) -> {flash=, files=, dir=}     what: "flash", "files", "all" or a file path
        ctx = {target=, repl=, dir=, regions=, tag=}; "flash" needs ctx.target, "files" ctx.repl
    backup.flash(t, dir, regions) -> manifest   regions {{offset=, size=}} (default: the whole chip)
    backup.files(repl, dir) -> manifest            every file of the MicroPython filesystem
    backup.restore_flash(t, path, opts) -> stats  path: a backup folder, or a raw image of flash from
        its base; one stats table per region (t:write's, with .offset)
    backup.restore_files(repl, dir) -> count        each file verified by SHA-256 on the device
    backup.files_from_port(port, dir) -> manifest | nil, why, reached  (before entering the bootloader;
        reached = false when no MicroPython REPL answered at all)
    backup.regions_for(offset, size) -> regions      the sectors a write touches

Manifests (flash.json, files.json) carry SHA-256s so a damaged backup is refused, not written.
A full-chip ESP backup also holds the filesystem partition (it lies past the partition table's
last entry, anchors §4), so restoring it brings the files back too.
]]
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local ui = require("mpctl.ui")
local time = require("mpctl.time")

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

function M.root()
  local e = os.getenv("MPCTL_BACKUP_DIR")
  if e and e ~= "" then return e end
  return fs.join(fs.xdg("state"), "backups")
end

function M.dir(tag)
  local stamp = time.iso(time.wall()):gsub("[:%-]", "")
  local base = fs.join(M.root(), ((tag or "board"):gsub("[^%w%.%-]+", "_")) .. "-" .. stamp)
  fs.mkdir(M.root(), { parents = true })
  -- The folder is claimed by mkdir itself, which fails when it exists: boards of one type flashed
  -- in parallel in the same second would otherwise share a folder and overwrite each other's
  -- backups (an exists() check before mkdir leaves that window open).
  local dir, n = base, 1
  while true do
    local ok, err = pcall(fs.mkdir, dir)
    if ok then return dir end
    if not fs.exists(dir) then error(err, 0) end
    n = n + 1
    dir = base .. "-" .. n
  end
end

local function sha(data) return hash.hex(hash.sha256(data)) end

function M.flash(t, dir, regions)
  local info = t:identify()
  local base = info.flash_base or 0
  regions = regions or { { offset = base, size = info.flash_size } }
  local manifest = { chip = info.chip, mac = info.mac, id = info.id, family = t.family, flash_size = info.flash_size,
    flash_base = base, regions = ui.array({}), time = time.iso(time.wall()) }
  for _, r in ipairs(regions) do
    if not r.size or r.size <= 0 then fail("backup: region at 0x%X has no size (flash size unknown?)", r.offset or 0) end
    local data = t:read(r.offset, r.size, { label = string.format("backup 0x%X", r.offset) })
    local file = string.format("flash-0x%06x.bin", r.offset)
    fs.write(fs.join(dir, file), data)
    manifest.regions[#manifest.regions + 1] = { offset = r.offset, size = #data, sha256 = sha(data), file = file }
  end
  fs.write(fs.join(dir, "flash.json"), ui.json_encode(manifest, { pretty = true }) .. "\n")
  return manifest
end

-- Folders that are not the board's files: hosted ports (WebAssembly, unix) mount their
-- operating system's device and process trees at the root, and reading those never ends.
local VIRTUAL = { ["/dev"] = true, ["/proc"] = true, ["/sys"] = true }

-- Walks the device filesystem from "/", depth first.
local function walk(repl, path, out)
  for _, e in ipairs(repl:ls(path)) do
    local full = (path == "/" and "" or path) .. "/" .. e.name
    if VIRTUAL[full] then
      -- skipped: not part of the board's filesystem
    elseif e.type == "dir" then
      out[#out + 1] = { path = full, type = "dir" }
      walk(repl, full, out)
    else
      out[#out + 1] = { path = full, type = "file", size = e.size }
    end
  end
  return out
end

function M.files(repl, dir)
  local entries = walk(repl, "/", {})
  local manifest = { files = ui.array({}), dirs = ui.array({}), time = time.iso(time.wall()) }
  local root = fs.join(dir, "files")
  fs.mkdir(root, { parents = true })
  for _, e in ipairs(entries) do
    local dest = fs.join(root, e.path:sub(2))
    if e.type == "dir" then
      fs.mkdir(dest, { parents = true })
      manifest.dirs[#manifest.dirs + 1] = e.path
    else
      local data = repl:get(e.path)
      fs.mkdir(fs.dirname(dest), { parents = true })
      fs.write(dest, data)
      manifest.files[#manifest.files + 1] = { path = e.path, size = #data, sha256 = sha(data) }
    end
  end
  fs.write(fs.join(dir, "files.json"), ui.json_encode(manifest, { pretty = true }) .. "\n")
  return manifest
end

-- The 4 KiB sectors a write of `size` bytes at `offset` touches: what a quick backup must keep.
function M.regions_for(offset, size)
  local first = offset - offset % 0x1000
  local last = offset + size
  last = last + (0x1000 - last % 0x1000) % 0x1000
  return { { offset = first, size = last - first } }
end

-- Files of the MicroPython filesystem behind `port`, when a REPL answers there (call it before
-- the board is reset into its bootloader). Returns the manifest, or nil and the reason.
function M.files_from_port(port, dir, opts)
  local ok, r = pcall(require("mpctl.repl").attach, port, { timeout = opts and opts.timeout or 5 })
  if not ok then
    return nil, "no MicroPython REPL answered on " .. tostring(port.name) .. ": " .. tostring(r), false
  end
  local ok2, m = pcall(M.files, r, dir)
  pcall(r.close, r)
  if not ok2 then return nil, tostring(m), true end
  return m
end

local function printable(why)
  why = tostring(why):gsub("[^\32-\126]", "?")
  return #why > 300 and why:sub(1, 300) .. "..." or why
end

-- Step 1 of a flash: the board's files, while its MicroPython still runs (the bootloader cannot
-- read a filesystem). backup=files insists: no files backup, no flash. backup=all goes on when no
-- MicroPython answers at all (a blank board, another firmware): the whole-flash backup taken next
-- keeps everything the board holds, filesystem included; it says so.
function M.files_before(port, what, opts)
  opts = opts or {}
  local kept = {}
  if what ~= "files" and what ~= "all" then return kept end
  kept.dir = M.dir(opts.tag)
  local m, why, reached = M.files_from_port(port, kept.dir, { timeout = opts.timeout or 5 })
  if m then
    kept.files = kept.dir
    ui.log("info", "backup: %d files saved to %s", #m.files, kept.dir)
  elseif what == "all" and reached == false then
    kept.files_skipped = printable(why)
    ui.log("warn", "backup: the board's files could not be saved (no MicroPython answered; a blank board or " ..
      "another firmware); the whole flash is backed up next, which keeps whatever the board holds")
    ui.event({ event = "check", name = "backup of the board's files", skipped = true, why = "no MicroPython REPL" })
  else
    require("mpctl").fail("backup of the board's files: " .. printable(why))
  end
  return kept
end

-- After connecting: the flash (backup=flash|all: into the backup folder; backup=FILE: one raw
-- file). Returns the history's backup field.
function M.flash_before(t, what, kept)
  kept = kept or {}
  if what and what ~= "files" and what ~= false and what ~= "no" then
    local w = (what == "all" or what == "yes" or what == true) and "flash" or what
    local got = M.take(w, { target = t, dir = kept.dir, tag = t.board and t.board.id })
    kept.flash = got.flash
    ui.log("info", "backup: %s of flash saved to %s", require("mpctl.target").size_name(t:identify().flash_size),
      got.flash)
  end
  if not (kept.flash or kept.files) then return nil end
  return { flash = kept.flash, files = kept.files, files_skipped = kept.files_skipped }
end

-- what: "flash" | "files" | "all" | a path for a raw whole-flash image (the esp32_flash style).
function M.take(what, ctx)
  local out = {}
  if what == nil or what == false or what == "no" then return out end
  local want_flash = what == "flash" or what == "all" or what == "yes" or what == true
  local want_files = what == "files" or what == "all"
  local t = ctx.target
  if not want_flash and not want_files then
    -- a file name: the whole flash as one raw image
    if not t then fail("backup=%s: needs the board in its bootloader", tostring(what)) end
    local info = t:identify()
    local data = t:read(info.flash_base or 0, info.flash_size, { label = "backup" })
    fs.write(what, data)
    out.flash = what
    return out
  end
  out.dir = ctx.dir or M.dir(ctx.tag)
  if want_files then
    if not ctx.repl then fail("backup of files needs a MicroPython REPL on the port") end
    M.files(ctx.repl, out.dir)
    out.files = out.dir
  end
  if want_flash then
    if not t then fail("backup of flash needs the board in its bootloader") end
    M.flash(t, out.dir, ctx.regions)
    out.flash = out.dir
  end
  return out
end

-- A backup's manifest; a garbled one is an error naming the file, not a bare JSON offset.
local function read_manifest(path)
  local ok, m = pcall(ui.json_decode, fs.read(path))
  if not ok or type(m) ~= "table" then
    fail("backup manifest %s is damaged: %s; nothing written", path, ok and "not a JSON object" or tostring(m))
  end
  return m
end

-- Regions to write back: from a backup folder's flash.json, or a raw image starting at `base`.
function M.load_flash(path, base)
  local st = fs.stat(path)
  if not st then fail("flash backup %s does not exist", path) end
  if st.type == "file" then
    return { { offset = base or 0, data = fs.read(path), file = path } }
  end
  local mpath = fs.join(path, "flash.json")
  if not fs.exists(mpath) then fail("%s has no flash.json: not a flash backup", path) end
  local manifest = read_manifest(mpath)
  local out = {}
  for _, r in ipairs(manifest.regions or {}) do
    local data = fs.read(fs.join(path, r.file))
    local got = sha(data)
    if got ~= r.sha256 then
      fail("flash backup %s is damaged: sha256 %s, manifest says %s; nothing written", fs.join(path, r.file), got, r.sha256)
    end
    out[#out + 1] = { offset = r.offset, data = data, file = fs.join(path, r.file), sha256 = got,
      name = string.format("backup 0x%X", r.offset) }
  end
  if #out == 0 then fail("flash backup %s lists no regions", path) end
  return out, manifest
end

function M.restore_flash(t, path, opts)
  opts = opts or {}
  local info = t:identify()
  local regions, manifest = M.load_flash(path, info.flash_base)
  local was = manifest and (manifest.id or manifest.mac)
  if was and info.id and tostring(was):lower() ~= tostring(info.id):lower() and not opts.force then
    fail("flash backup %s was taken from %s, this board is %s (force=yes to write it anyway)", path, was, info.id)
  end
  local stats = {}
  for _, r in ipairs(regions) do
    stats[#stats + 1] = t:write({ r }, { verify = true, label = string.format("restore 0x%X", r.offset) })
    stats[#stats].offset = r.offset
  end
  return stats
end

function M.restore_files(repl, dir)
  local mpath = fs.join(dir, "files.json")
  if not fs.exists(mpath) then fail("%s has no files.json: not a files backup", dir) end
  local manifest = read_manifest(mpath)
  -- Every file is checked before the first write: a damaged backup must leave the device as it is.
  local files = {}
  for _, f in ipairs(manifest.files or {}) do
    local src = fs.join(dir, "files", f.path:sub(2))
    local data = fs.read(src)
    local got = sha(data)
    if got ~= f.sha256 then
      fail("files backup %s is damaged: sha256 %s, files.json says %s; nothing written", src, got, f.sha256)
    end
    files[#files + 1] = { path = f.path, data = data }
  end
  for _, d in ipairs(manifest.dirs or {}) do repl:mkdir(d, { exist_ok = true }) end
  for _, f in ipairs(files) do
    repl:put(f.data, f.path) -- put compares the device's SHA-256 with ours after every transfer
  end
  return #files
end

return M
