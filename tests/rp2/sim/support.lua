-- Shared by the simulated-Pico tests (not a test file): run a shell command on `mpctl sim pico|pico2`
-- (tests/usb/support.lua's bounded runner), the independent peers' paths, file helpers.
local fs = require("mpctl.fs")
local test = require("mpctl.test")
local here = debug.getinfo(1, "S").source:match("^@(.*/)")
local U = dofile(here .. "../../usb/support.lua")

local M = { run_sim = U.run_sim, read = U.read, write = U.write, q = U.sh_quote }

M.PICOBOOT_PEER = here .. "picoboot_peer.py"
M.UF2_PEER = here .. "uf2_peer.py"
M.PY = "/usr/bin/python3"

--- Skips unless this mpctl serves USB simulators and Debian's python3-usb / usbutils are there.
function M.need(what)
  U.need()
  if what == "pyusb" then
    local ok = os.execute(M.PY .. " -c 'import usb.core' 2>/dev/null")
    if not ok then test.skip("python3-usb (pyusb) not installed (scripts/setup)") end
  elseif what then
    U.need(what)
  end
end

--- py(script, args...) -> a shell command line running a peer script with Debian's python.
function M.py(script, ...)
  local words = { M.PY, M.q(script) }
  for _, a in ipairs({ ... }) do words[#words + 1] = M.q(tostring(a)) end
  return table.concat(words, " ")
end

--- A temporary folder and a path maker; cleanup() removes it.
function M.tmp()
  local dir = fs.tmpdir()
  return function(name) return fs.join(dir, name) end, function() fs.remove(dir, { recursive = true }) end
end

-- Shell: wait (bounded, 10 s) for the MicroPython CDC port, then list the bus.
M.WAIT_CDC = "i=0; while [ ! -e /dev/ttyACM0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
  .. "ls /dev/ttyACM0; lsusb"

return M
