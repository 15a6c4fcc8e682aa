-- The simulated Pico's PICOBOOT interface checked by an independent client: tests/rp2/sim/
-- picoboot_peer.py (pyusb, Debian's python3-usb, written from pico-sdk's boot/picoboot.h only)
-- runs under `mpctl sim pico|pico2`, through Debian's libusb and umockdev: claim, exclusive access,
-- exit XIP, erase, write, read back, a bad command's STALL and GET_COMMAND_STATUS, interface reset,
-- reboot. Afterwards the simulator's flash file must hold the image and MicroPython's CDC port must
-- be on the bus. The images come from the peer's own tools (tests/rp2/sim/uf2_peer.py make-image).
local test = require("mpctl.test")
local ui = require("mpctl.ui")
local S = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "support.lua")

local function session(sim, chip, size, seed, extra)
  local p, cleanup = S.tmp()
  local img = p("fw.bin")
  local cmd = table.concat({
    S.py(S.UF2_PEER, "make-image", img, size, seed, chip) .. " || exit 5",
    S.py(S.PICOBOOT_PEER, "flash", img, "0x10000000") .. "; rc=$?",
    "if [ $rc -eq 0 ]; then " .. S.WAIT_CDC .. "; fi", "exit $rc" }, "\n")
  local args = { "flash=" .. p("flash.bin"), "stats=" .. p("stats.json") }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local out, code = S.run_sim(sim, args, cmd, 120)
  return out, code, S.read(img), S.read(p("flash.bin")), S.read(p("stats.json")), cleanup
end

for _, c in ipairs({ { "pico", "rp2040", 2 * 1024 * 1024, "2e8a:0003" }, { "pico2", "rp2350", 4 * 1024 * 1024, "2e8a:000f" } }) do
  local sim, chip, flash_size, ids = c[1], c[2], c[3], c[4]
  test("an independent pyusb PICOBOOT client flashes sim " .. sim .. ", reads back, gets STALL + status, reboots into MicroPython", function()
    S.need("pyusb")
    local out, code, img, flash, stats, cleanup = session(sim, chip, 70 * 1024 + 100, 21)
    test.eq(code, 0, "peer exit code; output: " .. out:sub(-1500))
    test.contains(out, "ok: found " .. ids, "the peer found the BOOTSEL device")
    test.contains(out, "ok: read back equals what was written", "read back")
    test.contains(out, "ok: GET_COMMAND_STATUS after it", "command status after a STALL")
    test.contains(out, "ok: after INTERFACE_RESET commands work again", "interface reset")
    test.contains(out, "ok: its status is INVALID_ADDRESS", "bad address")
    if sim == "pico2" then
      test.contains(out, "ok: its status is BAD_ALIGNMENT", "RP2350 misaligned erase")
      test.contains(out, "ok: GET_INFO SYS CPU_INFO", "RP2350 GET_INFO")
    end
    test.ok(out:find("/dev/ttyACM0\n", 1, true), "the CDC port appeared: " .. out:sub(-400))
    test.contains(out, "ID 2e8a:0005 MicroPython Board in FS mode", "lsusb shows MicroPython's port")
    test.eq(#flash, flash_size, "flash file size")
    test.ok(flash:sub(1, #img) == img, "the simulator's flash holds the image")
    local pad = (4096 - #img % 4096) % 4096
    test.eq(flash:sub(#img + 1, #img + pad), string.rep("\255", pad), "the rest of the last sector is erased")
    test.contains(out, "ok: a WRITE over written flash leaves old AND new", "NOR AND")
    test.eq(flash:sub(#img + pad + 1, #img + pad + 256), string.rep("\48", 256), "the AND'ed page in the flash file")
    local st = ui.json_decode(stats)
    test.eq(st.sectors_erased, (#img + pad) // 4096 + 1, "sectors erased (stats): the image's and the spare one")
    test.eq(st.bytes_programmed, #img + pad + 512, "bytes programmed (stats): the image and two spare pages")
    test.ok(st.by_command.READ and st.by_command.READ > 0 and st.commands > 10, "commands counted: " .. stats)
    cleanup()
  end)
end

test("an image the RP2040 ROM would not boot (boot2 CRC wrong): after REBOOT the board is back in BOOTSEL", function()
  S.need("pyusb")
  local p, cleanup = S.tmp()
  S.write(p("junk.bin"), test.random_bytes(8192, 33))
  local cmd = table.concat({
    S.py(S.PICOBOOT_PEER, "flash", p("junk.bin"), "0x10000000") .. " || exit 3",
    -- the board leaves and comes back: wait (bounded) until the BOOTSEL device is listed again
    "sleep 0.5; i=0; while ! lsusb -d 2e8a:0003 >/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done",
    "lsusb; ls /dev/ttyACM0 2>&1; true" }, "\n")
  local out, code = S.run_sim("pico", {}, cmd, 120)
  test.eq(code, 0, "exit code; output: " .. out:sub(-800))
  test.contains(out, "ID 2e8a:0003 Raspberry Pi RP2 Boot", "BOOTSEL again")
  test.ok(not out:find("2e8a:0005", 1, true), "no MicroPython port")
  test.contains(out, "ls: cannot access '/dev/ttyACM0'", "no tty")
  cleanup()
end)

-- faults at the Nth flash erase/write command: what the peer must see
for _, f in ipairs({ { "stall", 3, "Pipe error", "the STALL" }, { "disconnect", 2, "No such device", "the lost device" } }) do
  test("fault=" .. f[1] .. " at flash command " .. f[2] .. ": the peer sees " .. f[4] .. " and fails", function()
    S.need("pyusb")
    local out, code, _, _, _, cleanup = session("pico", "rp2040", 64 * 1024, 5, { "fault=" .. f[1], "fault_at=" .. f[2] })
    test.ne(code, 0, "peer exit code; output: " .. out:sub(-600))
    test.contains(out, f[3], f[4] .. " reached the peer")
    cleanup()
  end)
end
