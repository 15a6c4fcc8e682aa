-- The simulated Pyboard's USB CDC port (lua/mpctl/sim/usb/cdc.lua), checked from outside: a plain
-- serial client (tests/sim/cdc_client.lua) runs under `mpctl sim pyboard start=app trace=F`, and the
-- pacing is read from the simulator's own trace clock (never a wall-clock assertion here):
--   host -> board: N bytes take at least N / 486 KiB/s from the host's write to the last hand-over;
--   board -> host: the output goes out no faster than 506 KiB/s;
--   a busy REPL: the 1024-byte ring (1023 usable) keeps what fits, the rest is lost (trace says
--   how many) -- or, with cdc_flow=rts, nothing is lost (the host waits: NAK);
--   Ctrl-C still interrupts a running loop (friendly and raw REPL, also behind a full ring).
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local here = debug.getinfo(1, "S").source:match("^@(.*/)")
local S = dofile(here .. "../usb/support.lua")
local trace_lines = dofile(here .. "simboard.lua").trace_lines

local RATE_OUT, RATE_IN = 486 * 1024, 506 * 1024

local function need_micropython()
  S.need()
  local ok = pcall(function() return require("mpctl.sim.micropython").script_path() end)
  if not ok then test.skip("MicroPython WebAssembly package not installed") end
end

-- Runs the client's steps on a fresh simulated board; returns its RESULT lines as a table, the
-- trace path and the whole output.
local function run(dir, steps, extra)
  local trace = fs.join(dir, "trace")
  local exe = S.sh_quote(test.exe() or debug.getregistry()["mpctl.exe"])
  local args = { "start=app", "trace=" .. trace }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local out, code = S.run_sim("pyboard", args,
    exe .. " --allow-exec " .. S.sh_quote(here .. "cdc_client.lua") .. " steps=" .. steps, 180)
  test.eq(code, 0, "client exit code; output: " .. out)
  local r = {}
  for step, key, value in out:gmatch("RESULT (%S+) (%S+) (%S+)") do r[step .. "." .. key] = tonumber(value) or value end
  test.eq(r["all.done"], "yes", "the client ran every step: " .. out)
  return r, trace, out
end

local function sum(list, i)
  local n = 0
  for _, l in ipairs(list) do n = n + l[i] end
  return n
end

test("pyboard CDC: bytes to the board take at least size / 486 KiB/s, output leaves at 506 KiB/s at most, by the simulator's clock", function()
  need_micropython()
  local dir = fs.tmpdir()
  local r, trace = run(dir, "pace")
  local n = r["pace.in_bytes"]
  -- host -> board: the client sent "\1" (raw REPL) then the n-byte command; the trace's host
  -- writes and hand-overs, in order, locate the command's first write and its last hand-over
  local sent = trace_lines(trace, "host sent (%d+) at ([%d%.]+)")
  local got = trace_lines(trace, "cdc rx (%d+) at ([%d%.]+)")
  test.eq(sum(sent, 1), 1 + n + #"print('z' * 200000)\4" + 1, "every byte the client wrote reached the port")
  test.eq(sum(got, 1), sum(sent, 1), "every byte reached MicroPython (nothing lost while it read)")
  test.eq(sent[1][1], 1, "the raw-REPL entry came first, alone")
  local t_first = sent[2][2]
  local cum, t_last = 0, nil
  for _, g in ipairs(got) do
    cum = cum + g[1]
    if cum >= 1 + n then t_last = g[2] break end
  end
  local need = n / RATE_OUT
  -- the bus alone (what crossed into the board, whether or not the REPL had read it yet)
  local cum2, t_bus = 0, nil
  for _, u in ipairs(trace_lines(trace, "usb out (%d+) at ([%d%.]+)")) do
    cum2 = cum2 + u[1]
    if cum2 >= 1 + n then t_bus = u[2] break end
  end
  test.ok(t_bus - t_first >= need * 0.999, string.format(
    "%d bytes crossed the bus in %.4f s by the simulator's clock; USB full speed needs %.4f s", n, t_bus - t_first, need))
  test.ok(t_last - t_first >= need * 0.999, string.format(
    "%d bytes taken in %.4f s by the simulator's clock; USB full speed needs %.4f s", n, t_last - t_first, need))
  -- board -> host: the 200 000 'z' (+ the protocol bytes around them) leave in pieces no faster
  -- than the rate; the first piece may use 2 ms of credit banked before it
  test.eq(r["pace.out_z"], 200000, "the whole output arrived")
  local tx = trace_lines(trace, "cdc tx (%d+) at ([%d%.]+)")
  local big = {}
  for _, t in ipairs(tx) do if t[2] >= t_last then big[#big + 1] = t end end
  local bytes = sum(big, 1) - big[1][1]
  local span = big[#big][2] - big[1][2]
  test.ok(bytes >= 200000 - 1024, "the output is in the trace")
  test.ok(span + 0.002 >= bytes / RATE_IN * 0.999, string.format(
    "%d bytes out in %.4f s by the simulator's clock; USB full speed needs %.4f s", bytes, span, bytes / RATE_IN))
  fs.remove(dir, { recursive = true })
end)

test("pyboard CDC: bytes sent while MicroPython runs code fill its 1023-byte ring and the rest is lost; Ctrl-C still interrupts", function()
  need_micropython()
  local dir = fs.tmpdir()
  local r, trace = run(dir, "overflow,interrupt")
  test.eq(r["overflow.echoed_y"], 1023, "the REPL read what the ring held, no more")
  -- the line and the 3000 bytes behind it (the client's first write) crossed the bus at its rate,
  -- even though most of them went nowhere (MicroPython was busy: nothing waits for it here)
  local sent = trace_lines(trace, "host sent (%d+) at ([%d%.]+)")
  local n, cum, t_bus = #"x = sum(range(1000000))\r" + 3000, 0, nil
  for _, u in ipairs(trace_lines(trace, "usb out (%d+) at ([%d%.]+)")) do
    cum = cum + u[1]
    if cum >= n then t_bus = u[2] break end
  end
  test.ok(t_bus - sent[1][2] >= n / RATE_OUT * 0.999, string.format(
    "%d bytes crossed the bus in %.4f s by the simulator's clock; USB full speed needs %.4f s", n,
    t_bus - sent[1][2], n / RATE_OUT))
  local lost = sum(trace_lines(trace, "cdc rx overrun: (%d+) bytes lost"), 1)
  -- 3000 behind the busy line, and 2000 - 1023 behind the raw-REPL loop
  test.eq(lost, (3000 - 1023) + (2000 - 1023), "bytes lost to the full ring, by the trace")
  test.eq(r["interrupt.friendly"], "ok", "Ctrl-C stopped a loop in the friendly REPL")
  test.eq(r["interrupt.raw_traceback"], "yes", "the raw REPL reported KeyboardInterrupt")
  test.eq(r["interrupt.raw"], "ok", "the raw REPL worked after the interrupt")
  test.eq(#trace_lines(trace, "cdc: (KeyboardInterrupt)"), 2, "two interrupts, traced")
  fs.remove(dir, { recursive = true })
end)

test("pyboard CDC with cdc_flow=rts: a full ring holds the host back (NAK) and nothing is lost", function()
  need_micropython()
  local dir = fs.tmpdir()
  local r, trace = run(dir, "overflow", { "cdc_flow=rts" })
  test.eq(r["overflow.echoed_y"], 3000, "every byte reached the REPL")
  test.eq(#trace_lines(trace, "cdc rx (overrun)"), 0, "no overrun in the trace")
  fs.remove(dir, { recursive = true })
end)

test("pyboard CDC: a wrong cdc_flow or cdc_rx is refused with what to give instead", function()
  S.need()
  local out, code = S.run_sim("pyboard", { "start=app", "cdc_flow=xon" }, "true", 60)
  test.ok(code ~= 0, "non-zero exit; output: " .. out)
  test.contains(out, "cdc_flow=xon is not a flow mode")
  test.contains(out, "cdc_flow=rts")
  -- the board starts in DFU (no CDC port yet): refused all the same, before anything runs
  out, code = S.run_sim("pyboard", { "cdc_rx=1" }, "true", 60)
  test.ok(code ~= 0, "non-zero exit; output: " .. out)
  test.contains(out, "cdc_rx=1 is not a buffer size")
end)
