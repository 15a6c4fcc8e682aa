-- mpctl.many.station: `mpctl station RECIPE [options] [settings]`, a flashing station for labs
-- and classrooms: waits for boards to be plugged in, runs the recipe on each new one (several at
-- a time, each in its own child as in mpctl.many), prints a PASS/FAIL line per board, appends
-- each result to a log, and keeps going until Ctrl-C, then prints the totals.
--
-- Station settings (the other words and options go to the recipe):
--   watch=FILE|DIR|GLOB  where boards appear besides attached USB devices (mpctl.many.watch)
--   devices=yes|no       watch attached USB serial ports of the recipe's family (default yes)
--   again=yes            flash a board that already passed in this run again (default no)
--   data=FILE            per-board CSV data the recipe reads with mpctl.board_data(device)
--   log=FILE             the log to append to: .jsonl = JSON lines, else CSV (default
--                        station-log.csv in the current folder)
--   --jobs N, --board-timeout T   as for many boards
--   -v: each board's steps as they happen, "[N] ..."; --json: every event tagged with its board
--
-- "Never the same board twice": a board is known by its identity (mpctl.many.identity). A port
-- that stays plugged in after its board finished is not run again; a port that goes away and
-- comes back is a new arrival, and then the board is recognised by its USB serial number before
-- anything starts, or by its MAC / unique id once connected ($MPCTL_SKIP_DEVICES: mpctl.attempt
-- refuses it before writing, the line says SKIP). A port that re-appears while its board is
-- still being flashed (same USB path or serial: a reset that re-enumerates) is that board.
local usage_error = require("mpctl.cli.args").usage_error
local supervisor = require("mpctl.many.supervisor")
local identity = require("mpctl.many.identity")
local view = require("mpctl.many.view")
local many = require("mpctl.many")
local time = require("mpctl.time")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local output = require("mpctl.output")

local M = {}

local OWN_KEYS = { watch = true, devices = true, again = true, data = true, log = true }
local SCAN_EVERY = 0.5 -- s between looks for new boards

-- ---------------------------------------------------------------------------------------
-- the log

local CSV_COLUMNS = { "time", "port", "chip", "device", "usb", "firmware_version", "firmware_sha256", "result",
  "duration", "error" }

local function csv_field(v)
  v = v == nil and "" or tostring(v)
  if v:find('[",\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

function M.log_entry(b)
  local fw = type(b.firmware) == "table" and b.firmware or {}
  return {
    time = time.iso(time.wall()), port = b.url, chip = b.chip, device = b.device, usb = b.id and b.id.usb,
    firmware_version = fw.version, firmware_sha256 = fw.sha256, result = b.result,
    duration = b.seconds and tonumber(string.format("%.1f", b.seconds)) or nil, error = b.error,
  }
end

function M.append_log(path, entry)
  local line
  if path:match("%.jsonl$") or path:match("%.json$") then
    line = ui.json_encode(entry) .. "\n"
  else
    local cells = {}
    for i, k in ipairs(CSV_COLUMNS) do cells[i] = csv_field(entry[k]) end
    line = table.concat(cells, ",") .. "\n"
    local st = fs.stat(path)
    if not st or st.size == 0 then line = table.concat(CSV_COLUMNS, ",") .. "\n" .. line end
  end
  fs.append(path, line, { fsync = true })
end

-- ---------------------------------------------------------------------------------------

local function yes(v, name, default)
  if v == nil then return default end
  local b = require("mpctl.options").yes_no(v)
  if b == nil then usage_error("station: " .. name .. "=" .. tostring(v) .. ": expected yes or no") end
  return b
end

-- argv for the children: the station word and the station's own settings removed.
local function recipe_argv(argv, command_index)
  local out = {}
  local rest = false
  for i, w in ipairs(argv) do
    if w == "--" then rest = true end
    local key = not rest and w:match("^([%a_][%w_%-]*)=")
    if i ~= command_index and not (key and OWN_KEYS[key]) then out[#out + 1] = w end
  end
  return out
end

function M.run(parsed, info, argv)
  local recipe_name = parsed.arg[1]
  if not recipe_name then
    usage_error("mpctl station needs a recipe: mpctl station esp32_flash firmware=FILE [watch=FILE|DIR|GLOB]")
  end
  local cli = require("mpctl.cli")
  local recipe = cli.find_recipe(recipe_name, info)
  local meta = cli.recipe_meta(recipe)
  local a = parsed.arg
  local again = yes(a.again, "again", false)
  local devices = yes(a.devices, "devices", true)
  local log_path = a.log or "station-log.csv"
  local data_path = a.data and fs.realpath(a.data) or nil
  if a.data and not data_path then usage_error("data=" .. a.data .. ": no such file") end
  local data_rows = data_path and require("mpctl.many.data").load(data_path) or nil
  local data_json = data_rows and ui.json_encode(ui.array(data_rows)) or nil
  if a.watch == nil and not devices then usage_error("station: nothing to watch (give watch=FILE|DIR|GLOB or devices=yes)") end
  local family = meta.family
  if parsed.opts.board then family = require("mpctl").board(parsed.opts.board).family end
  local watcher = require("mpctl.many.watch").new({ watch = a.watch, devices = devices, family = family })

  local boards = {}
  local passed = {}   -- devices (MACs) that passed: never again unless again=yes
  local passed_usb = {} -- USB serial numbers of boards that passed
  local present = {}  -- url -> the board started for this presence (nil: not handled yet)
  local last_scan, started = -1, 0

  local function busy_with(id)
    for _, b in ipairs(boards) do
      if b.status ~= "done" and (b.url == id.port or (identity.same(b.id, id) and (b.id.usb_serial or b.id.usb_path))) then
        return b
      end
    end
  end

  local function more()
    if time.now() - last_scan < SCAN_EVERY then return nil end
    last_scan = time.now()
    local now, out = {}, {}
    for _, p in ipairs(watcher.scan()) do
      now[p.url] = true
      if not present[p.url] then
        if busy_with(p.id) then
          present[p.url] = "busy" -- the board in progress came back under this name
        elseif not again and p.id.usb_serial and passed_usb[p.id.usb] then
          present[p.url] = "known"
          output.out(string.format("SKIP %s: USB %s was flashed already in this run (again=yes flashes it again)\n",
            p.url, p.id.usb))
        else
          started = started + 1
          local b = { url = p.url, id = p.id, data_row = started }
          present[p.url] = b
          out[#out + 1] = b
        end
      end
    end
    -- gone: the next time this url appears it is a new arrival
    for url in pairs(present) do if not now[url] then present[url] = nil end end
    return out
  end

  local function skip_env(b)
    local env = {}
    if not again then
      local list = {}
      for d in pairs(passed) do list[#list + 1] = d end
      table.sort(list)
      if #list > 0 then env.MPCTL_SKIP_DEVICES = table.concat(list, ",") end
    end
    if data_rows then env.MPCTL_BOARD_DATA, env.MPCTL_BOARD_DATA_ROW = data_json, tostring(b.data_row) end
    return env
  end

  -- the line per board and the log
  local color = view.color_on(1)
  local json = parsed.opts.json
  local function on_change(b)
    if b.status == "running" and not b.said_start then
      b.said_start = true
      if json then ui.event({ event = "board_start", board_index = b.index, board_port = b.label, pid = b.pid })
      else output.out(string.format("[%d] %s: started\n", b.index, b.url)) end
    elseif b.status == "done" and not b.said_end then
      b.said_end = true
      if b.result == "pass" and b.device then passed[b.device] = true end
      if b.result == "pass" and b.id.usb_serial then passed_usb[b.id.usb] = true end
      local entry = M.log_entry(b)
      local ok, why = pcall(M.append_log, log_path, entry)
      if not ok then ui.log("warn", "station log %s: %s", log_path, tostring(why)) end
      if json then
        local ev = { event = "board_end", board_index = b.index, board_port = b.label, cpu = b.cpu }
        for k, v in pairs(entry) do ev[k] = v end
        ui.event(ev)
      else
        local word = ({ pass = "PASS", skipped = "SKIP", timeout = "FAIL", interrupted = "STOP" })[b.result] or "FAIL"
        local shown = word
        if color then
          shown = "\27[1;" .. (word == "PASS" and "32" or word == "SKIP" and "33" or "31") .. "m" .. word .. "\27[0m"
        end
        output.out(string.format("%s [%d] %s %s %s %s %.1fs%s\n", shown, b.index, b.url, b.chip or "-", b.device or "-",
          b.result == "pass" and ((b.firmware or {}).version or "") or "", b.seconds or 0,
          b.result ~= "pass" and b.error and ("  " .. b.error) or ""))
      end
    end
  end

  local rest = recipe_argv(argv, parsed.opts._command_index)
  local child = many.child_args(rest)
  local jobs, timeout = many.limits(parsed.opts, 4)
  if data_rows then ui.log("info", "data: %d rows from %s", #data_rows, data_path) end
  ui.log("info", "station: %s; waiting for boards (%s%s); log %s; Ctrl-C ends", recipe_name,
    devices and ("attached " .. (family or "any") .. " boards") or "", a.watch and ((devices and ", " or "") .. a.watch) or "",
    log_path)
  if json then ui.event({ event = "station_ready", recipe = recipe_name, log = log_path, watch = a.watch }) end
  local exe = info.exe or "mpctl"
  local t0 = time.now()
  local _, interrupted = supervisor.run(boards, {
    jobs = jobs, timeout = timeout, forever = true, more = more, env = skip_env,
    argv = function(b)
      local args = { exe, "--json", "--port", b.url }
      table.move(child, 1, #child, #args + 1, args)
      return args
    end,
    on_change = on_change,
    -- --json: every child event, tagged with its board; -v: the children's step lines too
    on_event = function(b, ev)
      if json then
        view.tagged_event(b, ev)
      elseif (parsed.opts.verbose or 0) > 0 and ev.event == "log" and ev.msg then
        output.out(string.format("[%d] %s\n", b.index, ev.msg))
      end
    end,
  })
  local s = view.count(boards, time.now() - t0)
  if json then
    ui.event({ event = "station_totals", boards = s.total, passed = s.pass, failed = s.fail + s.timeout,
      skipped = s.skipped, interrupted = s.interrupted, seconds = s.seconds, log = log_path })
  else
    output.out(string.format("station: %d boards: %d passed, %d failed, %d skipped%s in %.0fs (log: %s)\n",
      s.total, s.pass, s.fail + s.timeout, s.skipped,
      s.interrupted > 0 and (", " .. s.interrupted .. " stopped mid-run") or "", s.seconds, log_path))
  end
  if s.fail + s.timeout > 0 then return 1 end
  if interrupted and s.interrupted > 0 then return 130 end
  return 0
end

return M
