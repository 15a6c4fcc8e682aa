-- Two processes of mpctl on one simulated USB bus both hear its hotplug events. umockdev 0.17
-- names each process's uevent socket after its descriptor number ($UMOCKDEV_DIR/event<fd>), and
-- two runs of one program reach libusb_init with the same free descriptor, so the later one used
-- to take the earlier one's socket: that process never saw another device arrive (the children
-- of `mpctl --port A --port B` waited for their boards in vain), and when the two binds
-- interleaved, libusb_init failed (LIBUSB_ERROR_OTHER; seen in CI under load). src/lusb.c gives
-- each process its own name. Here: two watchers wait on libusb's device list (fed by hotplug
-- only) for the BOOTSEL device a simulated Pico becomes after machine.bootloader().
local test = require("mpctl.test")
local fs = require("mpctl.fs")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

local WATCHER = [[
local usb = require("mpctl.usb")
assert(#usb.list { vid = 0x2e8a, pid = 0x0005, open = false } == 1, "the Pico's MicroPython port is on the bus")
local f = assert(io.open(os.getenv("READY"), "w")); f:close()
local seen = usb.wait({ vid = 0x2e8a, pid = 0x0003, open = false }, 20)
print(os.getenv("NAME") .. (seen and (" saw usb:" .. seen.path .. " arrive") or " never saw the BOOTSEL device"))
]]

local TRIGGER = [[
local usb = require("mpctl.usb")
local tty = assert(usb.tty_of("1-1"), "the Pico's tty")
require("mpctl.target").bootloader_via_repl(tty, function() end)
print("bootloader asked on " .. tty)
]]

test("two mpctl processes on one simulated bus both see a device arrive (their own uevent sockets)", function()
  S.need()
  local dir = fs.tmpdir()
  fs.write(dir .. "/watch.lua", WATCHER)
  fs.write(dir .. "/trigger.lua", TRIGGER)
  local exe = test.exe() or debug.getregistry()["mpctl.exe"]
  local cmd = table.concat({
    string.format("cd %q", dir),
    string.format("READY=a.ready NAME=A %q --allow-exec watch.lua > a.out 2>&1 &", exe),
    string.format("READY=b.ready NAME=B %q --allow-exec watch.lua > b.out 2>&1 &", exe),
    "n=0; while [ ! -e a.ready ] || [ ! -e b.ready ]; do n=$((n+1)); [ $n -gt 200 ] && break; sleep 0.05; done",
    "ls $UMOCKDEV_DIR | grep -c '^event' | sed 's/^/uevent sockets: /'",
    string.format("%q --allow-exec trigger.lua", exe),
    "wait; cat a.out b.out",
  }, "\n")
  local out, code = S.run_sim("pico", { "start=app" }, cmd, 90)
  fs.remove(dir, { recursive = true })
  test.eq(code, 0, out)
  test.contains(out, "uevent sockets: 2", "one uevent socket per watcher")
  test.contains(out, "bootloader asked on /dev/ttyACM")
  test.contains(out, "A saw usb:1-1 arrive", "watcher A heard the hotplug event")
  test.contains(out, "B saw usb:1-1 arrive", "watcher B heard the hotplug event")
end, { timeout = 120 })
