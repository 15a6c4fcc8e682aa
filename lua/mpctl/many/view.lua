-- mpctl.many.view: what a person (or a program) sees of a many-board run.
--   on a terminal (stderr a tty, no --json): one line per board, redrawn in place (port, chip,
--     MAC, step, progress %, rate), then the table on stdout;
--   not a terminal: a line when a board starts and one when it ends, then the table;
--   --json: every child event with board_index/board_port added, board_start/board_end events,
--     and a many_summary event at the end.
-- Also the JUnit file (one test case per board) and the summary table.
local ui = require("mpctl.ui")
local output = require("mpctl.output")

local M = {}

local RESULT_WORD = { pass = "PASS", fail = "FAIL", timeout = "TIMEOUT", interrupted = "INTERRUPTED",
  skipped = "SKIPPED" }

function M.color_on(fd)
  local no = os.getenv("NO_COLOR")
  return ui.isatty(fd) and not (no and no ~= "") and os.getenv("TERM") ~= "dumb"
end

local function paint(on, word)
  if not on then return word end
  local c = (word == "PASS" and "32") or (word == "SKIPPED" and "33") or (word:match("^[A-Z]") and "31") or nil
  if not c then return word end
  return "\27[1;" .. c .. "m" .. word .. "\27[0m"
end

local function fmt_rate(r)
  if not r then return "" end
  if r >= 1e6 then return string.format("%.1f MB/s", r / 1e6) end
  return string.format("%.0f kB/s", r / 1e3)
end

local function fw_text(fw)
  if type(fw) ~= "table" then return "-" end
  local v = fw.version or fw.file or "?"
  return type(fw.sha256) == "string" and (v .. " " .. fw.sha256:sub(1, 8)) or v
end

-- One board as one line (the live view and the plain start/end lines).
function M.line(b, color)
  local who = string.format("%-3s %-24s %-8s %-17s", "[" .. b.index .. "]", b.label, b.chip or "", b.device or "")
  if b.status == "done" then
    local word = RESULT_WORD[b.result] or tostring(b.result)
    return string.format("%s %s %5.1fs %s", who, paint(color, word), b.seconds or 0,
      b.result == "pass" and fw_text(b.firmware) or (b.error or ""))
  end
  if b.status == "waiting" then return who .. " waiting" end
  local pct = ""
  if type(b.done) == "number" and type(b.total) == "number" and b.total > 0 then
    pct = string.format("%3d%%", math.floor(100 * b.done / b.total))
  end
  return string.format("%s %-28s %4s %s", who, (b.stage or ""):sub(1, 28), pct, fmt_rate(b.rate))
end

-- A child's event as one JSON line, with its board's number and port added.
function M.tagged_event(b, ev)
  local tagged = {}
  for k, v in pairs(ev) do tagged[k] = v end
  tagged.board_index, tagged.board_port = b.index, b.label
  ui.event(tagged)
end

-- A view: call :event / :change / :tick from the supervisor, :finish at the end.
function M.new(opts)
  local self = { json = opts.json, boards = opts.boards, drawn = 0 }
  self.live = not opts.json and ui.isatty(2)
  self.color = M.color_on(self.live and 2 or 1)
  local cols = tonumber(os.getenv("COLUMNS") or "") or 120

  function self.redraw()
    if not self.live then return end
    local out = {}
    if self.drawn > 0 then out[#out + 1] = string.format("\27[%dA", self.drawn) end
    for _, b in ipairs(self.boards) do
      local l = M.line(b, self.color)
      -- cut at the terminal width so one board stays one line (colour codes count for nothing)
      if #l:gsub("\27%[[%d;]*m", "") > cols - 1 then l = l:sub(1, cols - 1) end
      out[#out + 1] = "\r\27[2K" .. l .. "\n"
    end
    self.drawn = #self.boards
    io.stderr:write(table.concat(out))
    io.stderr:flush()
  end

  function self.event(b, ev)
    if self.json then M.tagged_event(b, ev) end
  end

  function self.change(b)
    if self.json then
      if b.status == "running" and not b.said_start then
        b.said_start = true
        ui.event({ event = "board_start", board_index = b.index, board_port = b.label, pid = b.pid })
      elseif b.status == "done" and not b.said_end then
        b.said_end = true
        ui.event({ event = "board_end", board_index = b.index, board_port = b.label, result = b.result,
          chip = b.chip, device = b.device, firmware = b.firmware, seconds = b.seconds, error = b.error,
          error_kind = b.error_kind, exit_code = b.code, cpu = b.cpu })
      end
      return
    end
    if self.live then return end -- redrawn by tick
    if b.status == "running" and not b.said_start then
      b.said_start = true
      output.out(string.format("[%d] %s started\n", b.index, b.label))
    elseif b.status == "done" and not b.said_end then
      b.said_end = true
      output.out(M.line(b, self.color) .. "\n")
    end
  end

  self.tick = self.redraw

  function self.finish(summary)
    self.redraw()
    if self.json then
      ui.event({ event = "many_summary", boards = summary.total, passed = summary.pass, failed = summary.fail,
        timeout = summary.timeout, interrupted = summary.interrupted, skipped = summary.skipped,
        seconds = summary.seconds })
      return
    end
    output.out(M.table(self.boards, self.color) .. M.summary_line(summary) .. "\n")
  end

  return self
end

-- The final table: board, chip, MAC/id, result, firmware, time, error.
function M.table(boards, color)
  local rows = { { "#", "board", "chip", "device", "result", "firmware", "time", "error" } }
  for _, b in ipairs(boards) do
    rows[#rows + 1] = { tostring(b.index), b.label, b.chip or "-", b.device or "-",
      RESULT_WORD[b.result] or tostring(b.result or "?"), b.result == "pass" and fw_text(b.firmware) or "-",
      string.format("%.1fs", b.seconds or 0), b.error and tostring(b.error):gsub("\n.*", "") or "" }
  end
  local width = {}
  for _, r in ipairs(rows) do
    for i = 1, 7 do width[i] = math.max(width[i] or 0, #r[i]) end
  end
  local out = {}
  for n, r in ipairs(rows) do
    local cells = {}
    for i = 1, 7 do
      local cell = r[i] .. string.rep(" ", width[i] - #r[i])
      if i == 5 and n > 1 then cell = paint(color, r[i]) .. string.rep(" ", width[i] - #r[i]) end
      cells[i] = cell
    end
    cells[8] = r[8]
    out[#out + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return table.concat(out, "\n") .. "\n"
end

-- Counts by result.
function M.count(boards, seconds)
  local s = { total = #boards, pass = 0, fail = 0, timeout = 0, interrupted = 0, skipped = 0, seconds = seconds }
  for _, b in ipairs(boards) do
    local k = b.result
    if s[k] then s[k] = s[k] + 1 else s.fail = s.fail + 1 end
  end
  return s
end

function M.summary_line(s)
  local parts = { string.format("%d boards: %d passed, %d failed", s.total, s.pass, s.fail) }
  if s.timeout > 0 then parts[#parts + 1] = s.timeout .. " timed out" end
  if s.interrupted > 0 then parts[#parts + 1] = s.interrupted .. " interrupted" end
  if s.skipped > 0 then parts[#parts + 1] = s.skipped .. " skipped (already flashed)" end
  return table.concat(parts, ", ") .. (s.seconds and string.format(" in %.1fs", s.seconds) or "")
end

-- JUnit XML: one test case per board (name = port, classname = recipe); a board that did not
-- pass is a failure whose message is its error text; skipped boards are skipped.
function M.junit(path, boards, recipe, seconds)
  local results = {}
  for _, b in ipairs(boards) do
    local status = b.result == "pass" and "pass" or (b.result == "skipped" and "skip" or "fail")
    local name = b.label .. (b.device and (" (" .. b.device .. ")") or "")
    results[#results + 1] = { file = recipe, name = name, time = b.seconds or 0, status = status,
      message = status ~= "pass" and ((RESULT_WORD[b.result] or "FAIL") .. ": " .. tostring(b.error or "")) or nil }
  end
  require("mpctl.test").write_junit(path, results, seconds)
end

return M
