-- The simulated ESP boards, exercised with raw SLIP frames over sim:// (mpctl.serial +
-- mpctl.slip), not through mpctl's ESP client: the simulator must stand on its own facts
-- (anchors.md §3.1, §3.6). Timing is off in every case so nothing here depends on speed.
local test = require("mpctl.test")
local serial = require("mpctl.serial")
local slip = require("mpctl.slip")
local hash = require("mpctl.hash")
local zlib = require("mpctl.zlib")
local fs = require("mpctl.fs")
local flashmod = require("mpctl.sim.esp.flash")
local bootmod = require("mpctl.sim.esp.boot")
local rom = require("mpctl.sim.esp.rom")

local OP = rom.OP
local SYNC = "\7\7\18\32" .. string.rep("\85", 32)

local function open(chip, q)
  local url = "sim://" .. chip .. "?timing=off&boot=download" .. (q and ("&" .. q) or "")
  if chip == "esp8266" then
    -- The ESP8266 ROM prints its log at 74880 baud (26 MHz crystal) and then auto-bauds.
    local p = serial.open(url, { baud = 74880 })
    p:expect("boot mode:(1,7)", 5, true)
    p:set_baud(115200)
    return p
  end
  local p = serial.open(url, { baud = 115200 })
  p:expect("waiting for download", 5, true)
  return p
end

local function send(p, op, data, chk)
  slip.write_frame(p, string.pack("<BBHI4", 0, op, #data, chk or 0) .. data)
end

-- Next response frame: {op, value, body} (frames not starting with 0x01 are skipped).
local function frame(p, timeout)
  while true do
    local f = slip.read_frame(p, timeout or 3)
    if #f >= 8 and f:byte(1) == 1 then
      local _, op, len, value = string.unpack("<BBHI4", f)
      return { op = op, len = len, value = value, body = f:sub(9) }
    end
  end
end

-- Send a command and return its response (skipping stale replies of other ops).
local function cmd(p, op, data, chk)
  send(p, op, data, chk)
  for _ = 1, 20 do
    local r = frame(p)
    if r.op == op then return r end
  end
  error("no reply to op " .. op)
end

local function data_cmd(p, op, data, seq)
  return cmd(p, op, string.pack("<I4I4I4I4", #data, seq, 0, 0) .. data, rom.checksum(data))
end

local function sync(p)
  -- the ROM answers one SYNC 8 times; read them all so none is taken for a later reply
  send(p, OP.SYNC, SYNC)
  local r
  for _ = 1, 8 do
    r = frame(p)
    test.eq(r.op, OP.SYNC)
  end
  return r
end

local function run_stub(p, block)
  local code = string.rep("\0", 16)
  cmd(p, OP.MEM_BEGIN, string.pack("<I4I4I4I4", #code, 1, block or 0x1800, 0x40080000))
  data_cmd(p, OP.MEM_DATA, code, 0)
  local r = cmd(p, OP.MEM_END, string.pack("<I4I4", 0, 0x40080004))
  test.eq(slip.read_frame(p, 3), "OHAI")
  return r
end

local function ok_status(r, n)
  test.eq(#r.body >= n, true, "status present")
  return r.body:byte(#r.body - n + 1) == 0
end

-- ---- NOR flash model ------------------------------------------------------------------------

test("NOR flash: erase gives 0xFF, program ANDs bits, erase times follow the datasheet", function()
  local f = flashmod.new { size = "1MB", timing = "typ" }
  test.eq(f:read(0, 4), "\255\255\255\255")
  f:program(0x100, "\x0F\xF0\xAA")
  test.eq(f:read(0x100, 3), "\x0F\xF0\xAA")
  -- programming without erasing can only clear bits
  f:program(0x100, "\xF3\x3F\x55")
  test.eq(f:read(0x100, 3), "\x03\x30\x00")
  test.eq(f:erase(0x0, 4096), 0.045)               -- W25Q sector erase, 45 ms typ
  test.eq(f:read(0x100, 3), "\255\255\255")
  test.eq(f:erase(0x10000, 0x10000), 0.150)        -- 64 KiB block erase, 150 ms typ
  test.eq(f:erase(0x1000, 0x2000), 0.090)          -- two sectors, not a block
  test.ok(math.abs(f:program(0, string.rep("\0", 1024)) - 4 * 0.0004) < 1e-12, "4 pages programmed")
  test.raises(function() f:program(0xFFFFF, "ab") end, "outside")
end)

test("NOR flash: file keeps the contents between runs", function()
  local dir = fs.tmpdir()
  local path = fs.join(dir, "flash.bin")
  local f = flashmod.new { size = "1MB", file = path, fs = fs, timing = "off" }
  f:program(0x1234, "hello")
  test.eq(f:save(), true)
  test.eq(fs.stat(path).size, 1024 * 1024)
  local g = flashmod.new { size = "1MB", file = path, fs = fs, timing = "off" }
  test.eq(g:read(0x1234, 5), "hello")
  fs.remove(path)
  fs.remove(dir)
end)

-- ---- reset circuit --------------------------------------------------------------------------

local function run_circuit(seq, c)
  c = c or bootmod.new {}
  local t, actions = 100.0, {}
  for _, step in ipairs(seq) do
    if step.wait then t = t + step.wait
    else
      for k, v in pairs(step) do c:feed({ kind = k, value = v, t = t }, actions) end
      t = t + 0.0001
    end
  end
  c:poll(t + 1, actions)
  local boots = {}
  for _, a in ipairs(actions) do if a.kind == "boot" then boots[#boots + 1] = a.mode end end
  return boots
end

test("reset circuit: classic and tight sequences enter download mode", function()
  -- esptool ClassicReset: D0 R1 W100 D1 R0 W50 D0 (anchors §3.1)
  test.eq(run_circuit { { dtr = false }, { rts = true }, { wait = 0.1 }, { dtr = true }, { rts = false },
    { wait = 0.05 }, { dtr = false } }, { "download" })
  -- the same with RTS released before DTR is asserted
  test.eq(run_circuit { { dtr = false }, { rts = true }, { wait = 0.1 }, { rts = false }, { dtr = true },
    { wait = 0.05 }, { dtr = false } }, { "download" })
  -- UnixTight: (0,0) (1,1) (0,1) W0.1 (1,0) W0.05 (0,0)
  test.eq(run_circuit { { dtr = true }, { rts = true }, { dtr = false }, { wait = 0.1 }, { dtr = true },
    { rts = false }, { wait = 0.05 }, { dtr = false } }, { "download" })
end)

test("reset circuit: wrong sequences boot from flash", function()
  -- hard reset: RTS pulse with IO0 high
  test.eq(run_circuit { { rts = true }, { wait = 0.1 }, { rts = false } }, { "flash" })
  -- IO0 pulled low 50 ms after EN was released: too late for the strapping latch
  test.eq(run_circuit { { rts = true }, { wait = 0.1 }, { rts = false }, { wait = 0.05 }, { dtr = true },
    { wait = 0.05 }, { dtr = false } }, { "flash" })
  -- EN low for only 1 ms (< 5 ms)
  test.eq(run_circuit { { rts = true }, { wait = 0.001 }, { dtr = true }, { rts = false }, { wait = 0.05 },
    { dtr = false } }, { "flash" })
  -- both lines asserted together hold neither EN nor IO0 low: no reset at all
  test.eq(run_circuit { { dtr = true }, { rts = true }, { wait = 0.1 }, { rts = false }, { dtr = false } }, {})
end)

-- esptool's classic sequence with the IO0 hold after EN release as a parameter
local function classic(hold)
  return { { dtr = false }, { rts = true }, { wait = 0.1 }, { dtr = true }, { rts = false },
    { wait = hold }, { dtr = false } }
end

test("slow EN circuit (en_delay=100): a 50 ms IO0 hold boots the app, a 550 ms hold the loader", function()
  local slow = function() return bootmod.new { en_delay = 0.100 } end
  test.eq(run_circuit(classic(0.05), slow()), { "flash" })
  test.eq(run_circuit(classic(0.55), slow()), { "download" })
  -- the same 50 ms sequence works on a DevKitC-style board (no EN capacitor delay)
  test.eq(run_circuit(classic(0.05)), { "download" })
  -- EN pulled low again while it is still rising: no boot then, one boot after the second release
  test.eq(run_circuit({ { rts = true }, { wait = 0.1 }, { rts = false }, { wait = 0.05 }, { rts = true },
    { wait = 0.1 }, { rts = false } }, slow()), { "flash" })
end)

test("USB-Serial/JTAG reset logic: esptool's usb-reset sequence enters the loader, others boot the app", function()
  local usb = bootmod.new_usb_jtag
  -- esptool USBJTAGSerialReset (anchors §3.1): R0 D0 W0.1 D1 R0 W0.1 R1 D0 R1 W0.1 D0 R0
  test.eq(run_circuit({ { rts = false }, { dtr = false }, { wait = 0.1 }, { dtr = true }, { rts = false },
    { wait = 0.1 }, { rts = true }, { dtr = false }, { rts = true }, { wait = 0.1 }, { dtr = false },
    { rts = false } }, usb()), { "download" })
  -- hard reset (RTS pulse): the app
  test.eq(run_circuit({ { dtr = false }, { rts = true }, { wait = 0.2 }, { rts = false } }, usb()), { "flash" })
  -- the bridge-circuit classic sequence does not reach the loader on this port
  test.eq(run_circuit(classic(0.05), usb()), { "flash" })
end)

local function boot_line(p, timeout)
  local got = p:expect("SPI_FAST_FLASH_BOOT", timeout or 5, true)
  return got
end

test("sim:// en_delay=100: the ROM boot line after each reset tells which boot it was", function()
  local p = serial.open("sim://esp32?timing=off&en_delay=100", { baud = 115200 })
  boot_line(p)
  local sleep = require("mpctl.time").sleep
  local function reset(hold)
    p:set_signals { dtr = false, rts = true }
    sleep(0.1)
    p:set_signals { dtr = true, rts = false }
    sleep(hold)
    p:set_dtr(false)
  end
  reset(0.05)
  p:expect("rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)", 5, true)
  reset(0.55)
  p:expect("boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download", 5, true)
  test.eq(sync(p).value, 0x20120707)
  p:close()
end)

test("sim:// usb=jtag (ESP32-C3, -S3, -C6): esptool's USB-JTAG sequence reaches the loader, baud is ignored", function()
  local sleep = require("mpctl.time").sleep
  for _, chip in ipairs { "esp32c3", "esp32s3", "esp32c6" } do
    local p = serial.open("sim://" .. chip .. "?timing=off&usb=jtag", { baud = 115200 })
    p:expect("SPI_FAST_FLASH_BOOT", 5, true)
    -- the bridge sequence: the app boots again
    p:set_signals { dtr = false, rts = true }
    sleep(0.1)
    p:set_signals { dtr = true, rts = false }
    sleep(0.05)
    p:set_dtr(false)
    p:expect("SPI_FAST_FLASH_BOOT", 5, true)
    p:set_rts(false); p:set_dtr(false)
    sleep(0.1)
    p:set_dtr(true); p:set_rts(false)
    sleep(0.1)
    p:set_rts(true); p:set_dtr(false); p:set_rts(true)
    sleep(0.1)
    p:set_dtr(false); p:set_rts(false)
    p:expect("waiting for download", 5, true)
    -- a USB CDC port has no baud rate: the loader answers whatever the host sets
    p:set_baud(9600)
    test.eq(sync(p).value, 0x20120707)
    p:close()
  end
  test.raises(function() require("mpctl.sim.esp").new { chip = "esp32", usb = "jtag" } end, "no USB-Serial/JTAG")
end)

test("ESP32-S2 and ESP32-C6 models: magic, security info, MAC words, boot offset", function()
  local p = open("esp32s2")
  sync(p)
  test.eq(cmd(p, OP.READ_REG, string.pack("<I4", 0x40001000)).value, 0x000007C6)
  local r = cmd(p, OP.GET_SECURITY_INFO, "")
  test.eq(#r.body, 12 + 4, "S2: 12 bytes without chip id")
  local lo = cmd(p, OP.READ_REG, string.pack("<I4", 0x3F41A044)).value
  local hi = cmd(p, OP.READ_REG, string.pack("<I4", 0x3F41A048)).value
  test.eq(hi >> 8, 0x7C, "Espressif OUI in the high word")
  test.ok(lo ~= 0, "MAC low word")
  -- not on USB-OTG: UARTDEV_BUF_NO reads 0
  test.eq(cmd(p, OP.READ_REG, string.pack("<I4", 0x3FFFFD14)).value, 0)
  p:close()
  local q = open("esp32c6")
  sync(q)
  r = cmd(q, OP.GET_SECURITY_INFO, "")
  test.eq(#r.body, 20 + 4)
  test.eq(string.unpack("<I4", r.body, 13), 13)
  test.eq(cmd(q, OP.READ_REG, string.pack("<I4", 0x40001000)).value, 0x2CE0806F)
  test.eq(cmd(q, OP.READ_REG, string.pack("<I4", 0x600B0848)).value >> 8, 0x40)
  q:close()
end)

test("ESP32-S2 usb=otg: UARTDEV_BUF_NO reads 2 and RAM/flash blocks are limited to 0x800", function()
  local p = open("esp32s2", "usb=otg")
  sync(p)
  test.eq(cmd(p, OP.READ_REG, string.pack("<I4", 0x3FFFFD14)).value, 2)
  test.eq(ok_status(cmd(p, OP.MEM_BEGIN, string.pack("<I4I4I4I4", 0x1800, 1, 0x1800, 0x40080000)), 4), false)
  test.eq(ok_status(cmd(p, OP.MEM_BEGIN, string.pack("<I4I4I4I4", 0x800, 1, 0x800, 0x40080000)), 4), true)
  run_stub(p, 0x800)
  cmd(p, OP.SPI_ATTACH, string.rep("\0", 8))
  test.eq(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4", 0x4000, 1, 0x4000, 0x10000)).body, "\1\194")
  test.eq(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4", 0x800, 1, 0x800, 0x10000)).body, "\0\0")
  p:close()
end)

test("reset circuit over sim://: DTR/RTS sequence gives the ROM boot logs esptool parses", function()
  local p = serial.open("sim://esp32?timing=off", { baud = 115200 })
  p:expect("boot:0x13 (SPI_FAST_FLASH_BOOT)", 5, true)
  p:expect("invalid header: 0xffffffff", 5, true)
  p:set_signals { dtr = false, rts = true }
  require("mpctl.time").sleep(0.1)
  p:set_signals { dtr = true, rts = false }
  require("mpctl.time").sleep(0.05)
  p:set_dtr(false)
  p:expect("boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download", 5, true)
  test.eq(sync(p).value, 0x20120707)
  -- a bare RTS pulse (esptool's hard reset) leaves the loader and boots from flash
  p:set_rts(true)
  require("mpctl.time").sleep(0.05)
  p:set_rts(false)
  p:expect("SPI_FAST_FLASH_BOOT", 5, true)
  p:close()
end)

-- ---- ROM and stub replies -------------------------------------------------------------------

test("ROM replies: 8 SYNC answers, 4 status bytes on ESP32, 2 on ESP8266; magic register", function()
  local p = open("esp32")
  send(p, OP.SYNC, SYNC)
  for _ = 1, 8 do
    local r = frame(p)
    test.eq(r.op, OP.SYNC)
    test.eq(r.value, 0x20120707)
    test.eq(r.body, "\0\0\0\0")
  end
  local r = cmd(p, OP.READ_REG, string.pack("<I4", 0x40001000))
  test.eq(r.value, 0x00F01D83)
  test.eq(r.body, "\0\0\0\0")
  p:close()
  local q = open("esp8266")
  sync(q)
  r = cmd(q, OP.READ_REG, string.pack("<I4", 0x40001000))
  test.eq(r.value, 0xFFF0C101)
  test.eq(r.body, "\0\0")
  q:close()
end)

test("unknown opcodes: ROM answers 0x05 repeatedly under another op, stub answers 0xFF", function()
  local p = open("esp32")
  sync(p)
  send(p, OP.GET_SECURITY_INFO, "")    -- the ESP32 ROM has no GET_SECURITY_INFO
  local n = 0
  for _ = 1, 8 do
    local r = frame(p)
    test.ok(r.op ~= OP.GET_SECURITY_INFO, "reply op differs from the request")
    test.eq(r.body, "\1\5\0\0")
    n = n + 1
  end
  test.eq(n, 8)
  run_stub(p)
  local r = cmd(p, 0x77, "")
  test.eq(r.body, "\1\255")
  p:close()
end)

test("ESP32-S3 ROM answers GET_SECURITY_INFO with chip id 9", function()
  local p = open("esp32s3")
  sync(p)
  local r = cmd(p, OP.GET_SECURITY_INFO, "")
  test.eq(#r.body, 20 + 4)
  test.eq(string.unpack("<I4", r.body, 13), 9)
  p:close()
end)

test("stub: OHAI, 2 status bytes, one SYNC reply with value 0, MD5 raw vs ROM hex", function()
  local p = open("esp32")
  sync(p)
  test.eq(cmd(p, OP.SPI_ATTACH, string.rep("\0", 8)).body, "\0\0\0\0")
  local rom_md5 = cmd(p, OP.SPI_FLASH_MD5, string.pack("<I4I4I4I4", 0, 4096, 0, 0))
  local want = hash.md5(string.rep("\255", 4096))
  test.eq(rom_md5.body, hash.hex(want) .. "\0\0\0\0")
  local r = run_stub(p)
  test.eq(r.body, "\0\0\0\0")                   -- MEM_END still answered by the ROM
  r = cmd(p, OP.READ_REG, string.pack("<I4", 0x40001000))
  test.eq(r.body, "\0\0")
  send(p, OP.SYNC, SYNC)
  r = frame(p)
  test.eq(r.value, 0)
  test.eq(p:read(64, 0.2), "")                  -- only one reply from the stub
  r = cmd(p, OP.SPI_FLASH_MD5, string.pack("<I4I4I4I4", 0, 4096, 0, 0))
  test.eq(r.body, want .. "\0\0")
  p:close()
end)

test("ROM flash write: 1 KiB blocks only, 2 MB erase limit until SPI_SET_PARAMS, deflate", function()
  local p = open("esp32")
  sync(p)
  -- flash access before SPI_ATTACH fails on the ESP32 ROM
  test.eq(ok_status(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4I4", 0x1000, 4, 0x400, 0, 0)), 4), false)
  cmd(p, OP.SPI_ATTACH, string.rep("\0", 8))
  test.eq(ok_status(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4I4", 0x4000, 1, 0x4000, 0, 0)), 4), false)
  test.eq(ok_status(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4I4", 0x1000, 1, 0x400, 0x200000, 0)), 4), false)
  cmd(p, OP.SPI_SET_PARAMS, string.pack("<I4I4I4I4I4I4", 0, 4 << 20, 0x10000, 0x1000, 0x100, 0xFFFF))
  test.eq(ok_status(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4I4", 0x1000, 1, 0x400, 0x200000, 0)), 4), true)
  -- compressed write at 0x3000, then MD5 over it
  local data = string.rep("micropython ", 300):sub(1, 2048)
  local z = zlib.compress(data, 9)
  test.eq(ok_status(cmd(p, OP.FLASH_DEFL_BEGIN, string.pack("<I4I4I4I4I4", 2048, 1, 0x400, 0x3000, 0)), 4), true)
  test.eq(ok_status(data_cmd(p, OP.FLASH_DEFL_DATA, z, 0), 4), true)
  local r = cmd(p, OP.SPI_FLASH_MD5, string.pack("<I4I4I4I4", 0x3000, 2048, 0, 0))
  test.eq(r.body:sub(1, 32), hash.hex(hash.md5(data)))
  -- READ_FLASH_SLOW answers with the ROM's whole 64-byte buffer
  r = cmd(p, OP.READ_FLASH_SLOW, string.pack("<I4I4", 0x3000, 16))
  test.eq(#r.body, 64 + 4)
  test.eq(r.body:sub(1, 16), data:sub(1, 16))
  -- a bad checksum is refused with 0x07
  r = cmd(p, OP.FLASH_DEFL_DATA, string.pack("<I4I4I4I4", 4, 1, 0, 0) .. "abcd", 0)
  test.eq(r.body:sub(1, 2), "\1\7")
  p:close()
end)

test("ESP8266 ROM: 74880-baud boot log is noise at 115200", function()
  local p = serial.open("sim://esp8266?timing=off&boot=download", { baud = 115200 })
  local seen = p:read(4096, 1)
  test.ok(#seen > 0 and not seen:find("boot mode", 1, true), "garbled log")
  p:close()
end)

test("ESP8266 ROM: no deflate/MD5/baud change, and the FLASH_BEGIN erase-size bug", function()
  local dir = fs.tmpdir()
  local path = fs.join(dir, "esp8266.bin")
  local p = open("esp8266", "flash_size=1MB&flash_file=" .. path)
  sync(p)
  send(p, OP.FLASH_DEFL_BEGIN, string.pack("<I4I4I4I4", 0x1000, 1, 0x400, 0))
  test.eq(frame(p).body, "\1\5")
  while p:read(4096, 0.1) ~= "" do end
  -- write a marker at 0x9000, then FLASH_BEGIN for one sector at 0x8000: with 8 sectors to the
  -- next 64 KiB boundary the ROM erases 2 sectors, taking the marker with it.
  test.eq(ok_status(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4", 0x400, 1, 0x400, 0x9000)), 2), true)
  data_cmd(p, OP.FLASH_DATA, string.rep("M", 0x400), 0)
  test.eq(ok_status(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4", 0x1000, 1, 0x400, 0x8000)), 2), true)
  test.eq(ok_status(data_cmd(p, OP.FLASH_DATA, string.rep("A", 0x400), 0), 2), true)
  cmd(p, OP.FLASH_END, string.pack("<I4", 1))
  p:close()
  local img = fs.read(path)
  test.eq(img:sub(0x8001, 0x8400), string.rep("A", 0x400))
  test.eq(img:sub(0x9001, 0x9400), string.rep("\255", 0x400), "the bug erased the marker")
  test.eq(rom.esp8266_rom_erase_len(0x8000, 0x1000), 0x2000)
  fs.remove(path)
  fs.remove(dir)
end)

-- ---- stub commands --------------------------------------------------------------------------

test("stub READ_FLASH: window of un-acked packets, 4-byte acks, trailing MD5", function()
  local p = open("esp32")
  sync(p)
  run_stub(p)
  local data = {}
  for i = 1, 3 * 4096 do data[i] = string.char((i * 7) % 256) end
  data = table.concat(data)
  local z = zlib.compress(data, 9)
  test.eq(cmd(p, OP.FLASH_DEFL_BEGIN, string.pack("<I4I4I4I4", #data, 1, 0x4000, 0x10000)).body, "\0\0")
  test.eq(data_cmd(p, OP.FLASH_DEFL_DATA, z, 0).body, "\0\0")
  test.eq(cmd(p, OP.FLASH_DEFL_END, string.pack("<I4", 1)).body, "\0\0")
  -- read 3 packets with at most 2 in flight
  local r = cmd(p, OP.READ_FLASH, string.pack("<I4I4I4I4", 0x10000, #data, 4096, 2))
  test.eq(r.body, "\0\0")
  local got = { slip.read_frame(p, 3), slip.read_frame(p, 3) }
  test.eq(p:read(16, 0.3), "", "no third packet before an ack")
  slip.write_frame(p, string.pack("<I4", 4096))
  got[3] = slip.read_frame(p, 3)
  slip.write_frame(p, string.pack("<I4", 8192))
  slip.write_frame(p, string.pack("<I4", 12288))
  local md5 = slip.read_frame(p, 3)
  test.eq(table.concat(got), data)
  test.eq(md5, hash.md5(data))
  -- ERASE_REGION then MD5 shows 0xFF
  test.eq(cmd(p, OP.ERASE_REGION, string.pack("<I4I4", 0x10000, 0x1000)).body, "\0\0")
  r = cmd(p, OP.SPI_FLASH_MD5, string.pack("<I4I4I4I4", 0x10000, 4096, 0, 0))
  test.eq(r.body, hash.md5(string.rep("\255", 4096)) .. "\0\0")
  p:close()
end)

test("CHANGE_BAUDRATE: the chip switches after its reply; a bridge above max_baud garbles", function()
  local p = open("esp32", "max_baud=230400")
  sync(p)
  run_stub(p)
  test.eq(cmd(p, OP.CHANGE_BAUDRATE, string.pack("<I4I4", 230400, 115200)).body, "\0\0")
  p:set_baud(230400)
  test.eq(cmd(p, OP.READ_REG, string.pack("<I4", 0x40001000)).value, 0x00F01D83)
  test.eq(cmd(p, OP.CHANGE_BAUDRATE, string.pack("<I4I4", 921600, 230400)).body, "\0\0")
  p:set_baud(921600)
  send(p, OP.READ_REG, string.pack("<I4", 0x40001000))
  test.eq(p:read(64, 0.3), "", "no answer through a bridge that cannot do 921600")
  p:close()
end)

-- ---- fault injection ------------------------------------------------------------------------

-- At the model level (no wire, so scheduling cannot change what is observed): every frame in
-- either direction goes through the same seeded generator.
local function fault_run(seed)
  local dev = require("mpctl.sim.esp").new { chip = "esp32", timing = "off", app = "none",
    seed = seed, corrupt = 0.3, drop = 0.2 }
  local out, hit = {}, 0
  for i = 1, 64 do
    local f = string.rep(string.char(i), 24)
    local g = dev:fault_frame(f, i % 2 == 0 and "in" or "out")
    if g ~= f then hit = hit + 1 end
    out[i] = g
  end
  return table.concat(out, "|"), hit
end

test("fault injection: the same seed gives the same faults, another seed others", function()
  local a, hits = fault_run(7)
  local b = fault_run(7)
  test.eq(a, b)
  test.ok(hits > 10 and hits < 54, "about half the frames hit: " .. hits)
  test.ok(fault_run(8) ~= a, "seed 8 differs from seed 7")
end)

test("reset_at: the board resets mid-write and boots from flash", function()
  local p = open("esp32", "reset_at=0x10800")
  sync(p)
  run_stub(p)
  cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4", 0x1000, 1, 0x1000, 0x10000))
  send(p, OP.FLASH_DATA, string.pack("<I4I4I4I4", 0x1000, 0, 0, 0) .. string.rep("x", 0x1000),
    rom.checksum(string.rep("x", 0x1000)))
  p:expect("SPI_FAST_FLASH_BOOT", 5, true)
  p:close()
end)

-- ---- the app --------------------------------------------------------------------------------

test("a valid image boots into the real MicroPython REPL after a hard reset", function()
  local ok = pcall(function() return require("mpctl.sim.micropython").script_path() end)
  if not ok then return test.skip("MicroPython WebAssembly package not installed") end
  local p = open("esp32")
  sync(p)
  cmd(p, OP.SPI_ATTACH, string.rep("\0", 8))
  -- a one-segment ESP32 image header (magic 0xE9, DIO, 4 MB, chip id 0) at the boot offset
  local hdr = string.pack("<BBBBI4", 0xE9, 1, 2, 0x20, 0x400805B0) .. "\xEE" .. string.rep("\0", 15)
  local block = hdr .. string.rep("\0", 0x400 - #hdr)
  test.eq(ok_status(cmd(p, OP.FLASH_BEGIN, string.pack("<I4I4I4I4I4", 0x400, 1, 0x400, 0x1000, 0)), 4), true)
  test.eq(ok_status(data_cmd(p, OP.FLASH_DATA, block, 0), 4), true)
  p:set_rts(true)
  require("mpctl.time").sleep(0.05)
  p:set_rts(false)
  p:expect("rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)", 5, true)
  p:expect("Generic ESP32 module with ESP32", 20, true)
  p:expect(">>> ", 10, true)
  p:write("print(6 * 7)\r")
  p:expect("42", 10, true)
  p:close()
end)
