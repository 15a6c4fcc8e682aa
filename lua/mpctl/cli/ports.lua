-- mpctl.cli.ports: the `ports` command (serial ports with their USB ids, the boards they look
-- like from boards/*.lua and, when a MicroPython REPL answers, what it runs; USB devices without a
-- serial port come from mpctl.dfu.ports) and `--port auto`, which picks the one attached board
-- from the same description.
local M = {}

local usage_error = require("mpctl.cli.args").usage_error

local EXIT_OK = 0

-- Board families guessed from USB ids in boards/*.lua.
local function guess_boards(vid, pid)
  if not vid then return {} end
  local ok, board = pcall(require, "mpctl.board")
  if not ok or not board.match_usb then return {} end
  local ok2, list = pcall(board.match_usb, vid, pid)
  if not ok2 then return {} end
  local fams, seen = {}, {}
  for _, b in ipairs(list) do
    local f = b.family or b.chip or b.id
    if not seen[f] then seen[f] = true; fams[#fams + 1] = f end
  end
  return fams, list
end

function M.describe(ports)
  local rows = {}
  for _, p in ipairs(ports) do
    local fams, boards = guess_boards(p.vid, p.pid)
    local ids = {}
    for _, b in ipairs(boards or {}) do ids[#ids + 1] = b.id end
    rows[#rows + 1] = {
      path = p.path, vid = p.vid, pid = p.pid, serial = p.serial,
      manufacturer = p.manufacturer, product = p.product, description = p.description,
      transport = p.transport, families = fams, boards = ids,
      usb = p.vid and string.format("%04X:%04X", p.vid, p.pid) or nil,
    }
  end
  table.sort(rows, function(a, b) return a.path < b.path end)
  return rows
end

-- Asks the REPL on a port what firmware runs there (board id, version). Short timeouts: a
-- port with no MicroPython behind it must not hold up the listing. Busy ports are left alone.
local function probe_port(path)
  local ok, result = pcall(function()
    local port <close> = require("mpctl.serial").open(path, { baud = 115200, timeout = 1 })
    local repl = require("mpctl.repl").attach(port, { timeout = 1 })
    local id = require("mpctl.firmware").identify(repl)
    pcall(repl.close, repl)
    return id
  end)
  return ok and result or nil
end

-- `mpctl ports [--port P] [--probe|--no-probe] [--json]`
function M.run(parsed)
  local serial = require("mpctl.serial")
  local ui = require("mpctl.ui")
  -- --port P: describe just that port (any URL, e.g. rfc2217:// or sim://), always probed
  local listed = parsed.opts.port and { { path = parsed.opts.port } } or serial.list()
  if parsed.opts.port then parsed.opts.probe = true end
  local rows = M.describe(listed)
  -- By default only USB ports are asked (a bare UART may have anything behind it);
  -- --probe asks every port, --no-probe none.
  for _, r in ipairs(rows) do
    if not parsed.opts["no-probe"] and (parsed.opts.probe or r.usb) then
      local id = probe_port(r.path)
      if id then
        r.firmware = { board = id.board, variant = id.variant, version = id.version, machine = id.machine }
      end
    end
  end
  -- USB devices without a serial port (DFU, BOOTSEL): mpctl.dfu.ports
  local usb_rows = {}
  if not parsed.opts.port then usb_rows = require("mpctl.dfu.ports").rows() end
  if parsed.opts.json then
    for _, r in ipairs(rows) do ui.event(r) end
    require("mpctl.dfu.ports").write(usb_rows, true)
    return EXIT_OK
  end
  local output = require("mpctl.output")
  require("mpctl.dfu.ports").write(usb_rows, false)
  if #rows == 0 and #usb_rows > 0 then return EXIT_OK end
  if #rows == 0 then
    output.out("no serial ports found (try --port sim://micropython for the built-in simulator)\n")
    return EXIT_OK
  end
  for _, r in ipairs(rows) do
    local what = table.concat({ r.manufacturer or "", r.product or r.description or "" }, " "):gsub("^%s+", "")
    local runs = ""
    if r.firmware then
      runs = "runs MicroPython " .. (r.firmware.version or "?") ..
        (r.firmware.board and (" (" .. r.firmware.board .. (r.firmware.variant and ("-" .. r.firmware.variant) or "") .. ")") or "")
    end
    output.out(string.format("%-20s %-10s %-14s %-30s %s %s\n", r.path, r.usb or "-", r.serial or "-",
      what, #r.families > 0 and ("looks like: " .. table.concat(r.families, "/")) or "", runs))
  end
  return EXIT_OK
end

-- The one attached device that looks like a board (its USB id is in a boards/ file: a
-- MicroPython USB port or a bootloader's serial bridge), from `rows` (describe_ports). Several
-- or none: a usage error listing what is there, so the person picks with --port.
function M.auto(rows)
  local hits = {}
  for _, r in ipairs(rows) do
    if r.boards and #r.boards > 0 then hits[#hits + 1] = r end
  end
  local function line(r)
    return string.format("%s (%s%s)", r.path, r.usb or "?",
      #r.families > 0 and (", looks like " .. table.concat(r.families, "/")) or "")
  end
  if #hits == 1 then return hits[1].path end
  if #hits == 0 then
    local present = {}
    for _, r in ipairs(rows) do present[#present + 1] = r.path end
    usage_error("--port auto: no MicroPython or bootloader device found by USB id (ports present: " ..
      (#present > 0 and table.concat(present, ", ") or "none") .. "); give --port PORT")
  end
  local lines = {}
  for _, r in ipairs(hits) do lines[#lines + 1] = "  " .. line(r) end
  usage_error("--port auto: several devices could be the board; pick one with --port:\n" .. table.concat(lines, "\n"))
end

return M
