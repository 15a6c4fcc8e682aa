-- mpctl.options: a recipe's header (description, typed options) and the conversion of what the
-- command line gave into typed values, done once, before the recipe runs.
--
--   --- One line saying what the recipe does.
--   -- @option NAME: TYPE [= DEFAULT] [; help text]
--   -- @option verify: yes|no = yes; check what was written
--   -- @option timeout: seconds = 10; how long to wait for the REPL after reset
--   -- @option backup: FILE|flash|files|all; keep what was there first
--
-- TYPE: `yes|no` -> boolean; `seconds` / `number` -> number; `integer` -> integer (0x.. too);
-- lower-case words `a|b|c` -> one of them; an UPPER-case word (FILE, DIR, URL, TEXT, ...) -> any
-- string; a mix (`FILE|flash|files|all`) -> one of the words, else the string. A line whose
-- text after the colon is not such a type is an untyped option (older recipes): its value stays
-- the string given (or true for a bare --name).

local M = {}

local NUMERIC = { seconds = true, number = true, integer = true }

-- Parses the text after "NAME:" into a type, or nil when it is plain help text.
local function parse_type(text)
  local spec, rest = text:match("^([%w_%-%.|]+)%s*(.*)$")
  if not spec then return nil end
  local default, help
  if rest == "" then
    help = ""
  elseif rest:sub(1, 1) == ";" then
    help = rest:sub(2):match("^%s*(.-)%s*$")
  elseif rest:sub(1, 1) == "=" then
    default, help = rest:match("^=%s*([^;]-)%s*;%s*(.-)%s*$")
    if not default then default, help = rest:match("^=%s*(.-)%s*$"), "" end
    if default == "" then return nil end
  else
    return nil
  end
  local words, any_string = {}, false
  for w in spec:gmatch("[^|]+") do
    if w:match("^[%u][%u%d_]*$") then any_string = true
    elseif w:match("^[%l%d][%w_%-%.]*$") then words[#words + 1] = w
    else return nil end
  end
  local t = { spec = spec, help = help, default_text = default }
  if #words == 2 and not any_string and ((words[1] == "yes" and words[2] == "no") or
    (words[1] == "no" and words[2] == "yes")) then
    t.kind = "bool"
  elseif #words == 1 and not any_string and NUMERIC[words[1]] then
    t.kind = words[1]
  elseif any_string then
    t.kind, t.words = "string", words
  elseif #words >= 2 then
    t.kind, t.words = "enum", words
  else
    return nil -- a single lower-case word that is no type name: help text
  end
  return t
end

local TRUE_WORDS = { yes = true, ["true"] = true, on = true, ["1"] = true }
local FALSE_WORDS = { no = true, ["false"] = true, off = true, ["0"] = true }

-- The one yes/no parser: yes/no, true/false, on/off, 1/0 (any case) or a Lua boolean; nil or ""
-- gives `default`. Anything else is refused: returns nil and the reason (naming the accepted
-- values) — a typo must not quietly mean "no". `name` (optional) goes into the reason.
function M.yes_no(value, default, name)
  if value == nil or value == "" then return default end
  if value == true or value == false then return value end
  local lv = tostring(value):lower()
  if TRUE_WORDS[lv] then return true end
  if FALSE_WORDS[lv] then return false end
  return nil, string.format("%s'%s' is not yes or no (accepted values: yes, no)", name and (name .. ": ") or "",
    tostring(value))
end

-- Converts `value` (a string from the command line, or true for a bare --name) for option `o`.
-- Returns the typed value, or nil and the reason (naming the accepted values).
function M.convert(o, value)
  if o.kind == nil then return value end
  local v = value
  if o.kind == "bool" then
    local b = M.yes_no(v)
    if b == nil then return nil, "accepted values: yes, no" end
    return b
  end
  if v == true then return nil, "needs a value (" .. o.spec .. ")" end
  if type(v) == "number" then v = tostring(v) end
  if o.kind == "seconds" or o.kind == "number" then
    local n = tonumber(v)
    if not n or n ~= n or (o.kind == "seconds" and n < 0) then
      return nil, o.kind == "seconds" and "expected a number of seconds, e.g. 10 or 2.5" or "expected a number"
    end
    return n
  end
  if o.kind == "integer" then
    local n = math.tointeger(tonumber(v))
    if not n then return nil, "expected an integer (decimal or 0x hex)" end
    return n
  end
  for _, w in ipairs(o.words) do
    if v == w then return v end
  end
  if o.kind == "string" then
    if v == "" then return nil, "needs a value (" .. o.spec .. ")" end
    return v
  end
  return nil, "accepted values: " .. table.concat(o.words, ", ")
end

-- Reads a script's header: the description (`--- text`), options (`-- @option ...`) and
-- `-- @raw-args`. Stops at the first line that is neither a comment nor blank.
function M.read_meta(path)
  local meta = { options = {}, option_names = {}, by_name = {} }
  local f = io.open(path, "r")
  if not f then return meta end
  for line in f:lines() do
    local d = line:match("^%-%-%-%s*(.-)%s*$")
    if d and not meta.description and d ~= "" then meta.description = d end
    local name, text = line:match("^%-%-%s*@option%s+([%w_%-]+)%s*:?%s*(.-)%s*$")
    if name then
      local o = parse_type(text) or { help = text }
      o.name = name
      meta.options[#meta.options + 1] = o
      meta.option_names[name] = true
      meta.by_name[name] = o
      if o.default_text then
        local v, why = M.convert(o, o.default_text)
        if v == nil then error(string.format("%s: @option %s: bad default '%s': %s", path, name, o.default_text, why), 0) end
        o.default = v
      end
    end
    if line:match("^%-%-%s*@raw%-args") then meta.raw_args = true end
    -- `-- @family: esp`: the board family the recipe flashes (`--port auto` with several boards)
    local fam = line:match("^%-%-%s*@family%s*:?%s*([%w_]+)")
    if fam then meta.family = fam end
    if not line:match("^%-%-") and not line:match("^%s*$") then break end
  end
  f:close()
  return meta
end

-- True when a bare `--name` is the whole option (yes|no options), so the next word is not its value.
function M.is_flag(o)
  return o ~= nil and o.kind == "bool"
end

-- Converts every declared option present in `arg` and fills in defaults for the absent ones.
-- Raises a usage error naming the option and the accepted values on a bad one. Values that are
-- already typed are left alone (a recipe required by another sees what its caller converted).
function M.apply(meta, arg, script_name)
  for _, o in ipairs(meta.options) do
    local v = arg[o.name]
    if v == nil then
      if o.default ~= nil then arg[o.name] = o.default end
    elseif o.kind and (type(v) == "string" or v == true) then
      local typed, why = M.convert(o, v)
      if typed == nil then
        require("mpctl").usage_error(string.format("%s: bad value for %s: '%s' (%s)", script_name, o.name,
          tostring(v), why))
      end
      arg[o.name] = typed
    end
  end
  return arg
end

-- One line per option for `mpctl help`: name, type and default, help.
function M.help_lines(meta)
  local out = {}
  for _, o in ipairs(meta.options) do
    local ty = o.spec and (o.spec .. (o.default_text and (" = " .. o.default_text) or "")) or ""
    out[#out + 1] = string.format("    %-12s %-24s %s", o.name, ty, o.help or "")
  end
  return out
end

return M
