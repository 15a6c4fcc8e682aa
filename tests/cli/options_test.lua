-- Typed recipe options (mpctl.options): header lines into types, values into typed values.
local test = require("mpctl.test")
local options = require("mpctl.options")
local fs = require("mpctl.fs")

local function meta_of(lines)
  local dir = fs.tmpdir()
  local p = dir .. "/r.lua"
  fs.write(p, "--- A recipe.\n" .. table.concat(lines, "\n") .. "\nprint(1)\n")
  local ok, m = pcall(options.read_meta, p)
  fs.remove(p)
  fs.remove(dir)
  if not ok then error(m, 0) end
  return m
end

test("header lines: typed ones get a kind and a default, help text stays untyped", function()
  local m = meta_of({
    "-- @option verify: yes|no = yes; check what was written",
    "-- @option timeout: seconds = 10; how long to wait",
    "-- @option size: integer = 0x1000",
    "-- @option reset: classic|usb-jtag|none; how to reset",
    "-- @option backup: FILE|flash|files|all; keep what was there",
    "-- @option name: TEXT",
    "-- @option old: yes = erase the whole flash first",
    "-- @option legacy: seconds to wait for the REPL",
  })
  local by = m.by_name
  test.eq({ by.verify.kind, by.verify.default }, { "bool", true })
  test.eq({ by.timeout.kind, by.timeout.default }, { "seconds", 10 })
  test.eq({ by.size.kind, by.size.default }, { "integer", 4096 })
  test.eq({ by.reset.kind, by.reset.words }, { "enum", { "classic", "usb-jtag", "none" } })
  test.eq({ by.backup.kind, by.backup.words }, { "string", { "flash", "files", "all" } })
  test.eq(by.name.kind, "string")
  test.eq(by.old.kind, nil)
  test.eq(by.old.help, "yes = erase the whole flash first")
  test.eq(by.legacy.kind, nil)
end)

test("a default the type refuses is an error in the recipe, named", function()
  test.raises(function() meta_of({ "-- @option verify: yes|no = maybe" }) end, "bad default 'maybe'")
end)

test("values convert or are refused naming what is accepted", function()
  local b, e, sec = { kind = "bool" }, { kind = "enum", words = { "a", "b" } }, { kind = "seconds", spec = "seconds" }
  test.eq(options.convert(b, "YES"), true)
  test.eq(options.convert(b, "off"), false)
  test.eq(options.convert(b, true), true)
  test.eq(select(2, options.convert(b, "yse")), "accepted values: yes, no")
  test.eq(options.convert(e, "b"), "b")
  test.eq(select(2, options.convert(e, "c")), "accepted values: a, b")
  test.eq(options.convert(sec, "2.5"), 2.5)
  test.eq(options.convert(sec, "-1"), nil)
  test.eq(options.convert({ kind = "integer" }, "0x10"), 16)
  test.eq(options.convert({ kind = "integer" }, "1.5"), nil)
  test.eq(options.convert({ kind = "string", words = { "flash" } }, "my.bin"), "my.bin")
  test.eq(options.yes_no(nil, true), true)
  test.eq(options.yes_no("", false), false)
  local v, why = options.yes_no("maybe", nil, "erase")
  test.eq(v, nil)
  test.contains(why, "erase: 'maybe' is not yes or no")
end)

test("apply fills defaults, converts strings, leaves typed values alone", function()
  local m = meta_of({ "-- @option verify: yes|no = yes", "-- @option timeout: seconds = 10", "-- @option x: TEXT" })
  local arg = options.apply(m, { timeout = "3" }, "r")
  test.eq({ arg.verify, arg.timeout, arg.x }, { true, 3, nil })
  arg = options.apply(m, { verify = false, timeout = 7 }, "r")
  test.eq({ arg.verify, arg.timeout }, { false, 7 })
  local ok, err = pcall(options.apply, m, { verify = "yse" }, "r")
  test.ok(not ok)
  test.contains(tostring(err), "r: bad value for verify: 'yse' (accepted values: yes, no)")
end)
