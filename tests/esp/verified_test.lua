-- Issue 8, "verified means verified": one test per fault the issue names, each made to happen
-- exactly once (client-side, by damaging the one packet or reply in question) so the outcome
-- does not depend on a random seed. The fault matrix (fault_matrix_*_test.lua) covers the rest.
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local hash = require("mpctl.hash")
local serial = require("mpctl.serial")
local slip = require("mpctl.slip")
local esp = require("mpctl.esp")
local command = require("mpctl.esp.command")
local guard = require("mpctl.esp.guard")
local imagegen = require("mpctl.esp.imagegen")
local fake = require("fakeport")

local KB = 1024
local OP = command.OP
local IMG = imagegen.generate { chip = "esp32", size = 200 * KB + 100, seed = 4 } -- not sector-sized

local function md5hex(s) return hash.hex(hash.md5(s)) end

-- A flash file with non-blank content everywhere, so an erase or a stray write shows.
local function previous_flash(dir, size)
  local parts = {}
  for i = 0, size // 4096 - 1 do parts[#parts + 1] = string.rep(string.pack("<I4", 0x5A000000 + i), 1024) end
  local path = fs.join(dir, "flash.bin")
  fs.write(path, table.concat(parts))
  return path, table.concat(parts)
end

local function connect(url, opts)
  local port = serial.open(url, { baud = 115200 })
  local o = { reset = "classic", baud = 921600, log = function() end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return esp.connect(port, o), port
end

-- Damage the first packet with opcode `op` that `conn` sends: fn(packet) -> packet.
local function damage_once(conn, op, fn)
  local orig = conn.write_raw
  local done = false
  conn.write_raw = function(self, packet)
    if not done and packet:byte(2) == op then
      done = true
      packet = fn(packet)
    end
    return orig(self, packet)
  end
  return function() return done end
end

test("guard blocks: sectors next to each region, the rest in 256 KiB blocks, nothing written left out", function()
  local spans = guard.spans { { 0x1000, 0x30001 }, { 0x8000, 0x1000 } }
  test.eq(spans, { { 0x1000, 0x32000 } })
  local blocks = guard.blocks(spans, 0x100000)
  test.eq(blocks[1], { 0, 0x1000 })
  test.eq(blocks[2], { 0x32000, 0x33000 })
  test.eq(blocks[#blocks], { 0xFF000, 0x100000 })
  local pos = 0x32000
  for i = 2, #blocks do
    test.eq(blocks[i][1], pos, "contiguous")
    pos = blocks[i][2]
  end
  test.eq(pos, 0x100000)
end)

test("a FLASH_DEFL_BEGIN whose offset is damaged on the wire: exit is an error naming the damaged range", function()
  local dir = fs.tmpdir()
  local path, before = previous_flash(dir, 4096 * KB)
  local chip, port = connect("sim://esp32?timing=off&app=none&flash_file=" .. path)
  -- 0x00001000 -> 0x00201000: the third offset byte changed, as a corrupted byte would
  damage_once(chip.conn, OP.FLASH_DEFL_BEGIN, function(p) return p:sub(1, 22) .. "\x20" .. p:sub(24) end)
  local ok, err = pcall(chip.write, chip, 0x1000, IMG)
  port:close()
  test.eq(ok, false, "not reported as done")
  test.eq(err.kind, "failed")
  test.eq(err.outside, "changed")
  test.ok(err.offset >= 0x200000 and err.offset <= 0x201000, string.format("offset 0x%X", err.offset))
  test.contains(tostring(err), "flash outside it changed: 0x20")
  -- the simulator's flash agrees: the image is in place (rewritten after the MD5 mismatch) and
  -- the range named really changed
  local flash = fs.read(path)
  test.eq(md5hex(flash:sub(0x1001, 0x1000 + #IMG)), md5hex(IMG), "image verified in place")
  test.ok(flash:sub(0x201001, 0x202000) ~= before:sub(0x201001, 0x202000), "0x201000 really changed")
  fs.remove(dir, { recursive = true })
end)

test("ROM mode: a FLASH_BEGIN whose erase size is damaged erases past the image: named, not ok", function()
  local dir = fs.tmpdir()
  local path, before = previous_flash(dir, 4096 * KB)
  local chip, port = connect("sim://esp32?timing=off&flash_file=" .. path, { stub = "no" })
  local img = IMG:sub(1, 64 * KB)
  -- erase size 0x10000 -> 0x50000: the ROM erases 256 KiB past the image before answering
  damage_once(chip.conn, OP.FLASH_BEGIN, function(p) return p:sub(1, 10) .. "\x05" .. p:sub(12) end)
  local ok, err = pcall(chip.write, chip, 0x10000, img, { diff = false, compress = false })
  port:close()
  test.eq(ok, false)
  test.eq(err.kind, "failed")
  test.eq(err.offset, 0x20000, "the first sector after the image")
  test.contains(tostring(err), "0x20000-0x3FFFF (now erased), 0x40000-0x7FFFF")
  local flash = fs.read(path)
  test.eq(flash:sub(0x20001, 0x60000), string.rep("\255", 0x40000), "really erased")
  test.eq(flash:sub(0x60001) == before:sub(0x60001), true, "the rest as before")
  fs.remove(dir, { recursive = true })
end)

test("a clean write leaves the rest of the flash as it was, byte for byte, and says it checked", function()
  local dir = fs.tmpdir()
  local path, before = previous_flash(dir, 2048 * KB)
  local chip, port = connect("sim://esp32?timing=off&flash_size=2MB&flash_file=" .. path)
  local st = chip:write(0x1000, IMG)
  test.eq(st.outside, "unchanged")
  test.ok(st.guard_s ~= nil, "guard ran")
  local again = chip:write(0x1000, IMG)
  test.eq(again.outside, "not written", "nothing written, nothing to check")
  port:close()
  local flash = fs.read(path)
  local stop = 0x1000 + #IMG
  local sector_end = stop + (-stop) % 4096
  test.eq(flash:sub(1, 0x1000) == before:sub(1, 0x1000), true, "before the image")
  test.eq(md5hex(flash:sub(0x1001, stop)), md5hex(IMG), "the image")
  test.eq(flash:sub(stop + 1, sector_end), string.rep("\255", sector_end - stop), "rest of its last sector erased")
  test.eq(flash:sub(sector_end + 1) == before:sub(sector_end + 1), true, "after the image's sectors")
  fs.remove(dir, { recursive = true })
end)

test("SYNC: a damaged error reply (value 0) is not the stub; only well-formed replies count", function()
  local function reply(op, value, data) return slip.encode(string.pack("<BBHI4", 1, op, #data, value) .. data) end
  local port = fake.new()
  local conn = command.new(port)
  port:feed(reply(OP.SYNC, 0, "\1\5")) -- the issue's case: status 1, error 0x05, value 0
  test.eq(conn:sync(0.01), nil, "an error reply is no answer")
  port:feed(reply(OP.SYNC, 0, "\0\0\0")) -- length that fits no loader
  test.eq(conn:sync(0.01), nil)
  port:feed(reply(OP.SYNC, 0, "\0\0"))
  test.eq(conn:sync(0.01), 0, "the stub: one reply, value 0")
  port:feed(reply(OP.SYNC, 0, "\0\0\0\0") .. reply(OP.SYNC, 0x20120707, "\0\0\0\0"))
  test.eq(conn:sync(0.01), 0x20120707, "one ROM reply among them makes it the ROM")
  -- header length disagreeing with the data received (a dropped byte)
  port:feed(slip.encode(string.pack("<BBHI4", 1, OP.SYNC, 4, 0) .. "\0\0"))
  test.eq(conn:sync(0.01), nil)
end)

test("stub upload: a lost MEM_DATA answer restarts the upload from MEM_BEGIN instead of resending the block", function()
  local chip, port = connect("sim://esp32?timing=off", { stub = "no" })
  local stub = require("mpctl.esp.stub").load("esp32")
  if not stub then test.skip("no stub JSON found (run scripts/setup)") end
  -- swallow the answer to the second MEM_DATA, as a delayed or damaged reply would look
  local conn = chip.conn
  local orig = conn.response
  local n = 0
  conn.response = function(self, op, timeout)
    if op == OP.MEM_DATA then
      n = n + 1
      if n == 2 then
        orig(self, op, timeout)
        return nil, "timeout", "MEM_DATA: timeout"
      end
    end
    return orig(self, op, timeout)
  end
  local ok, why = chip:run_stub(stub, 3)
  test.eq(ok, true, tostring(why))
  test.ok(chip.stub, "stub running")
  conn.response = orig
  chip.conn.status_len = 2
  test.eq(#chip:md5(0, 4096), 32, "the stub answers")
  port:close()
end)

test("a damaged FLASH_DEFL_END reboots the stub: noticed at once, reconnected, verified", function()
  local dir = fs.tmpdir()
  local path = previous_flash(dir, 4096 * KB)
  local chip, port = connect("sim://esp32?timing=off&app=none&flash_file=" .. path)
  -- "stay in the stub" (1) read as 0: the stub reboots the chip
  damage_once(chip.conn, OP.FLASH_DEFL_END, function(p) return p:sub(1, 8) .. "\0\0\0\0" end)
  local st = chip:write(0x1000, IMG)
  test.ok(st.verified, "verified after reconnecting")
  test.eq(st.outside, "unchanged")
  test.eq(chip.reconnects, 1, "one reconnect")
  test.eq(chip:md5(0x1000, #IMG + 4 - #IMG % 4), md5hex(IMG .. string.rep("\255", 4 - #IMG % 4)))
  port:close()
  fs.remove(dir, { recursive = true })
end)

test("writes that keep failing at a high rate go on one baud step lower", function()
  local chip, port = connect("sim://esp32?timing=off")
  test.eq(port:baud(), 921600)
  -- a bridge at its limit: every data block it carries at more than 460800 baud arrives damaged
  local real = port
  chip.port = setmetatable({
    name = real.name,
    write = function(_, s, ...)
      if real:baud() > 460800 and #s > 1000 then s = s:sub(1, 600) .. "\0" .. s:sub(602) end
      return real:write(s, ...)
    end,
  }, { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
  local st = chip:write(0x1000, IMG)
  test.ok(st.verified, "verified")
  test.eq(real:baud(), 460800, "one step lower")
  test.contains(chip.baud_note, "writes failed at 921600 baud, went on at 460800")
  chip.port = real
  port:close()
end)
