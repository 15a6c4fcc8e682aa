--- Flash like esp32_flash, then write this board's row of the station's data=FILE onto the board
--- as /board.json and read it back (what a classroom station does with names or Wi-Fi settings).
-- @family: esp
--
--   mpctl station tests/many/recipes/flash_and_name.lua firmware=demo data=boards.csv watch=FILE

require("esp32_flash")
local port <close> = mpctl.open_port(arg, { baud = 115200 })
local repl = mpctl.repl.attach(port, { timeout = 10 })
local device = repl:eval("__import__('machine').unique_id()")
-- the MAC the simulated board reports as machine.unique_id(): b'\x24\x0a...' -> 24:0a:...
local bytes = load("return " .. device:gsub("^b", ""), "mac", "t", {})()
local mac = bytes:gsub(".", function(c) return string.format("%02x:", c:byte()) end):sub(1, -2)
local row = mpctl.board_data(mac)
mpctl.check(row ~= nil, "a data row for board " .. mac)
local text = mpctl.ui.json_encode(row)
repl:put(text, "/board.json")
mpctl.check(repl:get("/board.json") == text, "board.json written: " .. text)
repl:close()
