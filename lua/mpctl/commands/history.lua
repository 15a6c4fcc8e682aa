--- What was flashed where: one line per flash, oldest first (--json: one JSON record per line).
-- @option device: TEXT; only this device (MAC address or unique id)
-- @option last: integer; only the newest N records
-- @option file: FILE; history file (default $MPCTL_HISTORY, else ~/.local/state/mpctl/history.jsonl)
--
--   mpctl history                     mpctl history --port /dev/ttyUSB0 last=5
--   mpctl history --device 24:0a:c4:12:34:56 --json
-- --port and --board filter too. A torn last line (a crash mid-append), or a line whose fields have
-- unexpected types, is skipped with a warning. Rollbacks show as `rollback` in the `what` column.

local history, ui = mpctl.history, mpctl.ui
-- `--device ID` arrives as a bare flag followed by a word unless the CLI knows it takes a value.
local device = arg.device
if device == true then device = arg[1] end
if device == true or device == "" then mpctl.usage_error("--device needs a MAC address or unique id") end
local o = { path = arg.file, port = arg.port, device = device, board = arg.board }
local recs = history.read(o)
local n = tonumber(arg.last)
if arg.last and not n then mpctl.usage_error("last= needs a number, got " .. tostring(arg.last)) end
local first = n and math.max(1, #recs - n + 1) or 1

if ui.config().json then
  for i = first, #recs do
    local r = recs[i]
    r.line = nil
    ui.event(r)
  end
  return
end
if #recs == 0 then
  ui.out("no flashes recorded" .. ((o.port or o.device or o.board) and " for that filter" or "") ..
    " in " .. history.path(o) .. "\n")
  return
end
ui.out(history.HEADER .. "\n")
for i = first, #recs do ui.out(history.format(recs[i]) .. "\n") end
