--[[ mpctl.sim.usb.run: what `mpctl sim <usb simulator> [k=v ...] [-- COMMAND ...]` does for every
USB simulator: make sure this process runs under the umockdev preload (hotplug needs the testbed
itself under it: usb-sim.md), build the bus, run COMMAND on it with our stdio and environment
(UMOCKDEV_DIR, LD_PRELOAD) and return its exit status; without COMMAND, print the environment a
client needs and serve until interrupted. The board's state is saved at the end (flash=FILE).
]]
local M = {}

local function reexec(name, opts, command)
  local argv = { "sim", name }
  for k, v in pairs(opts) do argv[#argv + 1] = k .. "=" .. tostring(v) end
  if #command > 0 then
    argv[#argv + 1] = "--"
    for _, w in ipairs(command) do argv[#argv + 1] = w end
  end
  require("mpctl.usbsim").reexec(argv)
end

--- build(opts) -> host, save
function M.run(parsed, name, build)
  local opts, command = {}, {}
  for k, v in pairs(parsed.arg) do if type(k) == "string" then opts[k] = v end end
  for i = 2, #parsed.arg do command[#command + 1] = parsed.arg[i] end
  local ok, usbsim = pcall(require, "mpctl.usbsim")
  if not ok then
    require("mpctl.errors").raise("unsupported", "sim " .. name, "this mpctl was built without umockdev",
      { hint = "install umockdev and libumockdev-dev (scripts/setup) and rebuild" })
  end
  if not usbsim.preloaded() then reexec(name, opts, command) end
  local host, save = build(opts)
  local rc, pid = 0, nil
  local okrun, err = pcall(function()
    if #command == 0 then
      io.stdout:write(string.format("UMOCKDEV_DIR=%s LD_PRELOAD=libumockdev-preload.so.0\n", host:root()))
      io.stdout:flush()
      while true do host:step(0.05) end
    end
    pid = usbsim.spawn(command)
    while true do
      if not host:step(0.01) then
        local code = usbsim.waitpid(pid)
        if code ~= nil then rc, pid = code, nil; break end
      end
    end
  end)
  -- Ctrl-C or an error: stop the command (it gets SIGTERM: its own interrupt handling runs) and keep
  -- serving its last requests until it has gone, then save; shielded so a second check of the
  -- interrupt cannot cut this short (a client left blocked in an ioctl would hang)
  local function finish()
    local time = require("mpctl.time")
    local function serve_until_gone(seconds)
      local deadline = time.now() + seconds
      while pid and time.now() < deadline do
        if usbsim.waitpid(pid) then pid = nil; break end
        pcall(host.step, host, 0.01)
      end
    end
    -- a Ctrl-C at a terminal reached the command too: let it finish its own way first
    serve_until_gone(2)
    if pid then usbsim.kill(pid); serve_until_gone(3) end
    if pid then usbsim.kill(pid, 9); for _ = 1, 50 do if usbsim.waitpid(pid) then break end time.sleep(0.02) end end
    host:close()
    if save then save() end
  end
  local errors = require("mpctl.errors")
  if errors.shield then errors.shield(finish) else finish() end
  if not okrun then error(err, 0) end
  return rc
end

return M
