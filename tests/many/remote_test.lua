-- Remote and local ports in one run: one simulated ESP32 exported through ser2net (Debian; the
-- RFC 2217 server board farms run), which itself reaches the board over RFC 2217 and carries
-- baud, DTR and RTS through, next to two local sim:// boards. All three are flashed and reach
-- the REPL, each with its own MAC in the table and the history.
local test = require("mpctl.test")
local support = require("support")

test("rfc2217:// through ser2net and local ports in the same run", function()
  local dir, hist, cleanup = support.workdir()
  local board, stop_board = support.serve_esp32({ "timing=off", "seed=61" })
  local remote, stop_s2n = support.ser2net(board)
  local ports = { "sim://esp32?timing=off&seed=62", remote, "sim://esp32?timing=off&seed=63" }
  local argv = { "esp32_flash", "firmware=demo" }
  for _, p in ipairs(ports) do argv[#argv + 1] = "--port" argv[#argv + 1] = p end
  local ok, code, out = pcall(support.run, argv, { MPCTL_HISTORY = hist })
  stop_s2n()
  stop_board()
  if not ok then error(code, 0) end
  test.eq(code, 0, out)
  test.contains(out, "3 boards: 3 passed, 0 failed")
  local row = out:match("\n2  (rfc2217://[^\n]+)")
  test.ok(row and row:find(remote, 1, true) and row:match("ESP32%s+24:0a:c4:%x%x:%x%x:%x%x%s+PASS"), "remote row:\n" .. out)
  local recs = support.history(hist)
  test.eq(#recs, 3)
  local seen = {}
  for _, r in ipairs(recs) do
    test.eq(r.result, "ok")
    seen[r.port] = r.device
  end
  test.ok(seen[remote] and seen[remote] ~= seen[ports[1]] and seen[remote] ~= seen[ports[3]], "remote board's own MAC")
  cleanup()
end)
