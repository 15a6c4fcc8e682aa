-- mpctl.sim.esp.session: serves one connected port with a simulated ESP board (device.lua)
-- until the client hangs up: control events (baud, DTR, RTS from RFC 2217) drive the reset
-- circuit in stream order relative to the data they arrived with; data goes onto the wire; the
-- chip works through what has landed; its output is paced back.
local serial = require("mpctl.serial")
local time = require("mpctl.time")
local bootmod = require("mpctl.sim.esp.boot")

local M = {}

local function is_rfc2217(port)
  local ok, caps = pcall(port.caps, port)
  return ok and type(caps) == "table" and caps.kind == "rfc2217-server"
end

local function new_circuit(dev)
  if dev.usb == "jtag" then return bootmod.new_usb_jtag() end
  -- the bridge's transistors, or (usb=otg) the ROM's USB CDC emulating them
  return bootmod.new { strap_delay = dev.o.strap_delay, min_en_low = dev.o.min_en_low,
    en_delay = dev.o.en_delay }
end

local function on_event(dev, ev)
  if ev.kind == "baud" then
    dev.host_baud = ev.value
    dev:log("host baud -> %d", ev.value)
    return {}
  end
  return dev.circuit:feed(ev, {})
end

local function apply(dev, actions)
  for _, a in ipairs(actions) do
    if a.kind == "reset" then
      dev:log("EN low")
      dev:power_off()
    elseif a.kind == "boot" then
      dev:log("EN released after %.1f ms -> %s", (a.low_for or 0) * 1000, a.mode)
      dev:boot(a.mode, "poweron")
    end
  end
end

-- An RFC 2217 client sends its baud rate right after connecting: power on once it has, so the
-- boot log meets the rate the host really listens at. Returns data and events read meanwhile.
local function await_line_setup(dev, port)
  local early, pending = "", {}
  local deadline = time.now() + 0.2
  while time.now() < deadline do
    early = early .. port:read(1 << 20, 0.02)
    local ok, evs = pcall(port.events, port)
    local seen = false
    if ok then
      for _, e in ipairs(evs) do
        if e.kind == "baud" and (e.pos or 0) == 0 then dev.host_baud = e.value; seen = true
        else pending[#pending + 1] = e end
      end
    end
    if seen or early ~= "" or port:is_eof() then break end
  end
  return early, pending
end

function M.run(dev, port)
  dev.hung_up = false
  dev.circuit = new_circuit(dev)
  dev.host_baud = dev.o.baud
  local mode = dev.o.boot
  local rfc = is_rfc2217(port)
  if mode == "auto" then mode = rfc and "flash" or "download" end
  local rx_pos, pending_ev, early = 0, {}, ""
  if rfc then early, pending_ev = await_line_setup(dev, port) end
  dev:boot(mode, "poweron")
  while true do
    local now = time.now()
    local ok, evs = pcall(port.events, port)
    if ok then for _, e in ipairs(evs) do pending_ev[#pending_ev + 1] = e end end
    local data = early .. port:read(1 << 20, 0)
    early = ""
    local start = 1
    while #pending_ev > 0 and (pending_ev[1].pos or 0) <= rx_pos + (#data - start + 1) do
      local e = table.remove(pending_ev, 1)
      local cut = math.max(0, (e.pos or 0) - rx_pos)
      if cut > 0 then
        dev:on_data(data:sub(start, start + cut - 1), now)
        start, rx_pos = start + cut, rx_pos + cut
      end
      apply(dev, on_event(dev, e))
    end
    if start <= #data then
      dev:on_data(data:sub(start), now)
      rx_pos = rx_pos + #data - start + 1
    end
    apply(dev, dev.circuit:poll(time.now()))
    now = time.now()
    dev:deliver(now)
    dev:app_pump(now)
    local t1 = dev:process()
    local t2 = dev.wire:pump(port)
    if dev.hung_up or port:is_eof() then break end
    -- A write burst that ended without FLASH_END (ROM sessions): keep the file current.
    if dev.flash.dirty and dev.in_head > #dev.inq and time.now() - (dev.last_rx or 0) > 0.5 then
      dev:persist()
    end
    local wake = math.huge
    for _, t in ipairs { t1 or math.huge, t2 or math.huge, dev.circuit:next_deadline() or math.huge,
                         dev.wire:next_in(time.now()) or math.huge } do
      if t < wake then wake = t end
    end
    local timeout = math.min(math.max(wake - time.now(), 0), 0.25)
    local objs = { port }
    if dev.app then objs[2] = dev.app:port() end
    if timeout > 0 then serial.poll(objs, timeout) end
  end
  dev:log("client hung up")
  dev:stop_app()
  dev:persist()
end

return M
