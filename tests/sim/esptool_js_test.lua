-- Peer check: esptool-js (npm, the reference browser flasher) flashes the simulated ESP32 served
-- over RFC 2217, through tests/peers/esptool_js/ (a Node SerialPort of ours that carries
-- DTR/RTS/baud, so the sim's auto-reset circuit sees esptool-js's own reset sequence). The
-- peer connects, detects the chip, uploads its stub, raises the baud rate, writes a 1.5 MB
-- firmware-like image compressed and verifies it by MD5; then the sim's flash file must hold
-- exactly that image. Timing is off in the simulator so the test is bounded by CPU only.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local proc = require("mpctl.proc")
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local ui = require("mpctl.ui")

local function repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  return fs.dirname(fs.dirname(fs.dirname(fs.realpath(src))))
end

local function have_peer(root)
  if not fs.exists(fs.join(root, "node_modules", "esptool-js", "lib", "esploader.js")) then return false end
  local ok, p = pcall(proc.spawn, { argv = { "node", "--version" }, pty = false, stderr = "null" })
  if not ok then return false end
  local code = p:wait(10)
  p:close()
  return code == 0
end

local function start_sim(args)
  local argv = { debug.getregistry()["mpctl.exe"], "sim", "esp32", "--listen", "rfc2217://127.0.0.1:0" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.spawn { argv = argv, pty = false }
  local out = serial.wrap_fd(p:stdout_fd(), "sim esp32 stdout")
  local url = out:read_until("\n", 15):gsub("%s+$", "")
  return p, out, url
end

local function run_node(root, args, timeout)
  local argv = { "node", fs.join(root, "tests", "peers", "esptool_js", "flash.mjs") }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.spawn { argv = argv, pty = false, stderr = "null" }
  local out <close> = serial.wrap_fd(p:stdout_fd(), "esptool-js flash.mjs")
  local ok, line = pcall(out.read_until, out, "\n", timeout)
  if not ok then p:kill("KILL") p:wait(5) p:close() error("esptool-js did not finish: " .. tostring(line), 0) end
  local code = p:wait(10)
  p:close()
  return ui.json_decode(line), code
end

local function stop(p, out)
  p:kill("TERM")
  if p:wait(5) == nil then p:kill("KILL") p:wait(5) end
  out:close()
  p:close()
end

test("esptool-js flashes 1.5 MB compressed through the stub; MD5 and flash file match", function()
  local root = repo_root()
  if not have_peer(root) then return test.skip("node or node_modules/esptool-js not installed") end
  local dir = fs.tmpdir()
  local flash, image = fs.join(dir, "flash.bin"), fs.join(dir, "fw.bin")
  local sim, out, url = start_sim { "timing=off", "flash_file=" .. flash }
  local ok, err = pcall(function()
    test.ok(url:match("^rfc2217://127%.0%.0%.1:%d+$"), "sim prints its address: " .. url)
    local r = run_node(root, { "--port", url, "--image", image, "--make-image", "1572864",
      "--baud", "460800", "--read-back", "65536" }, 120)
    test.eq(r.error, nil)
    test.eq(r.ok, true)
    test.contains(r.chip, "ESP32")
    test.eq(r.baud_used, 460800)
    local img = fs.read(image)
    test.eq(#img, 1572864)
    local ratio = r.write_wire_bytes / #img
    test.ok(ratio > 0.55 and ratio < 0.75, "image deflates like firmware: " .. ratio)
    test.eq(r.image_md5, hash.hex(hash.md5(img)))
    test.eq(r.flash_md5, r.image_md5, "MD5 esptool-js read back")
    test.eq(r.read_back_ok, true, "READ_FLASH through the stub")
    local f = fs.read(flash)
    test.eq(#f, 4 * 1024 * 1024)
    test.eq(hash.md5(f:sub(0x1001, 0x1000 + #img)), hash.md5(img), "flash file holds the image")
    test.eq(f:sub(1, 0x1000), string.rep("\255", 0x1000), "nothing written before the image")
  end)
  stop(sim, out)
  fs.remove(dir, { recursive = true })
  if not ok then error(err, 0) end
end)

test("esptool-js falls back to 115200 when the bridge cannot do 921600", function()
  local root = repo_root()
  if not have_peer(root) then return test.skip("node or node_modules/esptool-js not installed") end
  local dir = fs.tmpdir()
  local image = fs.join(dir, "fw.bin")
  local sim, out, url = start_sim { "timing=off", "max_baud=460800" }
  local ok, err = pcall(function()
    local r = run_node(root, { "--port", url, "--image", image, "--make-image", "131072",
      "--baud", "921600" }, 120)
    test.eq(r.error, nil)
    test.eq(r.ok, true)
    test.eq(r.baud_used, 115200, "esptool-js gave up on 921600")
  end)
  stop(sim, out)
  fs.remove(dir, { recursive = true })
  if not ok then error(err, 0) end
end)

-- Every simulated chip, a small image at its boot offset; ROM-only (no stub) on the ESP32.
local CASES = {
  { sim = "esp32s3", chip = "ESP32-S3", id = 9, args = { "--offset", "0" } },
  { sim = "esp32c3", chip = "ESP32-C3", id = 5, args = { "--offset", "0" } },
  { sim = "esp8266", chip = "ESP8266", id = 0, args = { "--offset", "0" } },
  { sim = "esp32", chip = "ESP32", id = 0, args = { "--no-stub" }, label = "ROM loader only (no stub)" },
  { sim = "esp32s2", chip = "ESP32-S2", id = 2, args = { "--offset", "0x1000" } },
  { sim = "esp32c6", chip = "ESP32-C6", id = 13, args = { "--offset", "0" } },
  -- native USB: esptool-js picks its USB-JTAG reset for 303A:1001 (the bridge sequence would boot
  -- the app), and 0x800 blocks on the S2's ROM USB-OTG CDC (the sim refuses bigger ones)
  { sim = "esp32c3", chip = "ESP32-C3", id = 5, args = { "--offset", "0", "--usb-pid", "0x1001" },
    sim_args = { "usb=jtag" }, label = "over USB-Serial/JTAG" },
  { sim = "esp32c6", chip = "ESP32-C6", id = 13, args = { "--offset", "0", "--usb-pid", "0x1001" },
    sim_args = { "usb=jtag" }, label = "over USB-Serial/JTAG" },
  { sim = "esp32s2", chip = "ESP32-S2", id = 2, args = { "--offset", "0x1000", "--usb-pid", "0x0002" },
    sim_args = { "usb=otg" }, label = "over the ROM's USB-OTG CDC" },
  -- a 10 uF EN capacitor: esptool-js's 50 ms reset boots the app, its 550 ms retry gets the loader
  { sim = "esp32", chip = "ESP32", id = 0, args = { "--offset", "0x1000" }, sim_args = { "en_delay=100" },
    label = "with a slow EN circuit (en_delay=100)" },
}

for _, c in ipairs(CASES) do
  test("esptool-js flashes the simulated " .. c.sim .. (c.label and (", " .. c.label) or ""), function()
    local root = repo_root()
    if not have_peer(root) then return test.skip("node or node_modules/esptool-js not installed") end
    local dir = fs.tmpdir()
    local flash, image = fs.join(dir, "flash.bin"), fs.join(dir, "fw.bin")
    local argv = { debug.getregistry()["mpctl.exe"], "sim", c.sim, "--listen", "rfc2217://127.0.0.1:0",
      "timing=off", "flash_file=" .. flash }
    for _, a in ipairs(c.sim_args or {}) do argv[#argv + 1] = a end
    local sim = proc.spawn { argv = argv, pty = false }
    local out = serial.wrap_fd(sim:stdout_fd(), "sim stdout")
    local ok, err = pcall(function()
      local url = out:read_until("\n", 15):gsub("%s+$", "")
      local args = { "--port", url, "--image", image, "--make-image", "131072", "--chip-id", tostring(c.id),
        "--baud", "460800" }
      for _, a in ipairs(c.args) do args[#args + 1] = a end
      local r = run_node(root, args, 60)
      test.eq(r.error, nil)
      test.eq(r.ok, true)
      test.contains(r.chip, c.chip)
      local img = fs.read(image)
      test.eq(r.flash_md5, hash.hex(hash.md5(img)))
      local off = r.offset
      test.eq(hash.md5(fs.read(flash):sub(off + 1, off + #img)), hash.md5(img), "flash file holds the image")
    end)
    stop(sim, out)
    fs.remove(dir, { recursive = true })
    if not ok then error(err, 0) end
  end)
end

-- The two flashers must agree on what ends up on the board: esptool-js writes the image to one
-- simulated board, mpctl (its own stub upload, sector diff, libdeflate stream, MD5) writes the
-- same file to another, and the two flash files must be identical byte for byte.
test("mpctl flashing the same image leaves the same flash as esptool-js", function()
  local root = repo_root()
  if not have_peer(root) then return test.skip("node or node_modules/esptool-js not installed") end
  local dir = fs.tmpdir()
  local image = fs.join(dir, "fw.bin")
  local flash_js, flash_mpctl = fs.join(dir, "flash-js.bin"), fs.join(dir, "flash-mpctl.bin")
  local sim, out, url = start_sim { "timing=off", "flash_file=" .. flash_js }
  local ok, err = pcall(function()
    local r = run_node(root, { "--port", url, "--image", image, "--make-image", "1572864",
      "--baud", "460800" }, 120)
    test.eq(r.ok, true, "esptool-js flashed")
  end)
  stop(sim, out)
  if ok then
    ok, err = pcall(function()
      local exe = debug.getregistry()["mpctl.exe"]
      local p = proc.spawn { argv = { exe, "-q", "esp32_flash", "--port",
        "sim://esp32?timing=off&flash_file=" .. flash_mpctl, "firmware=" .. image, "repl=no" },
        pty = false, stderr = "stdout", env = { XDG_STATE_HOME = dir } }
      local o <close> = serial.wrap_fd(p:stdout_fd(), "mpctl esp32_flash")
      local log = {}
      while true do
        local chunk = o:read(4096, 120)
        if chunk == "" then break end
        log[#log + 1] = chunk
      end
      test.eq(p:wait(30), 0, "mpctl esp32_flash exit code; output:\n" .. table.concat(log))
      p:close()
      local a, b = fs.read(flash_js), fs.read(flash_mpctl)
      test.eq(#b, #a, "flash sizes")
      test.ok(a == b, "flash files differ (esptool-js md5 " .. hash.hex(hash.md5(a)) ..
        ", mpctl md5 " .. hash.hex(hash.md5(b)) .. ")")
    end)
  end
  fs.remove(dir, { recursive = true })
  if not ok then error(err, 0) end
end)
