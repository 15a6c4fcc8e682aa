-- Issue 12, "a connect that fixes itself": the boot line after each reset decides at once, the
-- sequence that worked is remembered per port, and a failed connect says why in one message.
-- Counts attempts and SYNC requests, never time.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local serial = require("mpctl.serial")
local esp = require("mpctl.esp")
local command = require("mpctl.esp.command")

-- Connect; returns the chip (or the error), and how many SYNC requests went out.
local function connect(url, opts)
  local port = serial.open(url, { baud = 115200 })
  local syncs = 0
  local o = { reset = "classic", baud = 921600, log = function() end,
    trace = function(dir, p) if dir == "tx" and p:byte(2) == command.OP.SYNC then syncs = syncs + 1 end end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local ok, chip = pcall(esp.connect, port, o)
  port:close()
  return ok, chip, syncs
end

test("slow EN (10 uF, en_delay=100): the app's boot line leads straight to a longer IO0 hold; first attempt", function()
  local dir = fs.tmpdir()
  local mem = fs.join(dir, "esp_reset.json")
  local url = "sim://esp32?timing=off&app=none&en_delay=100"
  local ok, chip, syncs = connect(url, { memory = mem })
  test.eq(ok, true, tostring(chip))
  test.eq(chip.sync_attempts, 1, "connected on the first attempt")
  test.eq(chip.reset_used, "classic (atomic DTR+RTS, 550 ms)")
  test.ok(syncs <= 2, "no SYNC wasted on a chip running its app: " .. syncs)
  -- remembered for this port: next time the long hold comes first
  local saved = require("mpctl.ui").json_decode(fs.read(mem))
  test.eq(saved[url].reset, "classic (atomic DTR+RTS, 550 ms)")
  ok, chip = connect(url, { memory = mem })
  test.eq(ok, true, tostring(chip))
  test.eq(chip.sync_attempts, 1)
  test.eq(chip.reset_used, "classic (atomic DTR+RTS, 550 ms)", "the remembered sequence first")
  fs.remove(dir, { recursive = true })
end)

test("a normal board still connects with the short hold on the first attempt", function()
  local ok, chip, syncs = connect("sim://esp32?timing=off&app=none", { memory = false })
  test.eq(ok, true, tostring(chip))
  test.eq(chip.sync_attempts, 1)
  test.eq(chip.reset_used, "classic (atomic DTR+RTS, 50 ms)")
  test.ok(syncs <= 2, "syncs " .. syncs)
end)

test("the app boots every time: one message says so and names the buttons", function()
  -- min_en_low=5000: no reset sequence holds EN low long enough to enter the bootloader
  local ok, err, syncs = connect("sim://esp32?timing=off&app=none&min_en_low=5000", { attempts = 2, memory = false })
  test.eq(ok, false)
  test.eq(err.kind, "timeout")
  test.contains(tostring(err), "it started its app instead of the bootloader")
  test.contains(tostring(err), "hold BOOT (IO0), tap RESET (EN)")
  test.eq(syncs, 0, "no SYNC sent to a chip that said it runs its app")
end)

test("nothing at all comes back: wrong port, charge-only cable or no power", function()
  -- a TCP peer that accepts and never says a word
  local l = serial.listen("socket://127.0.0.1:0")
  local port = serial.open("socket://127.0.0.1:" .. l.port, { baud = 115200 })
  local peer = l:accept(5)
  local ok, err = pcall(esp.connect, port, { reset = "none", attempts = 1, memory = false, log = function() end })
  test.eq(ok, false)
  test.eq(err.kind, "timeout")
  test.contains(tostring(err), "Nothing at all came back after any reset: a wrong port, a charge-only USB cable")
  port:close()
  if peer then peer:close() end
  l:close()
end)
