-- mpctl.cli.lookup: where a command word leads: a tool command in lua/mpctl/commands/, or a
-- workflow recipe (./recipes, MPCTL_PATH, the user's config folder, the installed recipes).
local M = {}

local args = require("mpctl.cli.args")
local usage_error = args.usage_error

local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- Folders searched for recipes, in order.
function M.recipe_dirs(info)
  local fs = require("mpctl.fs")
  local dirs = { "recipes" }
  for dir in (os.getenv("MPCTL_PATH") or ""):gmatch("[^:]+") do
    dirs[#dirs + 1] = dir .. "/recipes"
    dirs[#dirs + 1] = dir
  end
  dirs[#dirs + 1] = fs.xdg("config") .. "/recipes"
  if info.datadir then dirs[#dirs + 1] = info.datadir .. "/recipes" end
  return dirs
end

-- Where `require("NAME")` in a recipe finds a workflow recipe shipped with mpctl (after the
-- folder of the recipe itself): the installed recipes folder.
function M.installed_recipe_dirs(info)
  return info.datadir and { info.datadir .. "/recipes" } or {}
end

-- A recipe's header: description, typed options, @raw-args (see mpctl.options).
function M.recipe_meta(path)
  return require("mpctl.options").read_meta(path)
end

-- Every recipe name found, first one wins: { name = path }.
function M.all_recipes(info)
  local fs = require("mpctl.fs")
  local found, order = {}, {}
  for _, dir in ipairs(M.recipe_dirs(info)) do
    local st = fs.stat(dir)
    if st and st.type == "dir" then
      for _, name in ipairs(fs.list(dir)) do
        local base = name:match("^(.+)%.lua$")
        if base and not found[base] then
          found[base] = fs.join(dir, name)
          order[#order + 1] = base
        end
      end
    end
  end
  table.sort(order)
  return found, order
end

-- A tool command shipped with mpctl: lua/mpctl/commands/NAME.lua on the library path (the
-- installed library, or an MPCTL_PATH folder's lua/). Found before recipes, so a recipe folder
-- cannot shadow `fs` or `firmware` by accident.
function M.find_command(word)
  if not word:match("^[%w_%-]+$") then return nil end
  return package.searchpath("mpctl.commands." .. word, package.path)
end

-- The tool command names, sorted (for help and "did you mean").
function M.command_names()
  local fs = require("mpctl.fs")
  local names, seen = {}, {}
  for dir in package.path:gmatch("([^;]+)/%?%.lua") do
    local st = fs.stat(dir .. "/mpctl/commands")
    if st and st.type == "dir" then
      for _, f in ipairs(fs.list(dir .. "/mpctl/commands")) do
        local base = f:match("^(.+)%.lua$")
        if base and not seen[base] then seen[base] = true; names[#names + 1] = base end
      end
    end
  end
  table.sort(names)
  return names
end

function M.find_recipe(word, info)
  if word:find("/", 1, true) or word:match("%.lua$") then
    if file_exists(word) then return word end
    usage_error("no recipe file " .. word)
  end
  local cmd = M.find_command(word)
  if cmd then return cmd end
  for _, dir in ipairs(M.recipe_dirs(info)) do
    local p = dir .. "/" .. word .. ".lua"
    if file_exists(p) then return p end
  end
  local _, names = M.all_recipes(info)
  for _, c in ipairs(M.command_names()) do names[#names + 1] = c end
  local near = args.closest(word, names)
  usage_error("unknown command or recipe '" .. word .. "'" ..
    (#near > 0 and ("; did you mean: " .. table.concat(near, ", ") .. "?") or "") ..
    " (mpctl recipes lists them)")
end

return M
