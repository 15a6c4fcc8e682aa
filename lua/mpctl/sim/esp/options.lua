-- mpctl.sim.esp.options: the simulated ESP board's options (`k=v` after `mpctl sim esp32`, or the
-- query of sim://esp32?k=v), checked once into the table the device reads. The list with
-- meanings is in docs/simulators.md; an unknown or malformed option is refused with its name.
local chips = require("mpctl.sim.esp.chips")
local rng = require("mpctl.sim.rng")

local M = {}

local function num(v, what, default)
  if v == nil or v == "" then return default end
  if type(v) == "number" then return v end
  local n = tonumber(v)
  if not n then error(string.format("sim esp: option %s=%s is not a number", what, tostring(v)), 0) end
  return n
end

local function prob(v, what)
  local p = num(v, what, 0)
  if p < 0 or p > 1 then error(string.format("sim esp: option %s=%s is not a probability (0..1)", what, tostring(v)), 0) end
  return p
end

local function bool(v, default, what)
  if v == nil or v == "" then return default end
  if v == true or v == false then return v end
  local s = tostring(v):lower()
  if s == "1" or s == "on" or s == "true" or s == "yes" then return true end
  if s == "0" or s == "off" or s == "false" or s == "no" then return false end
  error("sim esp: " .. (what or "option") .. " expected on/off, got '" .. s .. "'", 0)
end

local KNOWN = {
  chip = 1, flash_size = 1, size = 1, flash_file = 1, file = 1, timing = 1, wire = 1, seed = 1,
  drop = 1, corrupt = 1, delay = 1, stall = 1, stall_ms = 1, reset = 1, fault_dir = 1,
  fault_skip = 1, reset_at = 1, max_baud = 1, baud = 1, boot = 1, strap_delay = 1, min_en_low = 1,
  mac = 1, app = 1, trace = 1, heapsize = 1, node = 1, boot_delay = 1, en_delay = 1, usb = 1,
  rx_fifo = 1, fs_dir = 1,
}

local USB_MODES = { none = "none", no = "none", jtag = "jtag", ["usb-jtag"] = "jtag",
  usb_jtag = "jtag", otg = "otg", ["usb-otg"] = "otg", usb_otg = "otg" }

local FAULT_DIRS = { both = { rx = true, tx = true }, rx = { rx = true }, tx = { tx = true },
  ["in"] = { rx = true }, out = { tx = true } }

local function timing_of(v)
  local timing = tostring(v or "typ"):lower()
  if timing == "on" or timing == "1" or timing == "true" then timing = "typ" end
  if timing == "0" or timing == "false" or timing == "no" then timing = "off" end
  if timing ~= "typ" and timing ~= "max" and timing ~= "off" then
    error("sim esp: timing= wants on, typ, max or off, got '" .. timing .. "'", 0)
  end
  return timing
end

function M.parse(o)
  o = o or {}
  for k in pairs(o) do
    if type(k) == "string" and not KNOWN[k] and k:sub(1, 1) ~= "_" then
      error("sim esp: unknown option '" .. k .. "' (see docs/simulators.md)", 0)
    end
  end
  local timing = timing_of(o.timing)
  local fdir = FAULT_DIRS[tostring(o.fault_dir or "both"):lower()]
  if not fdir then error("sim esp: fault_dir= wants rx, tx or both, got '" .. tostring(o.fault_dir) .. "'", 0) end
  local p = {
    chip = chips.get(o.chip),
    flash_size = o.flash_size or o.size or "4MB",
    flash_file = o.flash_file or o.file,
    timing = timing,
    wire = bool(o.wire, timing ~= "off", "wire="),
    seed = math.floor(num(o.seed, "seed", 1)),
    -- faults (docs/simulators.md "Faults"): probabilities per SLIP frame in the chosen directions
    drop = prob(o.drop, "drop"),
    corrupt = prob(o.corrupt, "corrupt"),
    stall = prob(o.stall, "stall"),
    stall_ms = num(o.stall_ms, "stall_ms", 500) / 1000,
    reset = prob(o.reset, "reset"),
    fault_dir = fdir,
    fault_skip = math.floor(num(o.fault_skip, "fault_skip", 0)),
    delay = num(o.delay, "delay", 0) / 1000,
    reset_at = o.reset_at and math.floor(num(o.reset_at, "reset_at")) or nil,
    max_baud = num(o.max_baud, "max_baud", nil),
    baud = num(o.baud, "baud", 115200),
    boot = tostring(o.boot or "auto"),
    -- EN's RC delay (10 kOhm pull-up, 0.1-1 uF on DevKitC-style boards: 1-10 ms) before the
    -- straps latch; the upper end also keeps separately sent DTR/RTS changes together.
    strap_delay = num(o.strap_delay, "strap_delay", 10) / 1000,
    min_en_low = num(o.min_en_low, "min_en_low", 5) / 1000,
    -- EN's rise after the reset transistor lets go: 0 on DevKitC-style boards, ~100 ms with
    -- the common 10 uF EN capacitor (issue 12).
    en_delay = num(o.en_delay, "en_delay", 0) / 1000,
    usb = USB_MODES[tostring(o.usb or "none"):lower()],
    -- MicroPython's REPL input buffer on the ESP32 port: stdin_ringbuf_array[260]
    -- (micropython ports/esp32/mphalport.c); what lands while it is full is lost.
    rx_fifo = math.floor(num(o.rx_fifo, "rx_fifo", 260)),
    mac = o.mac,
    app = tostring(o.app or "micropython"),
    trace = o.trace,
    heapsize = o.heapsize, node = o.node, fs_dir = o.fs_dir,
    boot_delay = num(o.boot_delay, "boot_delay", timing ~= "off" and 300 or 0) / 1000,
  }
  if p.boot ~= "auto" and p.boot ~= "download" and p.boot ~= "flash" then
    error("sim esp: boot= wants auto, download or flash", 0)
  end
  if not p.usb then error("sim esp: usb= wants none, jtag or otg, got '" .. tostring(o.usb) .. "'", 0) end
  if p.usb == "jtag" and not p.chip.usb_jtag then
    error("sim esp: " .. p.chip.name .. " has no USB-Serial/JTAG (usb=jtag: esp32c3, esp32s3, esp32c6)", 0)
  end
  if p.usb == "otg" and not p.chip.usb_otg then
    error("sim esp: " .. p.chip.name .. " has no ROM USB-OTG CDC (usb=otg: esp32s2, esp32s3)", 0)
  end
  if p.rx_fifo < 1 then error("sim esp: rx_fifo= wants a positive number of bytes", 0) end
  return p
end

-- The MAC in efuse/OTP: given, or the chip's Espressif OUI and three bytes from the seed.
function M.mac(s, chip, seed)
  if s then
    local b = {}
    for x in tostring(s):gmatch("%x%x") do b[#b + 1] = tonumber(x, 16) end
    if #b ~= 6 then error("sim esp: mac= wants aa:bb:cc:dd:ee:ff", 0) end
    return b
  end
  local r = rng.new(seed + 7)
  return { chip.oui[1], chip.oui[2], chip.oui[3], r.int(256), r.int(256), r.int(256) }
end

return M
