--- esptool's everyday jobs on an ESP board: mpctl esp id|erase|read|write (chip auto-detected).
-- @option reset: classic|usb-jtag|none; how to enter the bootloader (default: the board file's, else classic)
-- @option stub: FILE|no; a flasher stub JSON, or no for ROM-only mode
-- @option verify: yes|no = yes; write: check by MD5 what was written and that nothing else changed
--
--   mpctl esp id --port P                              chip, MAC, flash size, flash JEDEC id
--                                                      (esptool chip-id / flash-id / read-mac)
--   mpctl esp erase --port P [ADDR SIZE]               the whole flash, or a region of whole 4 KiB
--                                                      sectors (esptool erase-flash / erase-region)
--   mpctl esp read --port P ADDR SIZE FILE             flash to a file; SIZE may be "all"
--                                                      (esptool read-flash)
--   mpctl esp write --port P ADDR FILE [ADDR FILE...]  files at offsets: unchanged sectors
--                                                      skipped, verified by MD5, the rest of the
--                                                      flash proven unchanged (esptool write-flash)
-- ADDR and SIZE: 0x1000, 4096, 64K, 4M. --board ID checks the chip (a mismatch names the board to
-- use); without it the chip found decides. --baud sets the transfer rate (default 921600).

local esp, fs, ui = mpctl.esp, mpctl.fs, mpctl.ui

local sub = arg[1]
local SUBS = { id = true, erase = true, read = true, write = true }
if not SUBS[sub] then
  mpctl.usage_error("mpctl esp id|erase|read|write --port PORT ... (mpctl help esp)" ..
    (sub and (": unknown job '" .. sub .. "'") or ""))
end

local function number(s, what)
  local t = tostring(s or ""):upper()
  local n, unit = t:match("^(%d+)([KM]?)B?$")
  local v
  if n then v = tonumber(n) * (unit == "K" and 1024 or unit == "M" and 1048576 or 1)
  elseif t:match("^0X%x+$") then v = tonumber(t:sub(3), 16) end
  if not v then mpctl.usage_error(string.format("%s: expected a number like 0x1000, 4096, 64K or 4M, got '%s'", what, tostring(s))) end
  return math.tointeger(v)
end

-- The board file when --board is given (ids are matched without regard to case).
local function board_of(id)
  if not id then return nil end
  local boards = require("mpctl.board")
  for _, known in ipairs(boards.ids()) do
    if known:upper() == id:upper() then return mpctl.board(known) end
  end
  return mpctl.board(id) -- unknown: its error lists the closest ids
end

-- Arguments are checked before the board is touched.
local jobs = {}
if sub == "erase" then
  if arg[2] then
    if not arg[3] then mpctl.usage_error("esp erase ADDR SIZE: SIZE missing") end
    jobs.addr, jobs.size = number(arg[2], "ADDR"), number(arg[3], "SIZE")
    if jobs.addr % 4096 ~= 0 or jobs.size % 4096 ~= 0 then
      mpctl.usage_error(string.format("esp erase 0x%X 0x%X: flash erases whole 4 KiB sectors; use multiples of 0x1000",
        jobs.addr, jobs.size))
    end
  end
elseif sub == "read" then
  if not arg[4] then mpctl.usage_error("esp read ADDR SIZE FILE: three words needed") end
  jobs.addr = number(arg[2], "ADDR")
  jobs.size = arg[3] == "all" and "all" or number(arg[3], "SIZE")
  jobs.file = arg[4]
elseif sub == "write" then
  if not arg[3] then mpctl.usage_error("esp write ADDR FILE [ADDR FILE...]: pairs of an address and a file") end
  jobs.parts = {}
  local i = 2
  while arg[i] do
    local addr, file = number(arg[i], "ADDR"), arg[i + 1]
    if not file then mpctl.usage_error("esp write: address " .. arg[i] .. " has no file") end
    local st = fs.stat(file)
    if not st or st.type ~= "file" then mpctl.usage_error("esp write: " .. file .. " is not a regular file") end
    jobs.parts[#jobs.parts + 1] = { offset = addr, data = fs.read(file), name = file }
    i = i + 2
  end
end

local board = board_of(arg.board)
if board and board.family ~= "esp" then mpctl.usage_error(board.id .. " is not an ESP board") end
local opts = board and esp.board_opts(board, arg.port) or {}
opts.reset = arg.reset or opts.reset or "classic"
opts.baud = tonumber(arg.baud) or opts.baud or 921600
opts.stub = arg.stub
local port <close> = mpctl.open_port(arg, { baud = 115200 })
local chip = esp.connect(port, opts)
mpctl.log("%s, MAC %s, %s flash, %s at %d baud", chip.name, chip.mac or "?", esp.chips.size_name(chip.flash_size),
  chip.stub and "stub" or "ROM loader", port:baud())

if sub == "id" then
  local info = { chip = chip.name, key = chip.key, mac = chip.mac, flash_size = chip.flash_size,
    flash_id = chip.flash_jedec and string.format("0x%06X", chip.flash_jedec) or nil,
    manufacturer = chip.flash_jedec and string.format("0x%02X", chip.flash_jedec & 0xFF) or nil,
    board = esp.board_for_chip(chip.key) }
  if ui.config().json then
    io.stdout:write(ui.json_encode(info), "\n")
  else
    print(string.format("chip: %s\nmac: %s\nflash: %s (JEDEC id %s)\nboard: %s", info.chip, info.mac or "?",
      esp.chips.size_name(info.flash_size), info.flash_id or "unknown", info.board or "?"))
  end
elseif sub == "erase" then
  if jobs.addr then
    chip:erase_region(jobs.addr, jobs.size)
    mpctl.log("erased 0x%X-0x%X", jobs.addr, jobs.addr + jobs.size - 1)
  else
    chip:erase_all()
    mpctl.log("erased the whole %s flash", esp.chips.size_name(chip.flash_size))
  end
elseif sub == "read" then
  local size = jobs.size == "all" and (chip.flash_size - jobs.addr) or jobs.size
  if jobs.addr + size > chip.flash_size then
    mpctl.usage_error(string.format("esp read 0x%X+0x%X: past the end of the %s flash", jobs.addr, size,
      esp.chips.size_name(chip.flash_size)))
  end
  local data = chip:read_flash(jobs.addr, size, { label = "read" })
  local tmp = jobs.file .. ".mpctl~"
  fs.write(tmp, data)
  fs.rename(tmp, jobs.file)
  mpctl.log("read 0x%X-0x%X into %s (MD5 checked by the stub: %s)", jobs.addr, jobs.addr + size - 1, jobs.file,
    chip.stub and "yes" or "no, ROM reads")
elseif sub == "write" then
  chip:check_parts(jobs.parts)
  local st = chip:write_parts(jobs.parts, { verify = arg.verify ~= false and arg.verify ~= "no", label = "write" })
  if st.verified then
    mpctl.log("verified: flash MD5 matches each file; outside them: %s", st.outside)
  else
    mpctl.warn("NOT verified (%s)", st.outside_note or "this loader has no MD5")
  end
end
chip:hard_reset(opts.reset == "usb-jtag")
