-- Station mode: `mpctl station RECIPE watch=FILE` while simulated boards appear one after the
-- other (their RFC 2217 URLs written into the watched file, as a board farm script would), go
-- away and come back. Each new board is flashed once and gets its own row of data=FILE; the one
-- that comes back is recognised by its MAC and not flashed again; Ctrl-C ends the station with
-- the totals; the log holds one line per board.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local time = require("mpctl.time")
local support = require("support")

-- pumps the station's output until `pattern` shows up (bounded)
local function wait_for(st, pattern, seconds)
  local deadline = time.now() + (seconds or 60)
  while time.now() < deadline do
    if st.pump(0.2):find(pattern) then return true end
  end
  error("timed out waiting for '" .. pattern .. "' in:\n" .. st.text, 0)
end

local function count(s, pat)
  return select(2, s:gsub(pat, ""))
end

-- Ctrl-C to the station once `steps` ran (or failed); the boards' simulators stopped either way.
-- Returns the station's exit code and output.
local function ctrl_c(st, ok, err, stops)
  st.p:kill("INT")
  local code, out = st.finish(60)
  for _, stop in ipairs(stops) do stop() end
  if not ok then error(err, 0) end
  return code, out
end

test("two boards appearing one after the other: each flashed once, with its data row; totals at Ctrl-C", function()
  local dir, hist, cleanup = support.workdir()
  local watch, log, data = fs.join(dir, "boards.txt"), fs.join(dir, "station.csv"), fs.join(dir, "boards.csv")
  fs.write(watch, "")
  fs.write(data, "name,ssid\nbench-01,lab\nbench-02,lab\n")
  local url1, stop1 = support.serve_esp32({ "timing=off", "seed=81" })
  local url2, stop2 = support.serve_esp32({ "timing=off", "seed=82" })
  local recipe = fs.join(require("mpctl").datadir or ".", "tests/many/recipes/flash_and_name.lua")
  local st = support.start({ "-v", "station", recipe, "watch=" .. watch, "devices=no", "log=" .. log,
    "data=" .. data, "firmware=demo" }, { MPCTL_HISTORY = hist, NO_COLOR = "1" })
  local ok, err = pcall(function()
    wait_for(st, "waiting for boards")
    -- board 1 is plugged in
    fs.write(watch, url1 .. "\n")
    wait_for(st, "PASS %[1%]")
    -- board 2 arrives; board 1 is unplugged and plugged back in
    fs.write(watch, url2 .. "\n")
    wait_for(st, "PASS %[2%]")
    fs.write(watch, url2 .. "\n" .. url1 .. "\n")
    wait_for(st, "SKIP %[3%]")
    -- still plugged in: nothing more happens (the station looks twice a second)
    time.sleep(1.5)
    st.pump(0.1)
    test.eq(count(st.text, "started"), 3, st.text)
  end)
  local code, out = ctrl_c(st, ok, err, { stop1, stop2 })
  test.eq(code, 0, out)
  test.contains(out, "station: 3 boards: 2 passed, 0 failed, 1 skipped")
  test.contains(out, "already flashed in this run")
  -- each board wrote its own row (handed out in arrival order) onto itself
  test.contains(out, 'board.json written: {"name":"bench-01","ssid":"lab"}')
  test.contains(out, 'board.json written: {"name":"bench-02","ssid":"lab"}')
  -- the log: a header and one line per board, with MAC, firmware and its sha256
  local lines = {}
  for l in fs.read(log):gmatch("[^\n]+") do lines[#lines + 1] = l end
  test.eq(lines[1], "time,port,chip,device,usb,firmware_version,firmware_sha256,result,duration,error")
  test.eq(#lines, 4, fs.read(log))
  test.ok(lines[2]:find(url1, 1, true) and lines[2]:match(",ESP32,24:0a:c4:%x%x:%x%x:%x%x,,1%.27%.0,789830cb%x+,pass,"), lines[2])
  test.ok(lines[3]:find(url2, 1, true) and lines[3]:find(",pass,", 1, true), lines[3])
  test.ok(lines[4]:find(url1, 1, true) and lines[4]:find(",skipped,", 1, true), lines[4])
  -- history: two flashes (the skipped board was not touched: no record)
  local recs = support.history(hist)
  test.eq(#recs, 2)
  test.ok(recs[1].device ~= recs[2].device)
  cleanup()
end)

test("again=yes flashes a returning board again; a JSONL log; a failing board is a FAIL line", function()
  local dir, hist, cleanup = support.workdir()
  local watch, log = fs.join(dir, "boards"), fs.join(dir, "station.jsonl")
  fs.mkdir(watch)
  local url1, stop1 = support.serve_esp32({ "timing=off", "seed=91" })
  local url2, stop2 = support.serve_esp32({ "timing=off", "seed=92", "corrupt=1", "fault_dir=rx", "fault_skip=30" })
  local st = support.start({ "station", "esp32_flash", "watch=" .. watch, "devices=no", "log=" .. log, "again=yes",
    "repl=no", "firmware=demo" }, { MPCTL_HISTORY = hist, NO_COLOR = "1" })
  local ok, err = pcall(function()
    wait_for(st, "waiting for boards")
    -- watch=DIR: a file per board holding its URL
    fs.write(fs.join(watch, "a"), url1 .. "\n")
    wait_for(st, "PASS %[1%]")
    fs.remove(fs.join(watch, "a"))
    time.sleep(1.2)
    fs.write(fs.join(watch, "a"), url1 .. "\n")
    wait_for(st, "PASS %[2%]")
    fs.write(fs.join(watch, "b"), url2 .. "\n")
    wait_for(st, "FAIL %[3%]")
  end)
  local code, out = ctrl_c(st, ok, err, { stop1, stop2 })
  test.eq(code, 1, out) -- a board failed
  test.contains(out, "station: 3 boards: 2 passed, 1 failed, 0 skipped")
  local recs = {}
  for l in fs.read(log):gmatch("[^\n]+") do recs[#recs + 1] = require("mpctl.ui").json_decode(l) end
  test.eq(#recs, 3)
  test.eq(recs[1].device, recs[2].device)
  test.eq(recs[1].result, "pass")
  test.eq(recs[2].result, "pass")
  test.eq(recs[3].result, "fail")
  test.contains(recs[3].error, "invalid CRC")
  cleanup()
end)

test("Ctrl-C while a board is being flashed: it stops, its record and log line say interrupted, exit 130", function()
  local dir, hist, cleanup = support.workdir()
  local watch, log = fs.join(dir, "boards.txt"), fs.join(dir, "station.jsonl")
  local url, stop = support.serve_esp32({ "seed=95" }) -- timing on: the write takes seconds
  fs.write(watch, url .. "\n")
  local st = support.start({ "--json", "station", "esp32_flash", "watch=" .. watch, "devices=no", "log=" .. log,
    "firmware=demo" }, { MPCTL_HISTORY = hist })
  local ok, err = pcall(function()
    local deadline, writing = time.now() + 60, false
    repeat
      for _, ev in ipairs(support.events(st.pump(0.2))) do
        if ev.event == "progress" and ev.label == "write" and (ev.done or 0) > 0 and ev.board_index == 1 then writing = true end
      end
    until writing or time.now() > deadline
    test.ok(writing, "the board was being written before Ctrl-C:\n" .. st.text)
  end)
  local code, out = ctrl_c(st, ok, err, { stop })
  test.eq(code, 130, out)
  local totals
  for _, ev in ipairs(support.events(out)) do if ev.event == "station_totals" then totals = ev end end
  test.eq(totals.interrupted, 1, out)
  test.eq(require("mpctl.ui").json_decode(fs.read(log)).result, "interrupted")
  local recs = support.history(hist)
  test.eq(#recs, 1)
  test.eq(recs[1].result, "interrupted")
  test.ok(type(recs[1].offset) == "number", "the record says where to resume")
  cleanup()
end)

test("station usage errors", function()
  local code, out = support.run({ "station" })
  test.eq(code, 2, out)
  test.contains(out, "needs a recipe")
  code, out = support.run({ "station", "esp32_flash", "devices=no" })
  test.eq(code, 2, out)
  test.contains(out, "nothing to watch")
  code, out = support.run({ "station", "esp32_flash", "again=perhaps", "watch=/nonexistent" })
  test.eq(code, 2, out)
  test.contains(out, "again=perhaps")
end)

test("data=FILE rows: by MAC when a row names one, else in arrival order", function()
  local data = require("mpctl.many.data")
  local rows = data.parse_csv('name,mac\n"a, quoted ""x""",24:0A:C4:00:00:01\nb,\r\nc,\n\n')
  test.eq(rows, { { "name", "mac" }, { 'a, quoted "x"', "24:0A:C4:00:00:01" }, { "b", "" }, { "c", "" } })
  local recs = { { name = "a", mac = "24:0A:C4:00:00:01" }, { name = "b" }, { name = "c" } }
  test.eq(data.row_for(recs, "24:0a:c4:00:00:01", 2).name, "a")
  test.eq(data.row_for(recs, "24:0a:c4:00:00:09", 2).name, "c")
  test.eq(data.row_for(recs, nil, 3), nil)
end)
