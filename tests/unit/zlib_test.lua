-- mpctl.zlib and mpctl.hash from Lua: the streams the ESP stub and simulator exchange.
local test = require("mpctl.test")
local zlib = require("mpctl.zlib")
local hash = require("mpctl.hash")

local function sample(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i * i + i // 7) % 256) end
  return table.concat(t) .. string.rep("\255", n)
end

test("compress gives a zlib stream that decompresses, at every level", function()
  local data = sample(40000)
  for level = 1, 12 do
    local c = zlib.compress(data, level)
    test.eq(c:byte(1), 0x78, "zlib header (CMF) at level " .. level)
    test.eq(((c:byte(1) << 8) | c:byte(2)) % 31, 0, "header check bits")
    test.eq(zlib.decompress(c), data)
  end
end)

test("inflater fed one byte at a time", function()
  local data = sample(20000)
  local c = zlib.compress(data, 9)
  local z = zlib.inflater()
  local out, done = {}, false
  for i = 1, #c do
    local o
    o, done = z:feed(c:sub(i, i))
    out[#out + 1] = o
    test.eq(done, i == #c, "done exactly at the last byte")
  end
  test.eq(table.concat(out), data)
end)

test("inflater over 16 KiB blocks, as FLASH_DEFL_DATA delivers them", function()
  local data = sample(300000)
  local c = zlib.compress(data, 9)
  local z = zlib.inflater()
  local h = hash.new("md5")
  for i = 1, #c, 16384 do h:update((z:feed(c:sub(i, i + 16383)))) end
  test.eq(z:done(), true)
  test.eq(h:digest(), hash.md5(data))
end)

test("corrupt and truncated streams say what and where", function()
  local c = zlib.compress(sample(5000))
  test.raises(function() zlib.decompress(c:sub(1, #c - 10)) end, "truncated zlib stream")
  test.raises(function() zlib.decompress("\120\218\7\0") end, "corrupt zlib stream at input offset")
  test.raises(function() zlib.decompress(c, 10) end, "more than the expected 10 bytes")
end)

test("hash vectors and streaming", function()
  test.eq(hash.hex(hash.md5("")), "d41d8cd98f00b204e9800998ecf8427e")
  test.eq(hash.hex(hash.sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  test.eq(hash.crc32("123456789"), 0xCBF43926)
  local h = hash.new("sha256")
  h:update("a"):update("bc")
  test.eq(h:hexdigest(), hash.hex(hash.sha256("abc")))
end)
