#!/usr/bin/python3
"""An independent UF2 writer and reader for the simulated Pico's tests, written from the UF2
specification alone (microsoft/uf2 README.md, "File format"): 512-byte blocks, little endian,
magicStart0 0x0A324655, magicStart1 0x9E5D5157, flags, targetAddr, payloadSize, blockNo,
numBlocks, fileSize or familyID, data[476], magicEnd 0x0AB16F30; flag 0x00002000 = familyID
present, 0x00000001 = not main flash. Family ids from pico-sdk boot/uf2.h: RP2040 0xe48bff56,
RP2350 ARM secure 0xe48bff59. It shares no code with mpctl (lua/mpctl/rp2/uf2.lua, the client's;
lua/mpctl/sim/rp2/uf2.lua, the simulator's).

usage:
  uf2_peer.py write OUT.uf2 BIN ADDR FAMILY [extra ...]   BIN as 256-byte blocks at ADDR, family FAMILY;
        extra: wrong-family=FAMILY@ADDR:N  N blocks of another family (own numbering), interleaved
               beyond=ADDR                 one more block of the file's numbering at ADDR (outside the chip)
               garbage-first=ADDR          one block with this file's family at ADDR ahead of all others
  uf2_peer.py read IN.uf2 FAMILY OUT.bin BASE SIZE      the image those blocks of FAMILY make (0xFF elsewhere)
  uf2_peer.py make-image OUT SIZE SEED [rp2040|rp2350]  a bootable test image: RP2040 boot2 with its
        CRC-32 (RP2040 datasheet 2.8.1.3.1: poly 0x04c11db7, init 0xffffffff, no reflection, no final
        XOR, over bytes 0..251, LE at 252); RP2350 an IMAGE_DEF block (RP2350 datasheet 5.9: start
        marker 0xffffded3, IMAGE_TYPE item 0x42, LAST item, end marker 0xab123579) at offset 0
"""
import random
import struct
import sys

M0, M1, MEND = 0x0A324655, 0x9E5D5157, 0x0AB16F30
F_FAMILY, F_NOT_MAIN = 0x2000, 0x1


def block(addr, no, count, family, data, flags=F_FAMILY):
    payload = data.ljust(256, b"\0")[:256]
    head = struct.pack("<IIIIIIII", M0, M1, flags, addr, 256, no, count, family)
    return head + payload.ljust(476, b"\0") + struct.pack("<I", MEND)


def crc32_mpeg2(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def make_image(out, size, seed, chip):
    rnd = random.Random(seed)
    body = bytearray(rnd.getrandbits(8) for _ in range(size))
    if chip == "rp2350":
        # start marker, IMAGE_TYPE (0x42, size 1 word, flags 0x1021: EXE, ARM, RP2350),
        # LAST item (0xff, size 1), link 0, end marker
        blk = struct.pack("<IBBHBHBI I", 0xFFFFDED3, 0x42, 1, 0x1021, 0xFF, 1, 0, 0, 0xAB123579)
        body[0:len(blk)] = blk
    else:
        body[252:256] = struct.pack("<I", crc32_mpeg2(bytes(body[:252])))
    with open(out, "wb") as f:
        f.write(bytes(body))


def write(out, bin_path, addr, family, extras):
    with open(bin_path, "rb") as f:
        data = f.read()
    pages = [data[i:i + 256] for i in range(0, len(data), 256)]
    main = [(addr + i * 256, p) for i, p in enumerate(pages)]
    beyond = [int(e.split("=")[1], 0) for e in extras if e.startswith("beyond=")]
    count = len(main) + len(beyond)
    blocks = [block(a, i, count, family, p) for i, (a, p) in enumerate(main)]
    blocks += [block(a, len(main) + i, count, family, b"\xAA" * 256) for i, a in enumerate(beyond)]
    for e in extras:
        if e.startswith("wrong-family="):
            fam, rest = e.split("=")[1].split("@")
            waddr, n = rest.split(":")
            fam, waddr, n = int(fam, 0), int(waddr, 0), int(n)
            wrong = [block(waddr + i * 256, i, n, fam, b"\x55" * 256) for i in range(n)]
            mixed = []
            for i, b in enumerate(blocks):  # interleave: one foreign block after every other own one
                mixed.append(b)
                if wrong and i % 2 == 0:
                    mixed.append(wrong.pop(0))
            blocks = mixed + wrong
        elif e.startswith("garbage-first="):
            blocks.insert(0, block(int(e.split("=")[1], 0), 0, count, family, b"\x77" * 256))
    with open(out, "wb") as f:
        f.write(b"".join(blocks))


def read(in_path, family, out, base, size):
    img = bytearray(b"\xff" * size)
    with open(in_path, "rb") as f:
        raw = f.read()
    if len(raw) % 512:
        raise SystemExit("not a whole number of 512-byte blocks")
    for off in range(0, len(raw), 512):
        b = raw[off:off + 512]
        m0, m1, flags, addr, psize, no, count, fam = struct.unpack("<IIIIIIII", b[:32])
        if m0 != M0 or m1 != M1 or struct.unpack("<I", b[508:512])[0] != MEND:
            raise SystemExit("block %d: bad magic" % (off // 512))
        if flags & F_NOT_MAIN or not flags & F_FAMILY or fam != family:
            continue
        if base <= addr and addr + psize <= base + size:
            img[addr - base:addr - base + psize] = b[32:32 + psize]
    with open(out, "wb") as f:
        f.write(bytes(img))


def main(argv):
    if len(argv) >= 6 and argv[1] == "write":
        write(argv[2], argv[3], int(argv[4], 0), int(argv[5], 0), argv[6:])
    elif len(argv) == 7 and argv[1] == "read":
        read(argv[2], int(argv[3], 0), argv[4], int(argv[5], 0), int(argv[6], 0))
    elif len(argv) >= 5 and argv[1] == "make-image":
        make_image(argv[2], int(argv[3], 0), int(argv[4]), argv[5] if len(argv) > 5 else "rp2040")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
