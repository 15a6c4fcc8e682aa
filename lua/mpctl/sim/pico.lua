--[[ mpctl.sim.pico: a simulated Raspberry Pi Pico (RP2040) on a simulated USB bus (umockdev).

    mpctl sim pico [k=v ...] -- COMMAND ...   runs COMMAND with the board plugged in; its exit status is ours
    mpctl sim pico [k=v ...]                  serves until Ctrl-C; prints the environment a client needs
    options: start=bootsel|app  timing=on|off  flash=FILE  drive=DIR  stats=FILE
             fault=disconnect|stall fault_at=N  serial=S  quiet=yes

The board starts in the boot ROM's BOOTSEL mode (mpctl.sim.usb.rp2_boot: mass storage + PICOBOOT);
after a reboot into a bootable flash image it is MicroPython's CDC port 2E8A:0005 with the real
MicroPython (WebAssembly) behind /dev/ttyACM0. The pieces: mpctl.sim.rp2.board; docs/simulators.md
"RP2 boards".
]]
return require("mpctl.sim.rp2.board").entry("pico", "rp2040")
