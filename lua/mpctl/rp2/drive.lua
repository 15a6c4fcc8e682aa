--[[ mpctl.rp2.drive: the BOOTSEL mass-storage drive of an RP2040/RP2350 boot ROM (RPI-RP2 / RP2350).

    drive.info(dir) -> {board_id=, model=, version=, text=} | nil      INFO_UF2.TXT of a folder
    drive.find({drive=PATH, board_id=}) -> { {path=, board_id=, model=}, ... }
    drive.copy(dir, data) -> path      the UF2 written as one file, fsync'ed
    drive.wait_gone(dir, seconds) -> true | false

What the ROM serves (RP2040 datasheet §2.8 "USB Mass Storage Interface"; anchors.md §3.4): a FAT
volume labelled RPI-RP2 (RP2350: RP2350) with INFO_UF2.TXT ("UF2 Bootloader v3.0", "Model:
Raspberry Pi RP2", "Board-ID: RPI-RP2", CRLF lines) and INDEX.HTM. A UF2 copied onto it is
written to flash block by block as it arrives; after the last block of its family the ROM
reboots, so the volume goes away. There is no answer to the host and no read-back: whether the
board runs the new firmware is known only from what comes up afterwards (the REPL).

Where drives are mounted: udisks2 mounts under /media/$USER/LABEL (Debian, Ubuntu) or
/run/media/$USER/LABEL (Fedora, Arch); people also mount by hand under /mnt or /media/LABEL.
A drive=PATH given by the person is looked at first (and is the only place with a file policy
that keeps recipes to the folders they were pointed at).
]]
local fs = require("mpctl.fs")
local time = require("mpctl.time")
local errors = require("mpctl.errors")

local M = {}

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read(4096)
  f:close()
  return s
end

function M.info(dir)
  local ok, text = pcall(read, fs.join(dir, "INFO_UF2.TXT"))
  if not ok or not text then return nil end
  local function field(name) return text:match(name .. ":%s*([^\r\n]-)%s*[\r\n]") or text:match(name .. ":%s*([^\r\n]-)%s*$") end
  return { board_id = field("Board%-ID"), model = field("Model"), version = text:match("^UF2 Bootloader ([^\r\n]+)"),
    text = text }
end

local function candidates(opts)
  local out = {}
  if opts.drive then out[#out + 1] = opts.drive end
  local user = os.getenv("USER") or os.getenv("LOGNAME")
  local parents = {}
  if user then parents[#parents + 1] = "/media/" .. user; parents[#parents + 1] = "/run/media/" .. user end
  parents[#parents + 1] = "/media"; parents[#parents + 1] = "/mnt"
  for _, p in ipairs(parents) do
    local ok, names = pcall(fs.list, p)
    if ok and names then
      for _, n in ipairs(names) do out[#out + 1] = fs.join(p, n) end
    end
  end
  return out
end

--- The RP2 BOOTSEL drives present (Board-ID matching opts.board_id when given).
function M.find(opts)
  opts = opts or {}
  local found, seen = {}, {}
  for _, dir in ipairs(candidates(opts)) do
    if not seen[dir] then
      seen[dir] = true
      local info = M.info(dir)
      if info and info.board_id and (info.board_id == "RPI-RP2" or info.board_id:match("^RP2350")) and
        (not opts.board_id or info.board_id == opts.board_id) then
        found[#found + 1] = { path = dir, board_id = info.board_id, model = info.model, version = info.version }
      end
    end
  end
  return found
end

--- Writes the UF2 onto the drive as one new file and fsyncs it, so every block has reached the
--- device before we start waiting for it to reboot. fs.append is one open(O_CREAT|O_APPEND), one
--- complete write, fsync, close; it adds a newline only when the data does not end in one, and a
--- UF2 always does (magic_end 0x0AB16F30 is stored 30 6F B1 0A).
function M.copy(dir, data)
  if data:sub(-1) ~= "\n" then errors.raise("internal", dir, "not a UF2 (does not end in magic_end)") end
  local name
  for i = 0, 99 do
    name = fs.join(dir, i == 0 and "FIRMWARE.UF2" or string.format("FIRMWARE%d.UF2", i))
    if not fs.exists(name) then break end
  end
  fs.append(name, data, { fsync = true })
  return name
end

--- Waits until the drive has gone (INFO_UF2.TXT no longer there: unmounted, or the folder emptied).
function M.wait_gone(dir, seconds)
  local deadline = time.now() + seconds
  while time.now() < deadline do
    if not M.info(dir) then return true end
    time.sleep(0.05)
  end
  return not M.info(dir)
end

return M
