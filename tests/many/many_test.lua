-- Several boards from one command: four simulated ESP32s flashed at once (one with a slow EN
-- circuit), one of them failing
-- by fault injection (every host-to-board frame after the 30th corrupted: the flasher stub
-- upload fails its CRC), the others passing; the summary table, the JUnit file, the JSON events
-- tagged with the board and one history record per board, keyed by its MAC.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local support = require("support")

local GOOD = "sim://esp32?timing=off&seed=%d"
local BAD = "sim://esp32?timing=off&seed=14&corrupt=1&fault_dir=rx&fault_skip=30"

-- the fourth has a slow EN circuit (10 µF: EN rises 100 ms after release), as many boards in a
-- classroom box do
local function four()
  return { GOOD:format(11), GOOD:format(12), BAD, GOOD:format(13) .. "&en_delay=100" }
end

local function argv_for(ports, extra)
  local a = {}
  for _, e in ipairs(extra.before or {}) do a[#a + 1] = e end
  a[#a + 1] = "esp32_flash"
  for _, p in ipairs(ports) do a[#a + 1] = "--port" a[#a + 1] = p end
  for _, e in ipairs(extra.after or {}) do a[#a + 1] = e end
  a[#a + 1] = "firmware=demo"
  return a
end

test("4 boards at once, one failing: table, JUnit, history per board, exit 1", function()
  local dir, hist, cleanup = support.workdir()
  local junit = fs.join(dir, "boards.xml")
  local code, out = support.run(argv_for(four(), { after = { "--junit", junit } }), { MPCTL_HISTORY = hist })
  -- the table: a header and one row per board, in the order given
  local rows = {}
  for line in out:gmatch("[^\n]+") do
    local n = line:match("^(%d)  sim://")
    if n then rows[tonumber(n)] = line end
  end
  test.ok(out:match("#%s+board%s+chip%s+device%s+result%s+firmware%s+time%s+error"), "table header:\n" .. out)
  for _, i in ipairs({ 1, 2, 4 }) do
    test.ok(rows[i] and rows[i]:match("ESP32%s+24:0a:c4:%x%x:%x%x:%x%x%s+PASS%s+1%.27%.0 789830cb"),
      "board " .. i .. " passed:\n" .. out)
  end
  test.ok(rows[3] and rows[3]:match("FAIL") and rows[3]:find("invalid CRC", 1, true), "board 3 failed with its error:\n" .. out)
  test.contains(out, "4 boards: 3 passed, 1 failed")
  test.eq(code, 1, out)

  -- JUnit: one test case per board; the failure's message is the board's error text
  local x = fs.read(junit)
  test.contains(x, '<testsuites name="mpctl" tests="4" failures="1" skipped="0"')
  local cases = 0
  for _ in x:gmatch("<testcase ") do cases = cases + 1 end
  test.eq(cases, 4, x)
  local failure = x:match('<testcase classname="esp32_flash" name="sim://esp32%?timing=off&amp;seed=14[^"]*"[^>]*>%s*<failure message="([^"]*)"')
  test.ok(failure and failure:find("flasher stub did not start", 1, true) and failure:find("invalid CRC", 1, true),
    "the failing board's test case carries its error:\n" .. x)
  test.eq(select(2, x:gsub("<failure ", "")), 1, x)

  -- history: one record per board, each with its own MAC; the failed one says why
  local recs = support.history(hist)
  test.eq(#recs, 4, fs.read(hist))
  local devices, ok_n = {}, 0
  for _, r in ipairs(recs) do
    if r.result == "ok" then ok_n = ok_n + 1 end
    if r.device then devices[r.device] = (devices[r.device] or 0) + 1 end
    if r.port == BAD then
      test.eq(r.result, "failed")
      test.contains(r.error, "invalid CRC")
    end
  end
  test.eq(ok_n, 3)
  local distinct = 0
  for _, n in pairs(devices) do distinct = distinct + 1 test.eq(n, 1) end
  test.eq(distinct, 4, "four different MACs")
  cleanup()
end)

test("a board whose simulator will not start: its reason is in the table, the other board passes", function()
  local _, hist, cleanup = support.workdir()
  local code, out = support.run(argv_for({ GOOD:format(21), "sim://esp32?timing=off&mac=1" }, {}), { MPCTL_HISTORY = hist })
  local row = out:match("\n(2  sim://esp32%?timing=off&mac=1[^\n]*)")
  test.ok(row and row:match("FAIL") and row:find("mac= wants aa:bb:cc:dd:ee:ff", 1, true),
    "the simulator's own message goes with the error:\n" .. out)
  test.contains(out, "2 boards: 1 passed, 1 failed")
  test.eq(code, 1, out)
  cleanup()
end)

test("--json: every event tagged with its board; board_end and a summary; exit 0 when all pass", function()
  local dir, hist, cleanup = support.workdir()
  local ports = { GOOD:format(21), GOOD:format(22) }
  local code, out = support.run(argv_for(ports, { before = { "--json" }, after = { "repl=no" } }),
    { MPCTL_HISTORY = hist })
  test.eq(code, 0, out)
  local ends, progress, summary = {}, {}, nil
  for _, ev in ipairs(support.events(out)) do
    if ev.event ~= "many_summary" then
      test.ok(ev.board_index == 1 or ev.board_index == 2, "tagged: " .. require("mpctl.ui").json_encode(ev))
      test.eq(ev.board_port, ports[ev.board_index])
    end
    if ev.event == "board_end" then ends[ev.board_index] = ev end
    if ev.event == "progress" then progress[ev.board_index] = true end
    if ev.event == "many_summary" then summary = ev end
  end
  for i = 1, 2 do
    test.eq(ends[i].result, "pass")
    test.ok(ends[i].device and ends[i].device:match("^24:0a:c4"), "MAC of board " .. i)
    test.eq(ends[i].firmware.sha256:sub(1, 8), "789830cb")
    test.ok(type(ends[i].cpu) == "table" and ends[i].cpu.user >= 0, "CPU time of board " .. i)
    test.ok(progress[i], "progress events of board " .. i)
  end
  test.ok(ends[1].device ~= ends[2].device, "two boards, two MACs")
  test.eq(summary.passed, 2)
  test.eq(summary.failed, 0)
  cleanup()
end)

test("--ports FILE and --jobs 1: the boards one after the other, same results", function()
  local dir, hist, cleanup = support.workdir()
  local list = fs.join(dir, "ports.txt")
  fs.write(list, "# the rig\n" .. GOOD:format(31) .. "\n\n  " .. GOOD:format(32) .. "  # second\n")
  local code, out = support.run({ "--json", "esp32_flash", "--ports", list, "--jobs", "1", "repl=no", "firmware=demo" },
    { MPCTL_HISTORY = hist })
  test.eq(code, 0, out)
  local starts, ends = {}, {}
  local seq = {}
  for _, ev in ipairs(support.events(out)) do
    if ev.event == "board_start" then starts[ev.board_index] = true seq[#seq + 1] = "s" .. ev.board_index end
    if ev.event == "board_end" then ends[ev.board_index] = ev seq[#seq + 1] = "e" .. ev.board_index end
  end
  -- with one job, board 2 starts only after board 1 ended
  test.eq(table.concat(seq, " "), "s1 e1 s2 e2")
  test.eq(ends[2].board_port, GOOD:format(32))
  cleanup()
end)

test("a board past --board-timeout is stopped, the others are not held up", function()
  local dir, hist, cleanup = support.workdir()
  -- the slow one: timing on (a paced wire at 115200 before the stub) and 2 s before every reply
  local slow = "sim://esp32?seed=41&delay=2000"
  local code, out = support.run(argv_for({ slow, GOOD:format(42) }, { before = { "--json" },
    after = { "--board-timeout", "4", "repl=no" } }), { MPCTL_HISTORY = hist })
  test.eq(code, 1, out)
  local ends = {}
  for _, ev in ipairs(support.events(out)) do if ev.event == "board_end" then ends[ev.board_index] = ev end end
  test.eq(ends[1].result, "timeout")
  test.contains(ends[1].error, "--board-timeout")
  test.eq(ends[2].result, "pass")
  -- the slow board's own history record says it timed out (it was stopped at its deadline)
  local by_port = {}
  for _, r in ipairs(support.history(hist)) do by_port[r.port] = r end
  test.eq(by_port[slow].result, "failed")
  test.eq(by_port[slow].error_kind, "timeout")
  test.contains(by_port[slow].error, "--board-timeout (4 s)")
  test.eq(by_port[GOOD:format(42)].result, "ok")
  cleanup()
end)

test("bad many-board command lines are usage errors", function()
  local dir, hist, cleanup = support.workdir()
  local env = { MPCTL_HISTORY = hist }
  local code, out = support.run({ "esp32_flash", "--port", GOOD:format(1), "--port", GOOD:format(1), "firmware=demo" }, env)
  test.eq(code, 2, out)
  test.contains(out, "named twice")
  code, out = support.run({ "esp32_flash", "--ports", fs.join(dir, "missing.txt"), "firmware=demo" }, env)
  test.eq(code, 2, out)
  test.contains(out, "no such file")
  code, out = support.run({ "esp32_flash", "--port", GOOD:format(1), "--port", GOOD:format(2), "--jobs", "0" }, env)
  test.eq(code, 2, out)
  test.contains(out, "--jobs 0")
  code, out = support.run({ "no_such_recipe", "--port", GOOD:format(1), "--port", GOOD:format(2) }, env)
  test.eq(code, 2, out)
  test.ok(not fs.exists(hist), "nothing ran")
  cleanup()
end)

test("on a terminal: one line per board redrawn in place, then the table", function()
  local dir, hist, cleanup = support.workdir()
  local proc = require("mpctl.proc")
  local argv = { test.exe() }
  local args = argv_for({ GOOD:format(71), GOOD:format(72) }, { after = { "repl=no" } })
  table.move(args, 1, #args, 2, argv)
  local p = proc.spawn({ argv = argv, pty = true, env = { MPCTL_HISTORY = hist, NO_COLOR = "1", COLUMNS = "100" } })
  local tty = require("mpctl.serial").wrap_fd(p:fd(), "tty")
  local text, deadline = "", require("mpctl.time").now() + 120
  while require("mpctl.time").now() < deadline do
    local ok, chunk = pcall(tty.read, tty, 65536, 0.5)
    if not ok or (chunk == "" and tty:is_eof()) then break end
    text = text .. chunk
    if p:wait(0) and chunk == "" then break end
  end
  local code = p:wait(30)
  tty:close()
  p:close()
  test.eq(code, 0, text)
  -- redrawn: the cursor goes up over the two board lines and each line is cleared first
  test.contains(text, "\27[2A")
  test.contains(text, "\r\27[2K[1] " .. GOOD:format(71))
  test.ok(text:match("%[2%] [^\n]+PASS"), "the final line of board 2:\n" .. text)
  test.contains(text, "2 boards: 2 passed, 0 failed")
  cleanup()
end)

test("the child's command line drops the parent's options only", function()
  local many = require("mpctl.many")
  test.eq(many.child_args({ "-v", "--port", "A", "-pB", "--port=C", "--ports", "f", "--jobs", "2", "--json",
    "--board-timeout=5", "--junit", "j.xml", "esp32_flash", "firmware=x", "--baud", "460800", "--", "--port", "w" }),
    { "-v", "esp32_flash", "firmware=x", "--baud", "460800", "--", "--port", "w" })
end)
