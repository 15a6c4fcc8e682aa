-- Ctrl-C during a parallel run: SIGINT to the mpctl process once every board is writing. Every
-- child (and the simulator each one started) is gone, each board's history record says
-- interrupted (with the offset to resume from), a board not yet started says so, exit 130.
local test = require("mpctl.test")
local support = require("support")

test("SIGINT during a parallel run stops every board cleanly: records say interrupted, exit 130", function()
  local dir, hist, cleanup = support.workdir()
  -- timing on: a 1.5 MB write takes seconds, so the interrupt lands mid-write; --jobs 2 leaves
  -- the third board waiting
  local ports = { "sim://esp32?seed=51", "sim://esp32?seed=52", "sim://esp32?seed=53" }
  local argv = { "--json", "esp32_flash", "--jobs", "2", "firmware=demo" }
  for _, p in ipairs(ports) do argv[#argv + 1] = "--port" argv[#argv + 1] = p end
  local r = support.start(argv, { MPCTL_HISTORY = hist })
  -- wait (bounded) until both running boards report write progress
  local deadline = require("mpctl.time").now() + 60
  local pids, writing = {}, {}
  while require("mpctl.time").now() < deadline do
    local n = 0
    for _, ev in ipairs(support.events(r.pump(0.2))) do
      if ev.event == "board_start" then pids[ev.board_index] = ev.pid end
      if ev.event == "progress" and ev.label == "write" and (ev.done or 0) > 0 then writing[ev.board_index] = true end
    end
    for _ in pairs(writing) do n = n + 1 end
    if n == 2 then break end
  end
  test.ok(writing[1] and writing[2], "both boards were writing before the interrupt:\n" .. r.text)
  r.p:kill("INT")
  local code, out = r.finish(60)
  test.eq(code, 130, out)
  -- every child gone (its process group too: the simulators were started by the children)
  for i = 1, 2 do
    test.ok(pids[i] and not support.alive(pids[i]), "child of board " .. i .. " is gone")
    test.eq(os.execute("pgrep -g " .. math.tointeger(pids[i]) .. " >/dev/null"), nil, "process group of board " .. i .. " is empty")
  end
  local ends = {}
  for _, ev in ipairs(support.events(out)) do if ev.event == "board_end" then ends[ev.board_index] = ev end end
  for i = 1, 3 do test.eq(ends[i].result, "interrupted", out) end
  test.contains(ends[3].error, "not started")
  -- history: the two boards that were writing say interrupted, with where to resume; the third too
  local recs = support.history(hist)
  test.eq(#recs, 3, require("mpctl.fs").read(hist))
  local by_port = {}
  for _, rec in ipairs(recs) do by_port[rec.port] = rec end
  for i = 1, 3 do test.eq(by_port[ports[i]].result, "interrupted") end
  for i = 1, 2 do
    test.eq(by_port[ports[i]].error_kind, "interrupted")
    test.ok(by_port[ports[i]].device, "board " .. i .. " record keyed by its MAC")
    test.ok(type(by_port[ports[i]].offset) == "number", "board " .. i .. " record says where to resume")
  end
  cleanup()
end)
