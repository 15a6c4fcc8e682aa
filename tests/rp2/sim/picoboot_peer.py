#!/usr/bin/python3
"""An independent PICOBOOT client (pyusb), written from pico-sdk's
src/common/boot_picoboot_headers/include/boot/picoboot.h alone, to check mpctl's simulated
Pico (mpctl sim pico / pico2). It shares nothing with mpctl: not its Lua client (lua/mpctl/rp2),
not its simulator (lua/mpctl/sim).

Facts used (picoboot.h): the PICOBOOT interface is the vendor-class (0xFF) interface with one bulk
OUT and one bulk IN endpoint; a command is the 32-byte little-endian struct picoboot_cmd
(dMagic 0x431fd10b, dToken, bCmdId with bit 7 = data IN, bCmdSize, u16 unused, dTransferLength,
args[16]) sent to OUT; dTransferLength bytes follow on IN or OUT; on success the device sends a
zero-length ACK in the opposite direction; on error it stalls. Control requests to the interface:
PICOBOOT_IF_RESET 0x41 (vendor OUT, no data) and PICOBOOT_IF_CMD_STATUS 0x42 (vendor IN,
16 bytes: dToken, dStatusCode, bCmdId, bInProgress). Ids: EXCLUSIVE_ACCESS 0x01, REBOOT 0x02,
FLASH_ERASE 0x03, READ 0x84, WRITE 0x05, EXIT_XIP 0x06, REBOOT2 0x0a, GET_INFO 0x8b. Status: OK 0,
UNKNOWN_CMD 1, INVALID_ADDRESS 4, BAD_ALIGNMENT 5.

usage: picoboot_peer.py flash IMAGE ADDR        full session: reset, exclusive, exit XIP, erase,
                                                write, read back, a bad command + status, reset,
                                                bad-address read + status, reboot
(bootable test images: uf2_peer.py make-image)
Prints one "ok: ..." line per check; exit status 0 only when every check passed.
"""
import errno
import struct
import sys

MAGIC = 0x431FD10B
VID = 0x2E8A
BOOTSEL_PIDS = (0x0003, 0x000F)


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok: " + what, flush=True)


class Picoboot:
    def __init__(self):
        import usb.core
        import usb.util
        self.usb = usb
        self.dev = None
        for pid in BOOTSEL_PIDS:
            self.dev = usb.core.find(idVendor=VID, idProduct=pid)
            if self.dev is not None:
                break
        if self.dev is None:
            raise Fail("no BOOTSEL device 2e8a:0003 or 2e8a:000f found")
        self.pid = self.dev.idProduct
        cfg = self.dev.get_active_configuration() if self._configured() else None
        if cfg is None:
            self.dev.set_configuration()
            cfg = self.dev.get_active_configuration()
        intf = usb.util.find_descriptor(cfg, bInterfaceClass=0xFF)
        if intf is None:
            raise Fail("no vendor-class (PICOBOOT) interface")
        self.iface = intf.bInterfaceNumber
        self.ep_out = usb.util.find_descriptor(intf, custom_match=lambda e: usb.util.endpoint_direction(
            e.bEndpointAddress) == usb.util.ENDPOINT_OUT and usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK)
        self.ep_in = usb.util.find_descriptor(intf, custom_match=lambda e: usb.util.endpoint_direction(
            e.bEndpointAddress) == usb.util.ENDPOINT_IN and usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK)
        if self.ep_out is None or self.ep_in is None:
            raise Fail("the PICOBOOT interface lacks a bulk OUT or IN endpoint")
        usb.util.claim_interface(self.dev, self.iface)
        self.token = 1

    def _configured(self):
        try:
            self.dev.get_active_configuration()
            return True
        except Exception:
            return False

    def reset(self):
        # bmRequestType 0x41: vendor, host-to-device, recipient interface
        self.dev.ctrl_transfer(0x41, 0x41, 0, self.iface, None, 1000)

    def status(self):
        data = bytes(self.dev.ctrl_transfer(0xC1, 0x42, 0, self.iface, 16, 1000))
        token, code, cmd, busy = struct.unpack("<IIBB", data[:10])
        return {"token": token, "code": code, "cmd": cmd, "in_progress": busy}

    def command(self, cmd_id, args=b"", transfer=0, data=None):
        """Sends one command; returns the IN data (or b""); raises usb.core.USBError on a stall."""
        token = self.token
        self.token += 1
        pkt = struct.pack("<IIBBHI", MAGIC, token, cmd_id, len(args), 0, transfer) + args.ljust(16, b"\0")
        assert len(pkt) == 32
        self.ep_out.write(pkt, 3000)
        got = b""
        if cmd_id & 0x80:
            if transfer:
                got = bytes(self.ep_in.read(transfer, 10000))
            self.ep_out.write(b"", 10000)  # ACK goes the other way: OUT
        else:
            if transfer:
                self.ep_out.write(data, 10000)
            self.ep_in.read(1, 10000)  # the zero-length ACK on IN
        return got, token

    def exclusive(self, kind):
        return self.command(0x01, struct.pack("<B", kind))

    def exit_xip(self):
        return self.command(0x06)

    def erase(self, addr, size):
        return self.command(0x03, struct.pack("<II", addr, size))

    def write(self, addr, data):
        return self.command(0x05, struct.pack("<II", addr, len(data)), len(data), data)

    def read(self, addr, size):
        return self.command(0x84, struct.pack("<II", addr, size), size)[0]

    def reboot(self):
        if self.pid == 0x0003:
            return self.command(0x02, struct.pack("<III", 0, 0x20042000, 100))  # REBOOT: pc 0 = normal boot
        return self.command(0x0A, struct.pack("<IIII", 0, 100, 0, 0))  # REBOOT2: type NORMAL


def stalled(fn):
    import usb.core
    try:
        fn()
    except usb.core.USBError as e:
        return e.errno == errno.EPIPE or "Pipe" in str(e)
    return False


def flash_session(image_path, addr):
    with open(image_path, "rb") as f:
        image = f.read()
    pb = Picoboot()
    check(True, "found 2e8a:%04x, PICOBOOT interface %d, endpoints 0x%02x/0x%02x" % (
        pb.pid, pb.iface, pb.ep_out.bEndpointAddress, pb.ep_in.bEndpointAddress))
    pb.reset()
    st = pb.status()
    check(st["code"] == 0 and st["in_progress"] == 0, "after INTERFACE_RESET the status is OK, idle")
    pb.exclusive(1)
    pb.exit_xip()
    size = (len(image) + 4095) // 4096 * 4096
    pb.erase(addr, size)
    blank = pb.read(addr, 4096)
    check(blank == b"\xff" * 4096, "erased flash reads 0xFF")
    padded = image + b"\xff" * (size - len(image))
    for off in range(0, size, 4096):
        pb.write(addr + off, padded[off:off + 4096])
    back = b"".join(pb.read(addr + off, 4096) for off in range(0, size, 4096))
    check(back == padded, "read back equals what was written (%d bytes)" % len(image))
    # WRITE "does no erase" (picoboot.h): NOR programming only clears bits, so a second write over
    # a written page leaves old AND new (done in the sector after the image)
    spare = addr + size
    pb.erase(spare, 4096)
    pb.write(spare, b"\x3c" * 256)
    pb.write(spare, b"\xf0" * 256)
    check(pb.read(spare, 256) == b"\x30" * 256, "a WRITE over written flash leaves old AND new (0x3c & 0xf0)")
    # a bad command: unknown id 0x7f -> stall, then the status names it
    token = pb.token
    check(stalled(lambda: pb.command(0x7F)), "an unknown command (0x7f) stalls")
    st = pb.status()
    check(st["token"] == token and st["code"] == 1 and st["cmd"] == 0x7F,
          "GET_COMMAND_STATUS after it: token %d, UNKNOWN_CMD, id 0x7f (got %r)" % (token, st))
    check(stalled(lambda: pb.read(addr, 256)), "the endpoints stay stalled until INTERFACE_RESET")
    pb.reset()
    check(pb.read(addr, 256) == padded[:256], "after INTERFACE_RESET commands work again")
    token = pb.token
    check(stalled(lambda: pb.read(0x30000000, 256)), "READ of an address that is neither flash nor RAM stalls")
    st = pb.status()
    check(st["token"] == token and st["code"] == 4, "its status is INVALID_ADDRESS (got %r)" % (st,))
    pb.reset()
    token = pb.token
    if pb.pid == 0x000F:
        check(stalled(lambda: pb.erase(addr + 256, 4096)), "a misaligned FLASH_ERASE stalls (RP2350)")
        check(pb.status()["code"] == 5, "its status is BAD_ALIGNMENT")
        pb.reset()
    if pb.pid == 0x000F:
        # GET_INFO (0x8b, RP2350 only; picoboot.h struct picoboot_get_info_cmd: bType, bParam,
        # wParam, dParams[3]); the reply layout is the RP2350 datasheet's (bootrom chapter,
        # PICOBOOT GET_INFO / get_sys_info): word 0 = words that follow, then for
        # PICOBOOT_GET_INFO_SYS (1, picoboot_constants.h) the supported flags and per flag its
        # words; CPU_INFO 0x0004 (pico-sdk bootrom_constants.h) is one word, 0 = Arm
        got = pb.command(0x8B, struct.pack("<BBHIII", 1, 0, 0, 0x0004, 0, 0), 32)[0]
        words = struct.unpack("<8I", got)
        check(words[:3] == (2, 0x0004, 0), "GET_INFO SYS CPU_INFO: 2 words, flag 0x4, Arm (got %r)" % (words[:3],))
    pb.exclusive(1)
    pb.reboot()
    check(True, "REBOOT acked")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "flash":
        try:
            return flash_session(argv[2], int(argv[3], 0))
        except Fail as e:
            print("FAIL: " + str(e), flush=True)
            return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
