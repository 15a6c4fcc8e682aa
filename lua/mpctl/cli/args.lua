-- mpctl.cli.args: the command line's words into {command, opts, arg}: mpctl's own options,
-- a recipe's declared options (typed: mpctl.options), key=value settings and plain words.
local M = {}

-- Options mpctl itself knows. Value options take the next word (`--port P`) or `--port=P`;
-- flags stand alone.
-- --ports, --jobs, --board-timeout: several boards from one command (mpctl.many).
local VALUE_OPTIONS = { port = true, baud = true, board = true, device = true, junit = true, listen = true,
  ports = true, jobs = true, ["board-timeout"] = true }
local FLAG_OPTIONS = { json = true, quiet = true, verbose = true, help = true, version = true,
  tap = true, ["allow-exec"] = true, ["allow-fs"] = true, probe = true, ["no-probe"] = true }
-- Options every recipe sees in its arg table.
local RECIPE_OPTIONS = { "port", "baud", "board", "device" }
-- Short options: -v -q -h are flags; -p and -b take a value, as esptool users type them.
local SHORT = { v = "verbose", q = "quiet", h = "help", p = "port", b = "baud" }
-- Options any command accepts (the rest are checked per built-in command or by the recipe).
local GLOBAL_OPTIONS = { json = true, quiet = true, verbose = true, help = true, ["allow-exec"] = true,
  ["allow-fs"] = true }

-- ---------------------------------------------------------------------------------------
-- helpers

local function usage_error(msg)
  error({ usage = true, msg = msg }, 0)
end

-- The candidates closest to `word`, best first (at most `n`, only reasonably close ones).
function M.closest(word, candidates, n)
  return require("mpctl.text").closest(word, candidates, n or 3)
end

local function flag_value(name, value)
  if value == nil then return true end
  local v = require("mpctl.options").convert({ kind = "bool" }, value)
  if v == nil then usage_error("--" .. name .. "=" .. value .. ": accepted values: yes, no") end
  return v
end

-- Parses argv into { command=, opts={}, arg={ positional..., key=value } }.
-- key=value words land in arg; malformed ones (no key, no value) are usage errors.
-- `declared`: the recipe's own options by name (mpctl.options specs). A yes|no option given as
-- `--name` alone is true; any other declared option written `--name VALUE` takes the next word,
-- like --port does. `--name=VALUE` always gives a value.
function M.parse(argv, declared)
  declared = declared or {}
  local opts, arg, words = { verbose = 0, _given = {} }, {}, {}
  local command
  local i, rest = 1, false
  local function set_option(name, value)
    opts._given[#opts._given + 1] = name
    if name == "verbose" then opts.verbose = opts.verbose + (value == false and 0 or 1)
    else opts[name] = value end
    -- --port given several times: every one is kept (mpctl.many runs the recipe on each)
    if name == "port" then
      opts.port_list = opts.port_list or {}
      opts.port_list[#opts.port_list + 1] = value
    end
  end
  local function recipe_flag(name, value)
    arg[name] = value
    opts._recipe_flags = opts._recipe_flags or {}
    opts._recipe_flags[#opts._recipe_flags + 1] = name
  end
  local function takes_value(name)
    if VALUE_OPTIONS[name] then return true end
    local o = declared[name]
    return o ~= nil and not require("mpctl.options").is_flag(o)
  end
  local function next_value(name)
    i = i + 1
    local value = argv[i]
    if value == nil then usage_error("option --" .. name .. " needs a value") end
    return value
  end
  while i <= #argv do
    local w = argv[i]
    if rest then
      if command == nil then command, opts._command_index = w, i else arg[#arg + 1] = w; words[#words + 1] = w end
    elseif w == "--" then
      rest = true
    elseif w:sub(1, 2) == "--" and #w > 2 then
      local name, value = w:match("^%-%-([^=]+)=(.*)$")
      name = name or w:sub(3)
      if value == nil and takes_value(name) then value = next_value(name) end
      if VALUE_OPTIONS[name] then
        if value == "" then usage_error("option --" .. name .. " needs a value") end
        set_option(name, value)
      elseif FLAG_OPTIONS[name] then
        set_option(name, flag_value(name, value))
      else
        -- recipe-specific option: checked against the recipe's @option lines later
        recipe_flag(name, value == nil and true or value)
      end
    elseif w:sub(1, 1) == "-" and #w > 1 and not w:match("^%-%d") then
      local j = 2
      while j <= #w do
        local c = w:sub(j, j)
        local long = SHORT[c]
        if long and VALUE_OPTIONS[long] then
          -- -p PORT or -pPORT
          local value = w:sub(j + 1)
          if value == "" then value = next_value(long) end
          set_option(long, value)
          break
        elseif long then
          set_option(long, true)
        elseif declared[c] and takes_value(c) then
          local value = w:sub(j + 1)
          if value == "" then value = next_value(c) end
          recipe_flag(c, value)
          break
        else
          recipe_flag(c, true)
        end
        j = j + 1
      end
    elseif command == nil then
      command, opts._command_index = w, i
    else
      words[#words + 1] = w
      local key, value = w:match("^([%a_][%w_%-]*)=(.*)$")
      if key then
        if value == "" then usage_error("'" .. w .. "' has no value (write key=value)") end
        arg[key] = value
        opts._keys = opts._keys or {}
        opts._keys[#opts._keys + 1] = key
      elseif w:sub(1, 1) == "=" then
        usage_error("'" .. w .. "' has no key (write key=value)")
      else
        arg[#arg + 1] = w
      end
    end
    i = i + 1
  end
  if opts.baud ~= nil then
    local b = math.tointeger(tonumber(opts.baud))
    if not b or b <= 0 then usage_error("--baud " .. tostring(opts.baud) .. ": expected a baud rate, e.g. 115200") end
    opts.baud = b
  end
  for _, k in ipairs(RECIPE_OPTIONS) do
    if opts[k] ~= nil and arg[k] == nil then arg[k] = opts[k] end
  end
  return { command = command, opts = opts, arg = arg, words = words }
end

-- A built-in command refuses options it does not know, naming the closest it does.
local function check_builtin_options(parsed, name, accepted)
  local known = {}
  for k in pairs(GLOBAL_OPTIONS) do known[#known + 1] = k end
  for k in pairs(accepted) do known[#known + 1] = k end
  local function refuse(opt)
    local near = M.closest(opt, known)
    usage_error(string.format("%s: unknown option --%s%s (mpctl help%s)", name, opt,
      #near > 0 and ("; did you mean --" .. table.concat(near, ", --") .. "?") or "",
      name:sub(1, 1) == "-" and "" or (" " .. name)))
  end
  for _, o in ipairs(parsed.opts._given) do
    if not GLOBAL_OPTIONS[o] and not accepted[o] then refuse(o) end
  end
  for _, o in ipairs(parsed.opts._recipe_flags or {}) do refuse(o) end
end
M.check_builtin_options = check_builtin_options
M.usage_error = usage_error

return M
