-- mpctl.many.ports: the ports a many-board run covers, from the command line:
--   --port P given several times      each one (local ttys, rfc2217://, socket://, sim:// mixed)
--   --port auto                       every attached board of the recipe's family, by USB id
--                                     (the boards/*.lua files, as `mpctl ports` shows them;
--                                     a bootloader device without a tty as usb:PATH)
--   --ports FILE                      one port per line; blank lines and # comments skipped
local usage_error = require("mpctl.cli.args").usage_error
local identity = require("mpctl.many.identity")

local M = {}

-- The ports listed in FILE.
function M.read_list(path)
  local fs = require("mpctl.fs")
  if not fs.exists(path) then usage_error("--ports " .. path .. ": no such file (one port per line)") end
  local out = {}
  for line in (fs.read(path) .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("#.*$", ""):match("^%s*(.-)%s*$")
    if line ~= "" then out[#out + 1] = line end
  end
  if #out == 0 then usage_error("--ports " .. path .. ": the file lists no port (one per line)") end
  return out
end

-- Every described port (mpctl.cli.ports.describe rows) that looks like a board of `family`
-- ("esp", "stm32", ...; nil = any known board).
function M.auto(rows, family)
  local out = {}
  for _, r in ipairs(rows) do
    local fits = false
    for _, f in ipairs(r.families or {}) do
      if family == nil or f == family then fits = true end
    end
    if fits and #(r.boards or {}) > 0 then out[#out + 1] = r end
  end
  return out
end

-- Whether this command line asks for several boards: two or more --port, --ports FILE, or
-- --port auto with more than one matching board (`rows`: described ports, asked for lazily).
function M.wanted(opts)
  if opts.ports then return true end
  local list = opts.port_list or {}
  if #list > 1 then return true end
  return false
end

-- The boards of this run: { {url=, id= (mpctl.many.identity facts)} ... } in the order given,
-- duplicates refused (two children on one port would fight over it).
-- opts.family: for auto; opts.list: serial.list() (read when not given); opts.usb_rows: the
-- USB-only devices (mpctl.dfu.ports.rows(), read when not given; false = none).
function M.expand(specs, opts)
  opts = opts or {}
  local listed = opts.list or require("mpctl.serial").list()
  local by_path = {}
  for _, r in ipairs(listed) do by_path[r.path] = r end
  local out, seen = {}, {}
  local function add(url, row)
    if seen[url] then usage_error("port " .. url .. " is named twice: each board once") end
    seen[url] = true
    out[#out + 1] = { url = url, id = identity.of_port(url, row or by_path[url]) }
  end
  for _, spec in ipairs(specs) do
    if spec == "auto" then
      local rows = require("mpctl.cli.ports").describe(listed)
      -- USB devices without a serial port (a Pyboard in DFU mode, a Pico in BOOTSEL): their port
      -- is usb:PATH, which the DFU and RP2 drivers open by USB port path.
      if opts.usb_rows ~= false then
        for _, r in ipairs(opts.usb_rows or require("mpctl.dfu.ports").rows()) do rows[#rows + 1] = r end
      end
      local hits = M.auto(rows, opts.family)
      if #hits == 0 then
        local present = {}
        for _, r in ipairs(rows) do present[#present + 1] = r.path end
        usage_error("--port auto: no attached " .. (opts.family and (opts.family .. " ") or "") ..
          "board found by USB id (ports present: " .. (#present > 0 and table.concat(present, ", ") or "none") ..
          "); give the ports with --port P --port Q or --ports FILE")
      end
      for _, r in ipairs(hits) do if not seen[r.path] then add(r.path, by_path[r.path]) end end
    else
      add(spec)
    end
  end
  return out
end

return M
