-- mpctl.many.watch: the ports present now, for a station that waits for boards to appear.
--   devices: every attached USB serial port that looks like a board of the family (by USB id,
--            as `mpctl ports` and `--port auto` see them): real /dev/ttyUSB*, /dev/ttyACM* hotplug;
--            and USB-only bootloader devices of the family (DFU, BOOTSEL) as usb:PATH
--   watch=FILE   one port URL per line (# comments): a line added is a board plugged in, a line
--                removed is a board unplugged; how tests (and a lab script) make simulated or
--                remote (rfc2217://) boards come and go
--   watch=DIR    every entry of the folder: a tty (or a link to one) is a port; a regular file
--                holds a port URL on its first line
--   watch=GLOB   paths matching a pattern with * and ? (e.g. /dev/serial/by-id/usb-Espressif*)
-- scan() -> { {url=, id=} ... } sorted by url, each with its identity facts (mpctl.many.identity).
local fs = require("mpctl.fs")
local identity = require("mpctl.many.identity")

local M = {}

local function glob_pattern(g)
  return "^" .. g:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
end

local function first_line(path)
  local ok, data = pcall(fs.read, path)
  if not ok then return nil end
  local line = data:match("^%s*([^\r\n#]-)%s*[\r\n]") or data:match("^%s*([^\r\n#]-)%s*$")
  return line ~= "" and line or nil
end

local function from_dir(dir, add)
  local ok, names = pcall(fs.list, dir)
  if not ok then return end
  for _, name in ipairs(names) do
    local n = type(name) == "table" and name.name or name
    local path = fs.join(dir, n)
    local st = fs.stat(path)
    if st and st.type == "file" then
      local url = first_line(path)
      if url then add(url) end
    elseif st and st.type ~= "dir" then
      add(path)
    end
  end
end

local function from_glob(g, add)
  local dir, pat = g:match("^(.*)/([^/]*)$")
  dir = dir ~= "" and dir or "/"
  local ok, names = pcall(fs.list, dir)
  if not ok then return end
  local re = glob_pattern(pat)
  for _, name in ipairs(names) do
    local n = type(name) == "table" and name.name or name
    if n:match(re) then add(fs.join(dir, n)) end
  end
end

-- USB devices of the family without a serial port (a Pyboard in DFU mode, a Pico in BOOTSEL) as
-- usb:PATH, which the DFU and RP2 drivers open by USB port path. Listed without opening them
-- (ids and path only): the station looks twice a second, and opening a device that a board's
-- child is flashing is not ours to do (on the simulated bus it breaks umockdev's preload).
function M.usb_only(family)
  local ok, usb = pcall(require, "mpctl.usb")
  if not ok then return {} end
  local board, out = require("mpctl.board"), {}
  for _, d in ipairs(usb.list { open = false }) do
    if d.vid and not usb.tty_of(d.path) then
      for _, b in ipairs(board.match_usb(d.vid, d.pid)) do
        if family == nil or b.family == family then out[#out + 1] = "usb:" .. d.path break end
      end
    end
  end
  return out
end

-- A watcher: opts.watch (FILE|DIR|GLOB or nil), opts.devices (bool), opts.family.
function M.new(opts)
  local self = {}
  function self.scan()
    local found, seen = {}, {}
    local listed
    local function add(url, row)
      if seen[url] then return end
      seen[url] = true
      found[#found + 1] = { url = url, id = identity.of_port(url, row) }
    end
    if opts.devices then
      listed = require("mpctl.serial").list()
      local rows = require("mpctl.cli.ports").describe(listed)
      local by_path = {}
      for _, r in ipairs(listed) do by_path[r.path] = r end
      for _, r in ipairs(require("mpctl.many.ports").auto(rows, opts.family)) do add(r.path, by_path[r.path]) end
      for _, url in ipairs(M.usb_only(opts.family)) do add(url) end
    end
    local w = opts.watch
    if w then
      if w:find("[%*%?]") then
        from_glob(w, add)
      else
        local st = fs.stat(w)
        if st and st.type == "dir" then
          from_dir(w, add)
        elseif st then
          for line in (fs.read(w) .. "\n"):gmatch("([^\n]*)\n") do
            line = line:gsub("#.*$", ""):match("^%s*(.-)%s*$")
            if line ~= "" then add(line) end
          end
        end
      end
    end
    table.sort(found, function(a, b) return a.url < b.url end)
    return found
  end
  return self
end

return M
