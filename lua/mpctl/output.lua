-- mpctl.output: what mpctl writes on stdout, so that `--json` means JSON lines only and `-q`
-- means errors only, whoever does the writing (the CLI, a command, a recipe, the library).
--
-- Three kinds of output:
--   events   ui.event{...}: one JSON line under --json, nothing otherwise (written by C).
--   results  output.out(text) / output.result(tbl, text): what a command was asked for (a file's
--            contents, a listing, a fetched file's path). Plain text on stdout, also under -q;
--            under --json the table (or {"event":"output","text":...}) as one JSON line.
--   chatter  print, io.write, io.stdout:write from anywhere: stdout normally; under --json each
--            write becomes {"event":"output","text":...}; under -q it is dropped.
-- Logs, progress and errors go to stderr (mpctl.ui), or become events under --json.
--
-- install{json=, quiet=} is called once by the CLI before anything else runs; it replaces the
-- host's print, io.write and io.stdout with the routing versions (only when --json or -q is in
-- effect, so normal runs write straight to the C stdout). io.output() still returns the real
-- file: code must not write through it.

local M = {}

local ui = require("mpctl.ui")
local real_stdout = io.stdout
local mode = { json = false, quiet = false }

local function emit_text(text)
  if text == "" then return end
  ui.event({ event = "output", text = text })
end

-- A result for a person or a script: shown even under -q.
function M.out(text)
  text = tostring(text)
  if mode.json then emit_text(text) return end
  real_stdout:write(text)
  real_stdout:flush()
end

-- A structured result: the table as one JSON line under --json, else `text` (if any) as plain
-- output.
function M.result(tbl, text)
  if mode.json then ui.event(tbl) return end
  if text ~= nil then M.out(text) end
end

local function route(text)
  if mode.quiet then return end
  if mode.json then emit_text(text) return end
  real_stdout:write(text)
end

-- A stand-in for io.stdout with the methods code uses on it.
local Stdout = {}
Stdout.__index = Stdout
Stdout.__name = "mpctl.output.stdout"
function Stdout:write(...)
  local parts = table.pack(...)
  for i = 1, parts.n do
    local v = parts[i]
    if type(v) ~= "string" and type(v) ~= "number" then
      error(string.format("bad argument #%d to 'write' (string expected, got %s)", i, type(v)), 2)
    end
    route(tostring(v))
  end
  return self
end
function Stdout:flush() if not mode.json and not mode.quiet then real_stdout:flush() end return self end
function Stdout:setvbuf() return true end
function Stdout:close() return nil, "cannot close standard file" end
function Stdout:seek() return nil, "Illegal seek", 29 end
Stdout.__tostring = function() return "file (mpctl stdout)" end

function M.install(opts)
  mode.json, mode.quiet = opts.json and true or false, opts.quiet and true or false
  if not mode.json and not mode.quiet then return end
  local stdout = setmetatable({}, Stdout)
  io.stdout = stdout
  io.write = function(...) return stdout:write(...) end
  print = function(...) -- luacheck: ignore (the host's print, replaced on purpose)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    route(table.concat(parts, "\t", 1, parts.n) .. "\n")
  end
end

function M.config() return { json = mode.json, quiet = mode.quiet } end

-- The same functions as mpctl.ui.out / mpctl.ui.result, next to ui.log and ui.event.
ui.out, ui.result = M.out, M.result

return M
