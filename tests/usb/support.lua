-- Shared by the USB tests: run a command on a simulated USB bus (`mpctl sim NAME k=v -- sh -c CMD`),
-- bounded by a deadline, and build firmware-like images. Not a test file itself.
local proc = require("mpctl.proc")
local serial = require("mpctl.serial")
local fs = require("mpctl.fs")
local test = require("mpctl.test")

local M = {}

--- Skips (or fails under MPCTL_TEST_NO_SKIP) when this mpctl has no USB simulators or dfu-util.
function M.need(peer)
  if not pcall(require, "mpctl.usbsim") then test.skip("mpctl built without umockdev (no USB simulators)") end
  if peer and not fs.exists("/usr/bin/" .. peer) then test.skip(peer .. " not installed (scripts/setup)") end
end

--- Runs argv with stdout+stderr collected; returns the text and the exit code. The whole run is
--- bounded by timeout seconds (killed after that, and the test fails naming `label`).
function M.run(argv, timeout, label, env)
  local p = proc.spawn { argv = argv, stderr = "stdout", env = env }
  local out <close> = serial.wrap_fd(p:stdout_fd(), label or argv[1])
  local chunks, deadline = {}, require("mpctl.time").now() + (timeout or 120)
  while true do
    local left = deadline - require("mpctl.time").now()
    if left <= 0 then
      p:kill("KILL"); p:wait(5); p:close()
      error((label or argv[1]) .. ": the command did not finish within " .. (timeout or 120) .. " s; output: " ..
        table.concat(chunks), 0)
    end
    local ok, s = pcall(out.read, out, 65536, math.min(left, 1))
    if not ok or (s == "" and out:is_eof()) then break end
    chunks[#chunks + 1] = s
  end
  local code = p:wait(10)
  p:close()
  return table.concat(chunks), code
end

--- Runs `sh -c cmd` under `mpctl sim name args...`; returns stdout+stderr text and the exit code.
--- The whole run is bounded by timeout seconds (killed after that, and the test fails).
function M.run_sim(name, args, cmd, timeout)
  local argv = { test.exe() or debug.getregistry()["mpctl.exe"], "sim", name, "quiet=yes" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  for _, a in ipairs({ "--", "sh", "-c", cmd }) do argv[#argv + 1] = a end
  return M.run(argv, timeout or 120, "sim " .. name)
end

--- A firmware-like image: a Cortex-M vector table (initial SP in SRAM, reset vector in flash,
--- Thumb bit set) followed by seeded random bytes, so the simulated ROM jumps to it after leave.
function M.image(size, seed)
  local vt = string.pack("<I4I4", 0x20020000, 0x08000000 + 0x1001)
  return vt .. test.random_bytes(size - #vt, seed or 7)
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

return M
