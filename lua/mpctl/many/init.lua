-- mpctl.many: one recipe on several boards from one command.
--
--   mpctl esp32_flash --port /dev/ttyUSB0 --port /dev/ttyUSB1 --port rfc2217://lab2:4001 firmware=F
--   mpctl esp32_flash --port auto firmware=F          (every attached board of the recipe's family)
--   mpctl esp32_flash --ports boards.txt --jobs 4 --board-timeout 300 --junit out.xml firmware=F
--
-- Each board runs in its own child, `mpctl --json --port P RECIPE ...` (mpctl.many.supervisor),
-- watched from one poll loop; mpctl.many.view shows it. Each child writes its own history record
-- (mpctl.attempt: keyed by the chip's MAC / unique id). Exit code 0 only if every board passed,
-- 130 after Ctrl-C, 2 if every board's child refused the command line, else 1.
local ports = require("mpctl.many.ports")
local supervisor = require("mpctl.many.supervisor")
local view = require("mpctl.many.view")
local time = require("mpctl.time")
local usage_error = require("mpctl.cli.args").usage_error

local M = {}

-- Options that belong to the many-board run, not to each child: value options (with their
-- argument) and flags.
local PARENT_VALUE = { port = true, ports = true, jobs = true, ["board-timeout"] = true, junit = true }
local PARENT_FLAG = { json = true }

-- argv without the parent's own options (so each child gets the recipe, its settings and the
-- global flags: -v, -q, --allow-exec, --baud, --board ...). Words after `--` are left alone.
function M.child_args(argv)
  local out, i = {}, 1
  while i <= #argv do
    local w = argv[i]
    if w == "--" then
      table.move(argv, i, #argv, #out + 1, out)
      break
    end
    local name, has_value = w:match("^%-%-([^=]+)(=?)")
    if name and (PARENT_VALUE[name] or PARENT_FLAG[name]) then
      if PARENT_VALUE[name] and has_value == "" then i = i + 1 end -- `--port P`: skip P too
    elseif w == "-p" then
      i = i + 1
    elseif w:match("^%-p.") then
      -- -pPORT
    else
      out[#out + 1] = w
    end
    i = i + 1
  end
  return out
end

-- The family the recipe flashes: --board's, else the recipe's `@family`, else nil (any board).
local function family_of(parsed, info)
  if parsed.opts.board then
    local ok, b = pcall(require("mpctl.board").load, parsed.opts.board)
    if ok then return b.family end
  end
  local cli = require("mpctl.cli")
  local ok, path = pcall(cli.find_recipe, parsed.command, info)
  if ok then return cli.recipe_meta(path).family end
end

-- The boards this command names, or nil when it names one port the usual way (then the recipe
-- runs in this process as always). `--port auto` means every attached board of the family; one
-- found is an ordinary single-board run.
function M.boards(parsed, info)
  local opts = parsed.opts
  local specs = {}
  for _, p in ipairs(opts.port_list or {}) do specs[#specs + 1] = p end
  if opts.ports then
    for _, p in ipairs(ports.read_list(opts.ports)) do specs[#specs + 1] = p end
  end
  local auto = false
  for _, s in ipairs(specs) do if s == "auto" then auto = true end end
  if #specs <= 1 and not opts.ports and not auto then return nil end
  local boards = ports.expand(specs, { family = family_of(parsed, info) })
  if #boards == 1 and not opts.ports and #specs == 1 then
    -- `--port auto` found one board: the plain single-board run on it
    parsed.arg.port, parsed.opts.port, parsed.opts.port_list = boards[1].url, boards[1].url, nil
    return nil
  end
  return boards
end

local function positive_int(v, what)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 then usage_error(what .. " " .. tostring(v) .. ": expected a whole number >= 1") end
  return n
end

-- --jobs (default `default_jobs`) and --board-timeout (default supervisor.DEFAULT_TIMEOUT), checked.
function M.limits(opts, default_jobs)
  local jobs = opts.jobs and positive_int(opts.jobs, "--jobs") or default_jobs
  local timeout = supervisor.DEFAULT_TIMEOUT
  if opts["board-timeout"] then
    local v, why = require("mpctl.options").convert({ kind = "seconds", spec = "seconds" }, opts["board-timeout"])
    if not v or v <= 0 then
      usage_error("--board-timeout " .. tostring(opts["board-timeout"]) .. ": " .. (why or "expected seconds > 0"))
    end
    timeout = v
  end
  return jobs, timeout
end

-- Runs `command` on every board; `boards` from M.boards. Returns the exit code.
-- extra: { env = function(board) -> env } (the station's), { forever, more } likewise.
function M.run(argv, parsed, info, boards, extra)
  extra = extra or {}
  local opts = parsed.opts
  local cli = require("mpctl.cli")
  local recipe = cli.find_recipe(parsed.command, info) -- unknown recipe: a usage error now, not N times
  local jobs, timeout = M.limits(opts, #boards)
  local rest = M.child_args(argv)
  local exe = info.exe or "mpctl"
  local v = view.new({ json = opts.json, boards = boards })
  local t0 = time.now()
  local _, interrupted = supervisor.run(boards, {
    jobs = jobs, timeout = timeout,
    argv = function(b)
      local a = { exe, "--json", "--port", b.url }
      table.move(rest, 1, #rest, #a + 1, a)
      return a
    end,
    env = extra.env,
    on_event = v.event, on_change = v.change, tick = v.tick,
    more = extra.more, forever = extra.forever,
  })
  -- A board stopped before its child started has no record of its own: the run writes one, so
  -- every board named says what became of it.
  for _, b in ipairs(boards) do
    if b.result == "interrupted" and not b.pid then
      pcall(require("mpctl.history").record, { port = b.url, result = "interrupted", error_kind = "interrupted",
        error = b.error, duration = 0 })
    end
  end
  local summary = view.count(boards, time.now() - t0)
  v.finish(summary)
  if opts.junit then view.junit(opts.junit, boards, recipe:match("([^/]+)%.lua$") or recipe, summary.seconds) end
  if interrupted then return 130 end
  if summary.pass == summary.total then return 0 end
  local all_usage = #boards > 0
  for _, b in ipairs(boards) do if b.code ~= 2 then all_usage = false end end
  return all_usage and 2 or 1
end

return M
