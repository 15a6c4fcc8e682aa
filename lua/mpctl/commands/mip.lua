--- Install packages from micropython-lib (or a mirror of its index) onto the board, as mip does.
-- @option index: URL|DIR; package index: a URL or a folder with its layout (default $MPCTL_MIP_INDEX, else micropython.org/pi/v2)
-- @option target: DIR; device folder to install into (default: the board's sys.path entry ending in /lib, else /lib)
-- @option mpy: yes|no = yes; install compiled .mpy files for the board's bytecode version (no: the .py sources)
-- @option dry-run: yes|no = no; resolve, download and check everything, list what would be written, write nothing
-- @option offline: yes|no = no; the cache only, no network
-- @option refresh: yes|no = no; ask the index again even for an exact version already cached
-- @option cache: DIR; cache folder (default ~/.cache/mpctl/mip)
-- @option ca_file: FILE; CA bundle for an HTTPS index with a private CA
-- @option retries: integer; download attempts after the first (default 3)
--
--   mpctl mip install --port P aioble              latest version, its dependencies, into /lib
--   mpctl mip install --port P hmac@3.4.2-3 mpy=no  an exact version, as .py sources
--   mpctl mip install --port P umqtt.simple index=/srv/mip-mirror target=/flash/lib --dry-run
--   mpctl mip install --port P https://example.org/pkg/package.json    (or github:org/repo[@branch])
--   mpctl mip list [index=...]                      the packages the index has
-- Every file is checked against the SHA-256 prefix the index gives before anything is written;
-- the copy onto the board is verified by a sha256 computed on the board, and an identical file
-- already there is left as it is.

local ui = mpctl.ui
local mip = require("mpctl.mip")
local sub = arg[1]
local usage = "mip needs a command: install PKG[@VERSION]... or list (mpctl help mip)"
if sub ~= "install" and sub ~= "list" then
  mpctl.usage_error(sub and ("mip: unknown command '" .. sub .. "'; " .. usage) or usage)
end

local src = mip.source.open({index = arg.index, cache_dir = arg.cache, offline = arg.offline or nil,
  refresh = arg.refresh or nil, ca_file = arg.ca_file, retries = tonumber(arg.retries)})

if sub == "list" then
  local index, err = src:index()
  if not index then mpctl.fail("mip list: cannot read the package list of " .. src.url .. ": " .. tostring(err)) end
  for _, p in ipairs(index.packages or {}) do
    ui.result({event = "package", name = p.name, version = p.version, description = p.description},
      string.format("%-28s %-10s %s\n", p.name, p.version or "", p.description or ""))
  end
  return
end

local specs = {}
for i = 2, #arg do specs[#specs + 1] = arg[i] end
if #specs == 0 then mpctl.usage_error("mip install needs a package: mpctl mip install --port P NAME[@VERSION]") end

local port <close> = mpctl.open_port(arg)
local r = mpctl.repl.attach(port)
local ok, err = pcall(function()
  local info = mip.device_info(r)
  local target = arg.target or info.lib or "/lib"
  if not arg.target and not info.lib then
    ui.log("warn", "mip: the board's sys.path has no folder ending in /lib; installing into /lib (add it to sys.path to import from it)")
  end
  local mpy = arg.mpy == false and "py" or info.mpy
  ui.log("info", "mip: %s from %s into :%s (%s)", table.concat(specs, " "), src.url, target,
    mpy == "py" and ".py sources" or (".mpy version " .. mpy))
  -- everything is read and checked first: a refused file leaves the board untouched
  local plan = mip.plan(src, specs, {mpy = mpy, target = target})
  for _, p in ipairs(plan.packages) do
    ui.log("info", "mip: %s %s%s", p.name, p.version or "", p.parent and (" (needed by " .. p.parent .. ")") or "")
  end
  if arg["dry-run"] then
    for _, f in ipairs(plan.files) do
      ui.result({event = "mip_file", path = f.path, bytes = #f.data, package = f.package, verified = f.verified,
        dry_run = true}, string.format("would write :%s  %d bytes  (%s)\n", f.path, #f.data, f.package))
    end
    ui.log("info", "mip: dry run, nothing written (%d files)", #plan.files)
    return
  end
  local counts = mip.install(r, plan, {on_file = function(f, s)
    ui.result({event = "mip_file", path = f.path, bytes = #f.data, package = f.package, verified = f.verified,
      status = s.skipped and "same" or "written"},
      string.format("%s :%s  %d bytes\n", s.skipped and "up to date" or "installed", f.path, #f.data))
  end})
  ui.log("info", "mip: done: %d files written (%d bytes), %d already up to date", counts.written, counts.bytes,
    counts.same)
end)
pcall(r.close, r)
if not ok then error(err, 0) end
