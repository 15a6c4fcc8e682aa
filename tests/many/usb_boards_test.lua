-- Several USB-bootloader boards flashed by one command: two simulated Pyboards (`sim pyboard
-- boards=2`, one umockdev bus, real libusb) each flashed in its own child of the many-boards
-- runner. Both leave DFU and come back as MicroPython's CDC port at the same moment; each child
-- must find its own board's port (at its bootloader's USB path), not the other's, and not give up
-- because its libusb missed the hotplug event of its board (the bug this test was written for:
-- the board that came back second timed out).
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local ui = require("mpctl.ui")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "../usb/support.lua")

local function exe() return test.exe() or debug.getregistry()["mpctl.exe"] end

local function flash_two(dir, json, ports)
  local argv = { exe(), "sim", "pyboard", "boards=2", "quiet=yes", "--", exe() }
  if json then argv[#argv + 1] = "--json" end
  argv[#argv + 1] = "pyboard_flash"
  for _, p in ipairs(ports or { "usb:1-1", "usb:1-2" }) do argv[#argv + 1] = "--port"; argv[#argv + 1] = p end
  for _, w in ipairs { "--board-timeout", "90", "firmware=demo" } do argv[#argv + 1] = w end
  return S.run(argv, 150, "two pyboards", { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir })
end

test("two simulated Pyboards flashed by one command: both PASS, the table shows both, exit 0", function()
  S.need()
  local dir = fs.tmpdir()
  local out, code = flash_two(dir, false)
  fs.remove(dir, { recursive = true })
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  test.ok(out:match("\n1%s+usb:1%-1%s+STM32F405RG%s+%S+%s+PASS"), "table row of board 1 says PASS; output: " .. out:sub(-1500))
  test.ok(out:match("\n2%s+usb:1%-2%s+STM32F405RG%s+%S+%s+PASS"), "table row of board 2 says PASS; output: " .. out:sub(-1500))
  test.contains(out, "2 boards: 2 passed, 0 failed", "summary line")
end)

test("two simulated Pyboards flashed by one command: each child reaches the REPL on its own CDC port", function()
  S.need()
  local dir = fs.tmpdir()
  local out, code = flash_two(dir, true)
  fs.remove(dir, { recursive = true })
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  local tty, result = {}, {}
  for line in out:gmatch("[^\n]+") do
    local ok, ev = pcall(ui.json_decode, line)
    if ok and type(ev) == "table" and ev.board_index then
      local t = ev.event == "log" and type(ev.msg) == "string" and ev.msg:match("^MicroPython's USB serial port: (%S+)")
      if t then tty[ev.board_index] = t end
      if ev.event == "board_end" then result[ev.board_index] = ev.result end
    end
  end
  test.eq(result[1], "pass", "board 1 result; output: " .. out:sub(-1500))
  test.eq(result[2], "pass", "board 2 result")
  test.ok(tty[1] and tty[2], "each board named its MicroPython port; output: " .. out:sub(-1500))
  test.ok(tty[1] ~= tty[2], "the two boards' ports differ (" .. tostring(tty[1]) .. ", " .. tostring(tty[2]) .. ")")
end)

test("--port auto with two simulated Pyboards in DFU mode (no tty): the recipe's @family dfu picks both as usb:PATH, both PASS", function()
  S.need()
  local dir = fs.tmpdir()
  local out, code = flash_two(dir, false, { "auto" })
  fs.remove(dir, { recursive = true })
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  test.ok(out:match("\n1%s+usb:1%-1%s+STM32F405RG%s+%S+%s+PASS"), "board usb:1-1 found and PASS; output: " .. out:sub(-1500))
  test.ok(out:match("\n2%s+usb:1%-2%s+STM32F405RG%s+%S+%s+PASS"), "board usb:1-2 found and PASS")
  test.contains(out, "2 boards: 2 passed, 0 failed", "summary line")
end)

test("--port auto with two simulated Picos in BOOTSEL: rp2_flash's @family rp2 picks both, both PASS, each on its own ttyACM", function()
  S.need()
  local dir = fs.tmpdir()
  local argv = { exe(), "sim", "pico", "boards=2", "quiet=yes", "--", exe(), "--json", "rp2_flash", "--port", "auto",
    "--board-timeout", "90", "firmware=demo" }
  local out, code = S.run(argv, 150, "two picos", { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir })
  fs.remove(dir, { recursive = true })
  test.eq(code, 0, "exit code; output: " .. out:sub(-1500))
  local result, port, tty = {}, {}, {}
  for line in out:gmatch("[^\n]+") do
    local ok, ev = pcall(ui.json_decode, line)
    if ok and type(ev) == "table" and ev.board_index then
      port[ev.board_index] = ev.board_port
      if ev.event == "board_end" then result[ev.board_index] = ev.result end
      local t = ev.event == "log" and type(ev.msg) == "string" and ev.msg:match("(/dev/ttyACM%d+)")
      if t and not tty[ev.board_index] then tty[ev.board_index] = t end
    end
  end
  test.eq(port[1], "usb:1-1", "board 1 found by --port auto as usb:PATH")
  test.eq(port[2], "usb:1-2", "board 2 found by --port auto as usb:PATH")
  test.eq(result[1], "pass", "board 1 result; output: " .. out:sub(-1500))
  test.eq(result[2], "pass", "board 2 result")
  test.ok(tty[1] and tty[2] and tty[1] ~= tty[2], "each board on its own port (" .. tostring(tty[1]) .. ", " .. tostring(tty[2]) .. ")")
end)

test("two simulated Picos in BOOTSEL and no --port: listed by USB path, not guessed; nothing written", function()
  S.need()
  local dir = fs.tmpdir()
  local out, code = S.run({ exe(), "sim", "pico", "boards=2", "quiet=yes", "--", exe(), "rp2_flash", "firmware=demo" },
    90, "two picos, no port", { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir })
  fs.remove(dir, { recursive = true })
  test.eq(code, 2, "a usage error; output: " .. out)
  test.contains(out, "2 RP2040 boards are in BOOTSEL: usb:1-1 (2e8a:0003")
  test.contains(out, "usb:1-2 (2e8a:0003")
  test.contains(out, "--port usb:BUS-PATH")
  test.ok(not out:find("bytes at 0x10000000", 1, true), "nothing was written; output: " .. out)
end)

-- Every RP2040 shows the same serial in BOOTSEL (E0C9125B0D9B: the ROM's, not the board's), so it
-- must never be taken for the board's id: a station that did so skipped every Pico after the
-- first as "already flashed", and a rollback compared two equal strings. The id is the flash
-- chip's, which MicroPython shows as its USB serial (the simulator gives each board its own).
test("RP2040 identity: the ROM's shared BOOTSEL serial is never the board's id; MicroPython's flash id is, and a station skips by it", function()
  S.need()
  local dir = fs.tmpdir()
  local e = string.format("%q --json rp2_flash firmware=demo --port", exe())
  local script = table.concat({
    e .. " usb:1-1 > one.json 2>&1; echo one=$?",
    -- what the old code put in a station's skip list for the first Pico
    "MPCTL_SKIP_DEVICES=E0C9125B0D9B,E6614C311B7A7A37 " .. e .. " usb:1-2 > two.json 2>&1; echo two=$?",
    -- board 1 again, now running MicroPython: known by its id before anything is written
    "MPCTL_SKIP_DEVICES=E6614C311B7A7A37 " .. e .. " usb:1-1 > three.json 2>&1; echo three=$?",
  }, "\n")
  local out, code = S.run({ exe(), "sim", "pico", "boards=2", "quiet=yes", "--", "sh", "-c", "cd " .. dir .. " && " .. script },
    120, "rp2040 identity", { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir })
  local function events(name)
    local list = {}
    for line in (fs.exists(fs.join(dir, name)) and fs.read(fs.join(dir, name)) or ""):gmatch("[^\n]+") do
      local ok, ev = pcall(ui.json_decode, line)
      if ok and type(ev) == "table" then list[#list + 1] = ev end
    end
    return list
  end
  local function find(list, kind)
    for _, ev in ipairs(list) do if ev.event == kind then return ev end end
  end
  local one, two, three = events("one.json"), events("two.json"), events("three.json")
  local hist = fs.exists(fs.join(dir, "mpctl/history.jsonl")) and fs.read(fs.join(dir, "mpctl/history.jsonl")) or ""
  fs.remove(dir, { recursive = true })
  test.eq(code, 0, out)
  test.contains(out, "one=0", "board 1 flashed")
  test.contains(out, "two=0", "board 2 flashed, not skipped for the ROM's serial: " .. ui.json_encode(two[#two] or {}))
  test.eq(find(one, "board").device, nil, "in BOOTSEL an RP2040's id is not known (not the ROM's serial)")
  test.eq(find(one, "history_record").record.device, "E6614C311B7A7A37", "board 1's id from its MicroPython")
  test.eq(find(two, "history_record").record.device, "E6614C311B7A7A38", "board 2's own id")
  test.ok(not hist:find("E0C9125B0D9B", 1, true), "the ROM's serial is in no history line:\n" .. hist)
  test.ok(not out:find("three=0", 1, true), "board 1 again is refused: " .. out)
  local b3 = find(three, "board")
  test.eq(b3 and b3.device, "E6614C311B7A7A37", "board 1 known by the id its MicroPython showed before BOOTSEL")
  test.eq(b3 and b3.skipped, true, "and skipped")
  test.eq(find(three, "history_record"), nil, "a skipped board writes no history line")
end)

-- The station with USB-only bootloader devices: two simulated Pyboards in DFU mode appear as
-- usb:1-1 and usb:1-2 (listed without being opened), each is flashed once; when each comes back
-- as MicroPython's CDC port while its run is still going it is the same board (identity by USB
-- path), and if its run has ended by then it is sent to DFU again (at its own USB path, not the
-- other board's) and skipped by its chip id. Ctrl-C ends the station with the totals.
test("station with two simulated Pyboards in DFU mode: each flashed once, never twice", function()
  S.need()
  local support = require("support")
  local time = require("mpctl.time")
  local dir = fs.tmpdir()
  local log = fs.join(dir, "station.csv")
  local st = support.start({ "sim", "pyboard", "boards=2", "quiet=yes", "--", exe(), "station", "pyboard_flash",
    "firmware=demo", "log=" .. log, "--board-timeout", "90" }, { XDG_STATE_HOME = dir, XDG_CACHE_HOME = dir, NO_COLOR = "1" })
  local ok, err = pcall(function()
    local deadline = time.now() + 120
    while time.now() < deadline and select(2, st.pump(0.3):gsub("PASS %[", "")) < 2 do
      if st.text:find("FAIL %[") then break end
    end
    time.sleep(2) -- both boards are back as MicroPython's CDC port by now: the station looks twice a second
    st.pump(0.2)
  end)
  st.p:kill("INT")
  local _, out = st.finish(60)
  local csv = fs.exists(log) and fs.read(log) or ""
  fs.remove(dir, { recursive = true })
  if not ok then error(err, 0) end
  test.ok(out:find("PASS %[1%] usb:1%-1") and out:find("PASS %[2%] usb:1%-2"), "both boards PASS:\n" .. out)
  -- back as MicroPython's CDC port each board may be looked at again (its USB serial is not the
  -- id the DFU ROM gave), but it is recognised by its chip id and skipped, never written twice
  test.eq(select(2, out:gsub("PASS %[", "")), 2, "two boards flashed:\n" .. out)
  test.eq(select(2, out:gsub("FAIL %[", "")), 0, "nothing failed:\n" .. out)
  test.ok(out:match("station: %d boards: 2 passed, 0 failed"), "totals:\n" .. out)
  test.eq(select(2, csv:gsub(",pass,", "")), 2, "the log has a pass line per board:\n" .. csv)
  test.eq(select(2, csv:gsub(",fail,", "")), 0, "and no fail line:\n" .. csv)
end)
