-- Client-side tests of the ESP SLIP command layer (encoding, checksum, status handling).
local test = require("mpctl.test")
local slip = require("mpctl.slip")
local command = require("mpctl.esp.command")
local fake = require("fakeport")

local OP = command.OP

local function reply(op, value, data)
  return slip.encode(string.pack("<BBHI4", 1, op, #data, value) .. data)
end

test("checksum seeds with 0xEF and XORs every byte", function()
  test.eq(command.checksum(""), 0xEF)
  test.eq(command.checksum("\1"), 0xEE)
  test.eq(command.checksum("\xEF"), 0)
  local s = ""
  for i = 0, 254 do s = s .. string.char(i) end
  local want = 0xEF
  for i = 1, #s do want = want ~ s:byte(i) end
  test.eq(command.checksum(s), want)
  test.eq(command.checksum(s:sub(1, 13)), command.checksum(s:sub(6, 13), command.checksum(s:sub(1, 5))))
end)

test("SYNC request matches the serial-protocol.rst trace", function()
  local pkt = command.encode(OP.SYNC, command.SYNC_PAYLOAD)
  test.eq(command.hex(pkt:sub(1, 13)), "0008240000000000070712" .. "20" .. "55")
  test.eq(#pkt, 8 + 36)
end)

test("data packets carry length, seq, two zero words and the payload checksum", function()
  local pkt = command.data_packet(OP.FLASH_DEFL_DATA, 7, "\xC0\xDB\1")
  local dir, op, len, chk = string.unpack("<BBHI4", pkt)
  test.eq({ dir, op, len, chk }, { 0, 0x11, 16 + 3, 0xEF ~ 0xC0 ~ 0xDB ~ 1 })
  test.eq({ string.unpack("<I4I4I4I4", pkt, 9) }, { 3, 7, 0, 0, 25 })
  -- escaping is applied after the checksum: C0 and DB inside are escaped on the wire
  test.contains(slip.encode(pkt), "\xDB\xDC\xDB\xDD")
end)

test("READ_REG returns the value word; ROM 4-byte and stub 2-byte status both parse", function()
  for _, status in ipairs { "\0\0\0\0", "\0\0" } do
    local port = fake.new()
    local conn = command.new(port)
    port:feed(reply(OP.READ_REG, 0x00F01D83, status))
    test.eq(conn:read_reg(0x40001000), 0x00F01D83)
    local sent = slip.decode(port.written[1]:sub(2, -2))
    test.eq(sent, string.pack("<BBHI4I4", 0, OP.READ_REG, 4, 0, 0x40001000))
  end
end)

test("unrelated frames before the answer are skipped", function()
  local port = fake.new()
  local conn = command.new(port)
  port:feed(reply(OP.SYNC, 0x20120707, "\0\0") .. slip.encode("garbage") .. reply(OP.SPI_ATTACH, 0, "\0\0\0\0"))
  test.eq(conn:command(OP.SPI_ATTACH, string.rep("\0", 8)), "")
end)

test("status failure raises with the error name and port", function()
  local port = fake.new("sim://x")
  local conn = command.new(port)
  port:feed(reply(OP.FLASH_DEFL_DATA, 0, "\1\7"))
  test.raises(function() conn:command(OP.FLASH_DEFL_DATA, "x", { retries = 0 }) end, "invalid CRC")
  port:feed(reply(OP.FLASH_DEFL_DATA, 0, "\1\xC1"))
  local ok, kind, msg, code = conn:try(OP.FLASH_DEFL_DATA, "x")
  test.eq({ ok, kind, code }, { nil, "status", 0xC1 })
  test.contains(msg, "bad data checksum")
end)

test("an unsupported-command reply repeated 8 times is drained", function()
  local port = fake.new()
  local conn = command.new(port)
  for _ = 1, 8 do port:feed(reply(OP.GET_SECURITY_INFO, 0, "\1\5\0\0")) end
  local ok, kind = conn:try(OP.GET_SECURITY_INFO, "", { resp_len = 20 })
  test.eq({ ok, kind }, { nil, "unsupported" })
  test.eq(port.inbuf, "", "all repeats consumed")
  port:feed(reply(OP.READ_REG, 5, "\0\0\0\0"))
  test.eq(conn:read_reg(0), 5, "next command is not confused")
end)

test("MD5 replies: ROM 32 hex chars, stub 16 raw bytes", function()
  local port = fake.new()
  local conn = command.new(port)
  port:feed(reply(OP.SPI_FLASH_MD5, 0, string.rep("ab", 16) .. "\0\0\0\0"))
  test.eq(conn:command(OP.SPI_FLASH_MD5, "", { resp_len = 32 }), string.rep("ab", 16))
  port:feed(reply(OP.SPI_FLASH_MD5, 0, string.rep("\xAB", 16) .. "\0\0"))
  test.eq(command.hex(conn:command(OP.SPI_FLASH_MD5, "", { resp_len = 16 })), string.rep("ab", 16))
end)

test("short reply is an error, not a crash", function()
  local port = fake.new()
  local conn = command.new(port)
  port:feed(reply(OP.SPI_FLASH_MD5, 0, "\0\0"))
  test.raises(function() conn:command(OP.SPI_FLASH_MD5, "", { resp_len = 16, retries = 0 }) end, "expected 16 data bytes")
end)

test("sync reads the ROM's extra replies; stub answers value 0", function()
  local port = fake.new()
  local conn = command.new(port)
  for _ = 1, 8 do port:feed(reply(OP.SYNC, 0x20120707, "\0\0\0\0")) end
  test.eq(conn:sync(0.1), 0x20120707)
  test.eq(port.inbuf, "")
  port:feed(reply(OP.SYNC, 0, "\0\0"))
  test.eq(conn:sync(0.1), 0)
  test.eq(conn:sync(0.05), nil, "silence is nil")
end)

test("tx counts SLIP-encoded bytes on the wire", function()
  local port = fake.new()
  local conn = command.new(port)
  conn:send(OP.READ_REG, "\xC0\0\0\0")
  test.eq(conn.tx, #port.written[1])
  test.eq(conn.tx, 2 + 8 + 4 + 1)
end)

test("a damaged frame (CRC error reply) is sent again; a flash error is not", function()
  local port = fake.new()
  local conn = command.new(port)
  port:feed(reply(OP.MEM_DATA, 0, "\1\7\0\0"))
  port.on_write = function(p, _)
    if #p.written == 2 then p:feed(reply(OP.MEM_DATA, 0, "\0\0\0\0")) end
  end
  test.eq(conn:command(OP.MEM_DATA, "x"), "")
  test.eq(#port.written, 2, "sent twice")
  test.eq(conn.retries, 1)
  port.on_write = nil
  port:feed(reply(OP.FLASH_DATA, 0, "\1\8"))
  test.raises(function() conn:command(OP.FLASH_DATA, "x") end, "flash write error")
  test.eq(conn.retries, 1, "not retried")
end)

-- ESP32 ROM CHANGE_BAUDRATE carries baud * rom_xtal // valid_xtal, all integer maths in esptool
-- (targets/esp32.py change_baud); a float product can round differently, as it does here.
test("ESP32 ROM baud correction uses esptool's integer arithmetic", function()
  local esp = require("mpctl.esp")
  local regs = { [0x3FF5F06C] = 700 << 7, [0x3FF5A000 + 16] = 117 }
  local chip = setmetatable({ chip = esp.chips.by_key.esp32, stub = false,
    read_reg = function(_, addr) return regs[addr] or 0 end }, esp.Chip)
  -- 700 * 15625 * 117 // 40 = 31992187 Hz, read as a 26 MHz crystal
  test.eq(chip:rom_baud_value(921600), 921600 * 31992187 // 26000000)
  test.eq(chip:rom_baud_value(921600), 1133999)
  chip.stub = true
  test.eq(chip:rom_baud_value(921600), 921600, "the stub takes the plain rate")
end)
