-- mpctl.slip over real ports: read_frame/write_frame across a pty pair (the local-port code
-- path a USB adapter takes), plus the codec and decoder edge cases the ESP protocol depends on.
local test = require("mpctl.test")
local slip = require("mpctl.slip")
local serial = require("mpctl.serial")

local function pair()
  local l = serial.listen("pty")
  local a = serial.open(l.path)
  local m = l:accept(1)
  test.ok(m, "accept returns the master")
  return l, a, m
end

local random_bytes = test.random_bytes

test("encode escapes C0 and DB, decode reverses it", function()
  test.eq(slip.encode("\192"), "\192\219\220\192")
  test.eq(slip.encode("\219"), "\192\219\221\192")
  test.eq(slip.decode("a\219\220\219\221"), "a\192\219")
  test.raises(function() slip.decode("\219\1") end, "bad escape 0xDB 0x01 at offset 0")
end)

test("small frames cross a pty both ways", function()
  local l, a, m = pair()
  for _, n in ipairs({ 1, 255, 2048 }) do
    local payload = random_bytes(n, n + 1)
    slip.write_frame(m, payload)
    test.eq(slip.read_frame(a, 5), payload, n .. "-byte frame to the slave")
    slip.write_frame(a, payload)
    test.eq(slip.read_frame(m, 5), payload, n .. "-byte frame to the master")
  end
  a:close(); m:close(); l:close()
end)

-- A pty holds only a few KiB, so the big frames (the ESP stub's 16 KiB blocks, and bigger) go
-- over socket://, whose kernel buffer takes them whole, to a second port backend.
test("frames of 16 KiB and more cross a socket:// port intact", function()
  local l = serial.listen("socket://127.0.0.1:0")
  local c = serial.open("socket://127.0.0.1:" .. l.port)
  local s = l:accept(2)
  test.ok(s, "accepted")
  local payloads = { random_bytes(16384 + 16, 1), random_bytes(65536, 2), string.rep("\192\219", 20000) }
  for i, p in ipairs(payloads) do
    slip.write_frame(c, p)
    test.eq(slip.read_frame(s, 10), p, "frame " .. i)
  end
  c:write("noise")
  for _, p in ipairs(payloads) do slip.write_frame(c, p) end
  for i, p in ipairs(payloads) do test.eq(slip.read_frame(s, 10), p, "back-to-back frame " .. i) end
  c:close(); s:close(); l:close()
end)

test("garbage and empty frames are skipped; bytes after the frame stay in the port", function()
  local l, a, m = pair()
  m:write("ets Jun  8 2016 00:22:57\r\n\192\192" .. slip.encode("one") .. slip.encode("two") .. "rest")
  test.eq(slip.read_frame(a, 2), "one")
  test.eq(slip.read_frame(a, 2), "two")
  test.eq(a:read_exact(4, 2), "rest")
  a:close(); m:close(); l:close()
end)

test("a frame split across writes is reassembled", function()
  local l, a, m = pair()
  local frame = slip.encode(random_bytes(3000, 7))
  m:write(frame:sub(1, 1000))
  m:write(frame:sub(1001))
  test.eq(slip.read_frame(a, 2), slip.decode(frame))
  a:close(); m:close(); l:close()
end)

test("timeout names the port and shows the bytes seen", function()
  local l, a, m = pair()
  m:write("\192partial\1")
  local msg = test.raises(function() slip.read_frame(a, 0.2) end, "timeout after 0.2 s")
  test.contains(msg, "end of a frame (8 payload bytes so far)")
  test.contains(msg, "partial\\x01")
  test.contains(msg, a.name)
  test.raises(function() slip.read_frame(a, 0.05) end, "waiting for a frame start")
  a:close(); m:close(); l:close()
end)

test("bad escape names the byte; the next frame is still readable", function()
  local l, a, m = pair()
  m:write("\192ab\219\65cd\192" .. slip.encode("next"))
  test.raises(function() slip.read_frame(a, 2) end, "bad escape 0xDB 0x41 at payload offset 2")
  test.eq(slip.read_frame(a, 2), "next")
  a:close(); m:close(); l:close()
end)

test("peer hang-up mid-frame is an error, not a wait until the timeout", function()
  local l, a, m = pair()
  m:write("\192abc")
  test.eq(a:read(1, 1), "\192")
  a:unread("\192")
  m:close()
  test.raises(function() slip.read_frame(a, 30) end, "closed by the peer in the middle of a frame")
  a:close(); l:close()
end)

test("decoder: frames across feeds, bad escapes reported, not raised", function()
  local d = slip.decoder()
  local stream = "noise" .. slip.encode("a\192") .. "\192x\219\2\192" .. slip.encode("b")
  local got, errs = {}, {}
  for i = 1, #stream do
    local frames, e = d:feed(stream:sub(i, i))
    for _, f in ipairs(frames) do got[#got + 1] = f end
    for _, x in ipairs(e or {}) do errs[#errs + 1] = x end
  end
  test.eq(got, { "a\192", "b" })
  test.eq(#errs, 1)
  test.contains(errs[1], "0xDB 0x02")
end)

-- Issue 8: once a frame grows past max mid-feed, the rest of it must be skipped up to its own
-- end, as when the bytes come in one piece: its closing C0 must not open a frame of noise.
test("decoder(max): the same frames whether the bytes come whole or split", function()
  local function frames_of(chunks, max)
    local d = slip.decoder(max)
    local out = {}
    for _, c in ipairs(chunks) do
      for _, f in ipairs((d:feed(c))) do out[#out + 1] = f end
    end
    return out
  end
  -- the case found: a too-long frame split after it passed max, then "a" between two C0s
  local s = "\192ab\192\219\192b\221\220\221\220\192a\192\221bb\221\221"
  test.eq(frames_of({ s }, 3), { "ab" })
  test.eq(frames_of({ s:sub(1, 10), s:sub(11) }, 3), { "ab" }, "split after the frame passed max")
  -- seeded random inputs from the SLIP alphabet, split at random places
  local alphabet = { "\192", "\219", "\220", "\221", "a", "b" }
  local rnd = test.random_bytes(200000, 8)
  local pos = 0
  local function r(n) pos = pos + 1 return rnd:byte(pos) % n + 1 end
  for _ = 1, 5000 do
    local t = {}
    for i = 1, r(30) do t[i] = alphabet[r(#alphabet)] end
    local whole = table.concat(t)
    local chunks, i = {}, 1
    while i <= #whole do
      local k = r(4)
      chunks[#chunks + 1] = whole:sub(i, i + k - 1)
      i = i + k
    end
    local max = r(6)
    local hex = whole:gsub(".", function(c) return string.format("%02X ", c:byte()) end)
    test.eq(frames_of(chunks, max), frames_of({ whole }, max), "max " .. max .. ", input " .. hex)
  end
end)
