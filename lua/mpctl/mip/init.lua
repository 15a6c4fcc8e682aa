--[[ mpctl.mip: install micropython-lib packages (or a package.json at a URL) onto a board, as
mip and `mpremote mip install` do, with every file checked before anything is written.

    mip.parse_spec("name@1.2") -> name, version|nil      (github:org/repo@branch as well)
    mip.github_url("github:org/repo/x.py", "main") -> https://raw.githubusercontent.com/org/repo/main/x.py
    mip.plan(src, specs, {mpy=, target=}) -> plan         resolves names, versions and deps; reads and
                                                          checks every file (nothing on the board yet)
    mip.install(repl, plan, {on_file=}) -> counts         writes the plan's files onto the board
    mip.device_info(repl) -> {mpy=, lib=}                 the board's .mpy version and its /lib folder

plan = {packages = { {name=, version=, from=} }, files = { {path=, data=, package=, verified=} }, target=}.
The package and file formats are micropython-lib's (see mpctl.mip.source); the URL forms
(http(s)://..., github:org/repo[/path], a package.json or a single .py/.mpy) and the rewrite of
github: to raw.githubusercontent.com/<org>/<repo>/<branch, default HEAD>/<path> are the ones
micropython's docs/reference/packages.rst describes for mip.
]]
local ui = require("mpctl.ui")
local errors = require("mpctl.errors")
local text = require("mpctl.text")
local download = require("mpctl.firmware.download")
local source = require("mpctl.mip.source")

local M = {}
M.source = source

local function is_url(s) return s:match("^https?://") or s:match("^github:") end

function M.parse_spec(spec)
  local name, version = spec:match("^(.-)@([^@/]+)$")
  if not name or name == "" then name, version = spec, nil end
  return name, version
end

function M.github_url(url, branch)
  local org, repo, rest = url:match("^github:([^/]+)/([^/]+)/?(.*)$")
  if not org then errors.raise("usage", url, "mip: " .. url .. ": expected github:ORG/REPO[/PATH]") end
  return string.format("https://raw.githubusercontent.com/%s/%s/%s/%s", org, repo, branch or "HEAD", rest)
end

-- A target path from a package file must stay inside the target folder.
local function check_path(p, pkg)
  if type(p) ~= "string" or p == "" or p:sub(1, 1) == "/" or p:find("\\", 1, true)
      or ("/" .. p .. "/"):find("/%.%.?/") or p:find("//", 1, true) then
    errors.raise("refused", pkg, string.format("mip: package %s names the file '%s', which is not a path inside "
      .. "the target folder; nothing installed", pkg, tostring(p)))
  end
  return p
end

local function pairs_of(pkg, field, where)
  local list = pkg[field]
  if list == nil then return {} end
  if type(list) ~= "table" then errors.raise("protocol", where, "mip: " .. where .. ": '" .. field .. "' is not a list") end
  for _, e in ipairs(list) do
    if type(e) ~= "table" or type(e[1]) ~= "string" or type(e[2]) ~= "string" then
      errors.raise("protocol", where, "mip: " .. where .. ": an entry of '" .. field .. "' is not a pair of strings")
    end
  end
  return list
end

-- Names of the index close to `name`, and the versions it has for `mpy` when it has the name.
local function not_found(src, name, version, mpy)
  local index, why = src:index()
  local detail
  if not index then
    detail = string.format("mip: no package '%s'%s in %s (and its list of packages could not be read: %s)", name,
      version and (" version " .. version) or "", src.url, tostring(why and (why.detail or why.msg) or why))
    errors.raise("not_found", src.url, detail)
  end
  local names, entry = {}, nil
  for _, p in ipairs(type(index.packages) == "table" and index.packages or {}) do
    if type(p) == "table" and type(p.name) == "string" then
      names[#names + 1] = p.name
      if p.name == name then entry = p end
    end
  end
  if entry then
    local have = type(entry.versions) == "table" and entry.versions[mpy] or {}
    detail = string.format("mip: %s has no version %s for %s; it has: %s", name, version or "latest",
      mpy == "py" and ".py source" or (".mpy version " .. mpy), #have > 0 and table.concat(have, ", ") or "none")
  else
    local close = text.closest(name, names, 5)
    detail = string.format("mip: no package '%s' in %s%s", name, src.url,
      #close > 0 and ("; close names: " .. table.concat(close, ", ")) or " (mpctl mip list shows what it has)")
  end
  errors.raise("not_found", src.url, detail, {close = entry == nil and text.closest(name, names, 5) or nil})
end

local function fetch_url(url, opts, label)
  local ok, res = pcall(download.get, url, opts, {progress = false}, label)
  if ok then return res.body end
  errors.raise(errors.kind(res), url, string.format("mip: cannot read %s: %s", url,
    errors.is_error(res) and (res.detail or res.msg) or tostring(res)))
end

function M.plan(src, specs, opts)
  local plan = {packages = {}, files = {}, target = opts.target}
  local seen, taken = {}, {}
  local function add_file(pkg_name, rel, data, verified)
    local path = (opts.target:gsub("/+$", "")) .. "/" .. check_path(rel, pkg_name)
    if taken[path] then return end -- two packages shipping one file: the first wins, as mip's order does
    taken[path] = true
    plan.files[#plan.files + 1] = {path = path, data = data, package = pkg_name, verified = verified}
  end

  local resolve
  local function from_json(pkg, label, version, index_pkg)
    for _, e in ipairs(pairs_of(pkg, "hashes", label)) do
      add_file(label, e[1], (src:file(e[2], label .. ":" .. e[1])), true)
    end
    for _, e in ipairs(pairs_of(pkg, "urls", label)) do
      local url = e[2]:match("^github:") and M.github_url(e[2], version) or e[2]
      if not url:match("^https?://") then
        errors.raise("refused", label, "mip: " .. label .. " lists " .. e[2] .. ", which is not an http(s):// or github: URL")
      end
      -- files named by URL come without a hash: the copy onto the board is still verified
      add_file(label, e[1], fetch_url(url, src.opts, label .. ":" .. e[1]), false)
    end
    for _, d in ipairs(pairs_of(pkg, "deps", label)) do
      resolve(d[1], d[2] ~= "" and d[2] ~= "latest" and d[2] or nil, index_pkg)
    end
  end

  resolve = function(name, version, parent)
    local key = name .. "@" .. (version or "")
    if seen[name] or seen[key] then return end
    seen[name], seen[key] = true, true
    if is_url(name) then
      local url = name:match("^github:") and M.github_url(name, version) or name
      if url:match("%.m?py$") then
        plan.packages[#plan.packages + 1] = {name = name, version = version, from = url, parent = parent}
        add_file(name, url:match("[^/]+$"), fetch_url(url, src.opts, name), false)
        return
      end
      if not url:match("%.json$") then url = url:gsub("/?$", "/") .. "package.json" end
      local body = fetch_url(url, src.opts, name)
      local ok, pkg = pcall(ui.json_decode, body)
      if not ok or type(pkg) ~= "table" then errors.raise("protocol", url, "mip: " .. url .. " is not a package.json") end
      plan.packages[#plan.packages + 1] = {name = name, version = pkg.version or version, from = url, parent = parent}
      from_json(pkg, name, version, name)
      return
    end
    if not name:match("^[%w_%.%-]+$") then
      errors.raise("usage", name, "mip: '" .. name .. "' is not a package name or an http(s)://, github: URL")
    end
    local pkg = src:package(name, version or "latest", opts.mpy)
    if not pkg then not_found(src, name, version, opts.mpy) end
    plan.packages[#plan.packages + 1] = {name = name, version = pkg.version or version, from = src.url, parent = parent}
    from_json(pkg, name, version, name)
  end

  for _, spec in ipairs(specs) do
    local name, version = M.parse_spec(spec)
    resolve(name, version, nil)
  end
  return plan
end

-- The board's bytecode version (sys.implementation._mpy & 0xff, as mpremote asks; 0 = none: "py")
-- and the first sys.path entry ending in /lib (where mip installs).
function M.device_info(r)
  local out = r:exec("import sys\nprint(getattr(sys.implementation,'_mpy',0)&0xff)\n"
    .. "print('|'.join(p for p in sys.path if p.endswith('/lib')))\n")
  local mpy, libs = out:match("^(%d+)\r?\n([^\r\n]*)")
  if not mpy then errors.raise("device", "mip", "mip: unexpected answer to the version question: " .. out) end
  return {mpy = tonumber(mpy) ~= 0 and mpy or "py", lib = libs:match("^[^|]+")}
end

-- Creates the folders above `path` that are missing (mpremote's _ensure_path_exists).
local function ensure_parents(r, path, made)
  local lead = path:sub(1, 1) == "/" and "/" or ""
  local prefix = ""
  for part in path:gmatch("([^/]+)/") do
    prefix = (prefix == "" and lead or (prefix .. "/")) .. part
    if not made[prefix] then
      r:mkdir(prefix, {exist_ok = true})
      made[prefix] = true
    end
  end
end

function M.install(r, plan, opts)
  opts = opts or {}
  local made, counts = {}, {written = 0, same = 0, bytes = 0}
  for _, f in ipairs(plan.files) do
    ensure_parents(r, f.path, made)
    local s = r:put(f.data, f.path, {})
    if s.skipped then counts.same = counts.same + 1 else
      counts.written = counts.written + 1
      counts.bytes = counts.bytes + #f.data
    end
    if opts.on_file then opts.on_file(f, s) end
  end
  return counts
end

return M
