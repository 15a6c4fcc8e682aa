-- The pieces of mpctl.many without boards: port lists, --port auto's choice, board identity,
-- the station's watch sources and its log.
local test = require("mpctl.test")
local fs = require("mpctl.fs")

test("--ports FILE: one port per line, comments and blanks skipped", function()
  local ports = require("mpctl.many.ports")
  local dir = fs.tmpdir()
  local f = fs.join(dir, "rig.txt")
  fs.write(f, "# rig A\n/dev/ttyUSB0\n\n  rfc2217://lab2:4001   # remote\n")
  test.eq(ports.read_list(f), { "/dev/ttyUSB0", "rfc2217://lab2:4001" })
  fs.write(f, "# nothing\n\n")
  test.raises(function() ports.read_list(f) end, "lists no port")
  fs.remove(dir, { recursive = true })
end)

test("--port auto: every attached board of the family, by USB id", function()
  local ports = require("mpctl.many.ports")
  local rows = require("mpctl.cli.ports").describe({
    { path = "/dev/ttyUSB0", vid = 0x10C4, pid = 0xEA60, serial = "0001" }, -- CP2102: ESP boards
    { path = "/dev/ttyACM0", vid = 0xF055, pid = 0x9800, serial = "3276" }, -- MicroPython pyboard
    { path = "/dev/ttyUSB1", vid = 0x1A86, pid = 0x7523 },                  -- CH340: ESP boards
    { path = "/dev/ttyS0" },                                                -- a plain UART
  })
  local function paths(list) local o = {} for i, r in ipairs(list) do o[i] = r.path end return o end
  test.eq(paths(ports.auto(rows, "esp")), { "/dev/ttyUSB0", "/dev/ttyUSB1" })
  test.eq(#ports.auto(rows, nil), 3)
  local listed = { { path = "/dev/ttyUSB0", vid = 0x10C4, pid = 0xEA60, serial = "0001" } }
  local boards = ports.expand({ "auto", "sim://esp32" }, { family = "esp", list = listed })
  test.eq(#boards, 2)
  test.eq(boards[1].id.usb, "10C4:EA60:0001")
  test.raises(function() ports.expand({ "auto" }, { family = "esp", list = {} }) end, "no attached esp board")
end)

test("identity: the strongest fact both sides know decides", function()
  local id = require("mpctl.many.identity")
  test.eq(id.usb_path_of("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.4/1-1.4:1.0"), "1-1.4")
  test.eq(id.usb_path_of("/sys/devices/pnp0/00:04/tty/ttyS0"), nil)
  test.eq(id.usb_path("rfc2217://lab:4001"), nil)
  local a = { port = "/dev/ttyACM0", usb_path = "1-1.4", usb = "303A:1001:AA", usb_serial = "AA" }
  local b = { port = "/dev/ttyACM1", usb_path = "1-1.4", usb = "303A:1001:AA", usb_serial = "AA" }
  test.ok(id.same(a, b), "re-enumerated as ttyACM1: the same board")
  a.device, b.device = "24:0a:c4:00:00:01", "24:0a:c4:00:00:02"
  test.ok(not id.same(a, b), "different MACs: different boards, whatever the socket")
  test.eq(id.key(a), "device:24:0a:c4:00:00:01")
  test.eq(id.key({ port = "x", usb_path = "1-2" }), "usbpath:1-2")
  test.eq(id.key({ port = "sim://esp32" }), "port:sim://esp32")
end)

test("station watch sources: FILE of URLs, DIR of files and ttys, GLOB", function()
  local watch = require("mpctl.many.watch")
  local dir = fs.tmpdir()
  local list = fs.join(dir, "list.txt")
  fs.write(list, "rfc2217://127.0.0.1:4001\n# gone\nsim://esp32?seed=2\n")
  local function urls(w) local o = {} for i, p in ipairs(w.scan()) do o[i] = p.url end return o end
  test.eq(urls(watch.new({ watch = list })), { "rfc2217://127.0.0.1:4001", "sim://esp32?seed=2" })
  local d = fs.join(dir, "boards")
  fs.mkdir(d)
  fs.write(fs.join(d, "one"), "rfc2217://127.0.0.1:4002\n")
  test.eq(urls(watch.new({ watch = d })), { "rfc2217://127.0.0.1:4002" })
  os.execute("ln -s /dev/null " .. d .. "/tty-link")
  test.eq(urls(watch.new({ watch = d })), { fs.join(d, "tty-link"), "rfc2217://127.0.0.1:4002" })
  test.eq(urls(watch.new({ watch = d .. "/tty-*" })), { fs.join(d, "tty-link") })
  test.eq(urls(watch.new({ watch = fs.join(dir, "absent") })), {})
  fs.remove(dir, { recursive = true })
end)

test("station log: CSV with a header once, fields quoted; JSONL", function()
  local station = require("mpctl.many.station")
  local dir = fs.tmpdir()
  local csv, jsonl = fs.join(dir, "log.csv"), fs.join(dir, "log.jsonl")
  local entry = { time = "t", port = "p", result = "fail", error = 'said "no", twice' }
  station.append_log(csv, entry)
  station.append_log(csv, entry)
  local lines = {}
  for l in fs.read(csv):gmatch("[^\n]+") do lines[#lines + 1] = l end
  test.eq(#lines, 3)
  test.eq(lines[2], 't,p,,,,,,fail,,"said ""no"", twice"')
  station.append_log(jsonl, entry)
  test.eq(require("mpctl.ui").json_decode(fs.read(jsonl)).error, 'said "no", twice')
  fs.remove(dir, { recursive = true })
end)

test("proc: rusage of a reaped child (the supervisor's CPU time per board)", function()
  local proc = require("mpctl.proc")
  local p = proc.spawn({ argv = { "/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done" }, pty = false })
  test.eq(p:rusage(), nil) -- still running (or not reaped yet): nothing to report
  test.eq(p:wait(60), 0)
  local ru = p:rusage()
  test.ok(ru and ru.user + ru.system > 0, "CPU time counted")
  test.ok(ru.maxrss > 0)
  p:close()
end)
