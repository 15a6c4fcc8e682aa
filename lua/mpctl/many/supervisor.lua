-- mpctl.many.supervisor: runs one child process per board and watches them all from one poll
-- loop. Each child is `mpctl --json RECIPE --port P ...` (the same mpctl, one port each), so a
-- board that fails, hangs or crashes takes only its own process down: the others' events keep
-- flowing, the loop never blocks on one child. Why processes and not coroutines: every driver
-- and recipe already runs alone in a process, with its own history record, interrupt handling
-- and memory; a stuck C call or a runaway recipe in one board cannot stall its neighbours, and
-- the kernel accounts each board's CPU time (wait4's rusage).
--
--   supervisor.run(boards, opts) -> boards, interrupted
--     boards[i]: { url=, id=, label= } (filled in: status, result, chip, device, stage, done,
--       total, rate, firmware, record, error, error_kind, code, seconds, cpu={user, system})
--     opts.argv(board) -> argv      the child's command line
--     opts.env(board) -> env|nil    added to the child's environment (proc.spawn's env)
--     opts.jobs                     children at once (default: all)
--     opts.timeout                  seconds per board, from its start (default 600)
--     opts.on_event(board, ev)      every JSON event a child prints, as decoded
--     opts.on_change(board)         a board's state changed (start, stage, progress, end)
--     opts.tick()                   about 5 times a second (redraws)
--     opts.more() -> {board...}     boards to add while running (the station's new arrivals);
--                                   with opts.forever the loop runs until interrupted
--
-- Results: "pass" (exit 0), "fail", "timeout" (past opts.timeout: SIGTERM, then SIGKILL after a
-- grace), "interrupted" (Ctrl-C / SIGTERM to mpctl: every child gets SIGINT, so each writes its
-- own history record saying interrupted; boards not started yet say "not started"),
-- "skipped" (the child refused a board it had already flashed: MPCTL_SKIP_DEVICES).
local proc = require("mpctl.proc")
local serial = require("mpctl.serial")
local time = require("mpctl.time")
local ui = require("mpctl.ui")
local errors = require("mpctl.errors")
local interrupt = require("mpctl.interrupt")

local M = {}

M.DEFAULT_TIMEOUT = 600 -- s: a full ESP32 flash at 115200 baud takes ~3 minutes; 4 MB erase + write more
local GRACE = 10        -- s between SIGTERM/SIGINT and SIGKILL: enough to write the history record
local TICK = 0.2

-- ---------------------------------------------------------------------------------------
-- one child's events

local function short(s, n)
  s = tostring(s):gsub("%s+", " ")
  if #s > n then s = s:sub(1, n - 1) .. "…" end
  return s
end

local HANDLERS = {
  progress = function(b, ev)
    b.stage, b.done, b.total = ev.label or b.stage, ev.done, ev.total
    if type(ev.seconds) == "number" and ev.seconds > 0 and type(ev.done) == "number" then
      b.rate = ev.done / ev.seconds
    end
  end,
  board = function(b, ev)
    b.chip, b.device = ev.chip or b.chip, ev.device or b.device
    b.id.device = b.device
    if ev.skipped then b.skipped = true end
  end,
  esp_flash = function(b, ev) b.chip, b.device = ev.chip or b.chip, ev.device or ev.mac or b.device end,
  check = function(b, ev)
    b.stage = ev.skipped and ("skipped: " .. tostring(ev.name)) or tostring(ev.name)
  end,
  log = function(b, ev)
    if ev.level == "info" or ev.level == "warn" then b.stage = short(ev.msg or "", 60) end
    if ev.level == "warn" then b.warning = ev.msg end
  end,
  history_record = function(b, ev)
    if type(ev.record) ~= "table" then return end
    b.record = ev.record
    b.firmware = type(ev.record.firmware) == "table" and ev.record.firmware or b.firmware
    b.device = ev.record.device or b.device
    b.chip = ev.record.chip or b.chip
  end,
  -- A line printed just before the error (a simulator child's "bad option" on the shared stderr,
  -- say) is often its reason: it goes with the error, since the board's own output is not shown.
  error = function(b, ev)
    local said = b.said_since_event
    b.error, b.error_kind = ev.message, ev.kind
    if said and type(ev.message) == "string" and not ev.message:find(said, 1, true) then
      b.error = ev.message .. " (" .. said .. ")"
    end
  end,
}

local function take_line(b, line, opts)
  local ok, ev = pcall(ui.json_decode, line)
  if not ok or type(ev) ~= "table" or type(ev.event) ~= "string" then
    -- stderr shares the pipe: "mpctl: ..." lines and anything a crash prints
    if line:match("%S") then
      b.last_text = line:gsub("^mpctl: ", "")
      b.said_since_event = b.last_text
    end
    return
  end
  local h = HANDLERS[ev.event]
  if h then h(b, ev) end
  if ev.event ~= "history_record" then b.said_since_event = nil end -- the record precedes the error
  if opts.on_event then opts.on_event(b, ev) end
  if h and opts.on_change then opts.on_change(b) end
end

local function drain(b, opts)
  local data = b.out:read(65536, 0)
  if data and #data > 0 then
    b.buf = b.buf .. data
    while true do
      local nl = b.buf:find("\n", 1, true)
      if not nl then break end
      local line = b.buf:sub(1, nl - 1)
      b.buf = b.buf:sub(nl + 1)
      take_line(b, line, opts)
    end
  end
  if b.out:is_eof() then
    if #b.buf > 0 then take_line(b, b.buf, opts) b.buf = "" end
    b.out:close()
    b.out = nil
  end
end

-- ---------------------------------------------------------------------------------------
-- starting and ending children

local function start(b, opts)
  b.status, b.t0, b.buf = "running", time.now(), ""
  b.stage = "starting"
  -- the deadline goes to the child too, so the history record it writes when stopped at the
  -- deadline says timeout, not interrupted (mpctl.attempt)
  local env = opts.env and opts.env(b) or {}
  -- (0.5 s early: the supervisor's own clock started just before this)
  env.MPCTL_BOARD_DEADLINE = string.format("%.3f", time.wall() + opts.timeout - 0.5)
  env.MPCTL_BOARD_TIMEOUT = string.format("%g", opts.timeout)
  local ok, p = pcall(proc.spawn, { argv = opts.argv(b), pty = false, stderr = "stdout", env = env })
  if not ok then
    b.status, b.result, b.error, b.seconds = "done", "fail", tostring(p), 0
    if opts.on_change then opts.on_change(b) end
    return
  end
  b.proc = p
  b.pid = p:pid()
  b.out = serial.wrap_fd(p:stdout_fd(), "board " .. b.label)
  if opts.on_change then opts.on_change(b) end
end

local function signal(b, sig)
  if b.proc then pcall(b.proc.kill, b.proc, sig) end
end

local function result_of(b, code)
  if b.timed_out then return "timeout" end
  if b.skipped then return "skipped" end
  if code == 0 then return "pass" end
  if b.interrupted or code == 130 then return "interrupted" end
  return "fail"
end

local function finish(b, code, opts)
  b.code = code
  b.seconds = time.now() - b.t0
  b.cpu = b.proc:rusage()
  b.proc:close()
  b.proc = nil
  b.status = "done"
  b.result = result_of(b, code)
  if b.result == "timeout" then
    b.error = string.format("no result after %gs (--board-timeout): stopped%s", opts.timeout,
      b.stage and ("; last step: " .. b.stage) or "")
    b.error_kind = "timeout"
  elseif b.result ~= "pass" and not b.error then
    b.error = b.last_text or ("exited with code " .. tostring(code))
  end
  if b.result == "pass" then b.error = nil end
  if opts.on_change then opts.on_change(b) end
end

-- ---------------------------------------------------------------------------------------
-- the loop

local function running(boards)
  local n = 0
  for _, b in ipairs(boards) do if b.status == "running" then n = n + 1 end end
  return n
end

-- One pass: start what may start, read what is ready, reap what ended, enforce deadlines.
local function step(boards, opts, state)
  if not state.stopping then
    for _, b in ipairs(boards) do
      if b.status == "waiting" and running(boards) < opts.jobs then start(b, opts) end
    end
  end
  local ports, owner = {}, {}
  for _, b in ipairs(boards) do
    if b.out then ports[#ports + 1] = b.out owner[b.out] = b end
  end
  if #ports > 0 then
    for _, port in ipairs(serial.poll(ports, TICK)) do drain(owner[port], opts) end
  else
    time.sleep(TICK)
  end
  local now = time.now()
  for _, b in ipairs(boards) do
    if b.status == "running" then
      if b.out == nil or b.kill_at then
        local code = b.proc:wait(0)
        if code then
          if b.out then drain(b, opts) end
          if b.out then b.out:close() b.out = nil end
          finish(b, code, opts)
        end
      end
      if b.status == "running" then
        if not b.kill_at and now - b.t0 > opts.timeout then
          b.timed_out, b.kill_at = true, now + GRACE
          signal(b, "TERM")
        elseif b.kill_at and now > b.kill_at and not b.killed then
          b.killed = true
          signal(b, "KILL")
        end
      end
    end
  end
end

-- Ctrl-C: no new boards; SIGINT to every child (mpctl in the child records "interrupted" and
-- exits 130); a second Ctrl-C, or a child still there after the grace, gets SIGKILL.
local function stop_all(boards, state, now)
  if state.stopping then
    for _, b in ipairs(boards) do
      if b.status == "running" and not b.killed then b.killed = true signal(b, "KILL") end
    end
    return
  end
  state.stopping = true
  for _, b in ipairs(boards) do
    if b.status == "waiting" then
      b.status, b.result, b.error, b.seconds = "done", "interrupted", "not started (interrupted)", 0
    elseif b.status == "running" then
      b.interrupted, b.kill_at = true, now + GRACE
      signal(b, "INT")
    end
  end
end

function M.run(boards, opts)
  opts.jobs = opts.jobs or math.max(#boards, 1)
  opts.timeout = opts.timeout or M.DEFAULT_TIMEOUT
  for i, b in ipairs(boards) do
    b.index, b.status, b.label = i, "waiting", b.label or b.url
    b.id = b.id or { port = b.url }
  end
  local state = {}
  local last_tick = 0
  while true do
    if not state.stopping and opts.more then
      for _, nb in ipairs(opts.more() or {}) do
        nb.index, nb.status, nb.label = #boards + 1, "waiting", nb.label or nb.url
        boards[#boards + 1] = nb
        if opts.on_change then opts.on_change(nb) end
      end
    end
    local ok, err = pcall(step, boards, opts, state)
    if not ok then
      if not errors.is(err, "interrupted") then
        -- a bug here must not leave children behind
        for _, b in ipairs(boards) do if b.proc then b.proc:close() end end
        error(err, 0)
      end
      interrupt.acknowledge()
      stop_all(boards, state, time.now())
      if opts.on_change then for _, b in ipairs(boards) do opts.on_change(b) end end
    end
    if opts.tick and time.now() - last_tick >= TICK then last_tick = time.now() opts.tick() end
    local busy = false
    for _, b in ipairs(boards) do if b.status ~= "done" then busy = true end end
    if not busy and (state.stopping or not opts.forever) then break end
  end
  return boards, state.stopping
end

return M
