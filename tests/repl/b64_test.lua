local test = require("mpctl.test")
local b64 = require("mpctl.base64")

test("base64 matches RFC 4648 vectors", function()
  local vectors = {[""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
    foobar = "Zm9vYmFy"}
  for plain, enc in pairs(vectors) do
    test.eq(b64.encode(plain), enc, plain)
    test.eq(b64.decode(enc), plain, enc)
  end
end)

test("base64 round-trips every byte value and ignores line breaks", function()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  local all = table.concat(t):rep(3) .. "x"
  local enc = b64.encode(all)
  test.eq(b64.decode(enc), all)
  test.eq(b64.decode(enc:sub(1, 40) .. "\r\n" .. enc:sub(41)), all)
end)

test("base64 rejects junk instead of guessing", function()
  test.raises(function() b64.decode("Zm9v!A==") end, "bad character")
  test.raises(function() b64.decode("Zm9") end, "multiple of 4")
end)

test("pyquote makes Python literals for any path", function()
  local repl = require("mpctl.repl")
  test.eq(repl.pyquote("a'b\\c\n"), "'a\\'b\\\\c\\x0a'")
  test.eq(repl.pyquote("/lib/ü.py"), "'/lib/ü.py'")
end)
