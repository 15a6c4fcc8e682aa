-- Board files: loading in an empty environment, typo suggestions, USB matching.
local test = require("mpctl.test")
local board = require("mpctl.board")

test("all six ESP boards load with offsets from MicroPython board.json", function()
  local want = { ESP32_GENERIC = 0x1000, ESP32_GENERIC_S2 = 0x1000, ESP32_GENERIC_S3 = 0,
    ESP32_GENERIC_C3 = 0, ESP32_GENERIC_C6 = 0, ESP8266_GENERIC = 0 }
  for id, off in pairs(want) do
    local b = board.load(id)
    test.eq(b.offset, off, id)
    test.eq(b.family, "esp", id)
    test.ok(#b.usb > 0, id .. " has USB ids")
  end
end)

test("a typo lists the known ids, closest first", function()
  local ok, err = pcall(board.load, "ESP32_GENRIC")
  test.eq(ok, false)
  test.eq(require("mpctl.errors").kind(err), "not_found")
  test.contains(tostring(err), "unknown board 'ESP32_GENRIC'; known boards: ESP32_GENERIC,")
end)

test("USB ids map to boards: CP210x to many, USB-Serial/JTAG to C3/S3/C6", function()
  local names = {}
  for _, b in ipairs(board.match_usb(0x303A, 0x1001)) do names[#names + 1] = b.id end
  table.sort(names)
  test.eq(table.concat(names, ","), "ESP32_GENERIC_C3,ESP32_GENERIC_C6,ESP32_GENERIC_S3")
  test.ok(#board.match_usb(0x10C4, 0xEA60) >= 5, "CP210x")
  test.eq(#board.match_usb(0x1234, 0x5678), 0)
end)

test("board files cannot reach the standard library", function()
  local dir = require("mpctl.fs").tmpdir()
  local f = io.open(dir .. "/boards/EVIL.lua", "w") or (os.execute and nil)
  if not f then
    require("mpctl.fs").mkdir(dir .. "/boards", { parents = true })
    f = assert(io.open(dir .. "/boards/EVIL.lua", "w"))
  end
  f:write('return { id = "EVIL", family = "esp", chip = "esp32", offset = os.time() }')
  f:close()
  local old = board.dirs
  board.dirs = function() return { dir .. "/boards" } end
  local ok, err = pcall(board.load, "EVIL")
  board.dirs = old
  test.eq(ok, false)
  test.eq(require("mpctl.errors").kind(err), "refused")
  test.contains(tostring(err), "global 'os'")
end)
