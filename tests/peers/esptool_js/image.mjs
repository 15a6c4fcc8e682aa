// A firmware-like ESP application image for flashing tests: a valid header (magic 0xE9,
// segment count, DIO, 4 MB / 40 MHz, entry point), the 16-byte extended header with the chip id
// at bytes 12-13, segments with load addresses, the XOR checksum byte, and contents that deflate
// to about 0.65 of their size like MicroPython ESP32 builds (anchors.md §2.2: 0.64-0.67).
// Layout facts: esptool docs firmware-image-format.rst (anchors.md §3.1).

function rng(seed) {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 0x12345678;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
}

// Code-like bytes: instruction words drawn from a small vocabulary with random operands.
function fill(buf, next) {
  const vocab = [];
  for (let i = 0; i < 96; i++) vocab.push(next());
  for (let i = 0; i + 4 <= buf.length; i += 4) {
    const r = next();
    let w;
    if ((r & 0xff) < 64) w = next();                    // literal data: incompressible
    else w = (vocab[(r >>> 8) % vocab.length] ^ ((r >>> 24) & 0x0f)) >>> 0;
    buf[i] = w & 255; buf[i + 1] = (w >>> 8) & 255; buf[i + 2] = (w >>> 16) & 255; buf[i + 3] = w >>> 24;
  }
}

export function makeImage(size, seed = 1, chipId = 0) {
  const next = rng(seed);
  const img = new Uint8Array(size);
  const nseg = 4;
  const head = 24;
  let payload = size - head - nseg * 8 - 16;
  payload -= payload % 16;
  const segLens = [];
  let left = payload;
  for (let i = 0; i < nseg; i++) {
    let n = i === nseg - 1 ? left : Math.floor(payload * [0.08, 0.5, 0.12][i]);
    n -= n % 4;
    segLens.push(n);
    left -= n;
  }
  img[0] = 0xe9; img[1] = nseg; img[2] = 2; img[3] = 0x20;
  new DataView(img.buffer).setUint32(4, 0x400805b0, true);
  img[8] = 0xee;                                         // WP pin: not used
  new DataView(img.buffer).setUint16(12, chipId, true);  // chip id
  const addrs = [0x3f400020, 0x400d0020, 0x3ffb0000, 0x40080000];
  let pos = head;
  let chk = 0xef;
  for (let i = 0; i < nseg; i++) {
    const dv = new DataView(img.buffer, pos, 8);
    dv.setUint32(0, addrs[i], true);
    dv.setUint32(4, segLens[i], true);
    pos += 8;
    const seg = img.subarray(pos, pos + segLens[i]);
    fill(seg, next);
    for (const b of seg) chk ^= b;
    pos += segLens[i];
  }
  // Checksum byte closes the 16-byte aligned block after the segments; the rest stays 0xFF.
  const end = pos + 16 - (pos % 16);
  img[end - 1] = chk;
  img.fill(0xff, end);
  return img;
}
