-- mpctl.base64: Base64 (RFC 4648, standard alphabet, '=' padding) in plain Lua, the one codec of the
-- client side (the REPL transfer, the flasher stub JSON).
-- The REPL transfer encodes whole files with it, so it works on 3-byte groups through a
-- 4096-entry table of 12-bit halves instead of building strings character by character.
local M = {}

local ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local PAIR = {}    -- 12-bit value -> two base64 characters
for i = 0, 4095 do
  local a, b = (i >> 6) + 1, (i & 63) + 1
  PAIR[i] = ALPHA:sub(a, a) .. ALPHA:sub(b, b)
end

local VAL = {}     -- byte -> 6-bit value
for i = 1, 64 do VAL[ALPHA:byte(i)] = i - 1 end

local byte, char, concat = string.byte, string.char, table.concat

function M.encode(s)
  local out, n = {}, 0
  local len = #s
  local full = len - len % 3
  for i = 1, full, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = (a << 16) | (b << 8) | c
    n = n + 1
    out[n] = PAIR[v >> 12] .. PAIR[v & 4095]
  end
  local rest = len - full
  if rest == 1 then
    local v = byte(s, len) << 16
    n = n + 1
    out[n] = PAIR[v >> 12]:sub(1, 2) .. "=="
  elseif rest == 2 then
    local a, b = byte(s, len - 1, len)
    local v = (a << 16) | (b << 8)
    n = n + 1
    out[n] = PAIR[v >> 12] .. PAIR[v & 4095]:sub(1, 1) .. "="
  end
  return concat(out)
end

-- Decodes, ignoring whitespace (devices print base64 in lines). Raises on other junk so a
-- corrupted transfer is reported instead of silently producing wrong bytes.
function M.decode(s)
  s = s:gsub("[%s]", "")
  if #s % 4 ~= 0 then error("base64: length " .. #s .. " is not a multiple of 4", 2) end
  local out, n = {}, 0
  for i = 1, #s, 4 do
    local c1, c2, c3, c4 = byte(s, i, i + 3)
    local a, b = VAL[c1], VAL[c2]
    if not a or not b then error("base64: bad character at offset " .. (i - 1), 2) end
    if c4 == 61 then      -- '='
      if c3 == 61 then
        n = n + 1; out[n] = char((a << 2) | (b >> 4))
      else
        local c = VAL[c3]
        if not c then error("base64: bad character at offset " .. (i + 1), 2) end
        n = n + 1; out[n] = char((a << 2) | (b >> 4), ((b & 15) << 4) | (c >> 2))
      end
    else
      local c, d = VAL[c3], VAL[c4]
      if not c or not d then error("base64: bad character at offset " .. (i + 1), 2) end
      local v = (a << 18) | (b << 12) | (c << 6) | d
      n = n + 1; out[n] = char(v >> 16, (v >> 8) & 255, v & 255)
    end
  end
  return concat(out)
end

return M
