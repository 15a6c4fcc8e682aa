// Flash an image with esptool-js (the peer) through our TCP SerialPort, then check it the way a
// user would: esptool-js verifies with SPI_FLASH_MD5 after writing (calculateMD5Hash), and we
// read the MD5 back once more. Prints one JSON line.
//
//   node tests/peers/esptool_js/flash.mjs --port rfc2217://127.0.0.1:PORT --image fw.bin
//        [--baud 460800] [--offset 0x1000] [--no-compress] [--no-stub] [--make-image SIZE]
//        [--seed N] [--read-back BYTES] [--erase-all] [--trace] [--usb-pid 0x1001]
//
// --make-image SIZE writes a firmware-like image (valid ESP32 header 0xE9, segments, about
// 0.65 deflate ratio, as MicroPython ESP32 images have, anchors.md §2.2) to --image first.
import fs from "node:fs";
import crypto from "node:crypto";
import { ESPLoader, Transport } from "esptool-js";
import { TcpSerialPort } from "./transport.mjs";
import { makeImage } from "./image.mjs";

function parseArgs(argv) {
  const a = { baud: 115200, offset: 0x1000, compress: true, stub: true, seed: 1, readBack: 0 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === "--port") a.port = v();
    else if (k === "--image") a.image = v();
    else if (k === "--baud") a.baud = Number(v());
    else if (k === "--offset") a.offset = Number(v());
    else if (k === "--no-compress") a.compress = false;
    else if (k === "--no-stub") a.stub = false;
    else if (k === "--make-image") a.makeImage = Number(v());
    else if (k === "--seed") a.seed = Number(v());
    else if (k === "--read-back") a.readBack = Number(v());
    else if (k === "--erase-all") a.eraseAll = true;
    else if (k === "--trace") a.trace = true;
    else if (k === "--chip-id") a.chipId = Number(v());
    else if (k === "--usb-pid") a.usbPid = Number(v());
    else throw new Error(`unknown argument ${k}`);
  }
  if (!a.port || !a.image) throw new Error("need --port URL and --image FILE");
  return a;
}

// esptool-js's Transport prints trace lines with console.log even with tracing off: keep stdout
// for the one JSON result line.
console.log = (...a) => process.stderr.write(a.join(" ") + "\n");

const md5hex = (buf) => crypto.createHash("md5").update(buf).digest("hex");

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.makeImage) {
    fs.writeFileSync(args.image, makeImage(args.makeImage, args.seed, args.chipId ?? 0));
  }
  const image = new Uint8Array(fs.readFileSync(args.image));
  const log = [];
  const terminal = {
    clean() {},
    writeLine(s) { log.push(s); if (args.trace) process.stderr.write(s + "\n"); },
    write(s) { log.push(s); if (args.trace) process.stderr.write(s); },
  };
  const port = new TcpSerialPort(args.port);
  if (args.usbPid !== undefined) port.usb = { vid: 0x303a, pid: args.usbPid };
  const transport = new Transport(port, false);
  const loader = new ESPLoader({ transport, baudrate: args.baud, terminal, debugLogging: !!args.trace });
  const t0 = performance.now();
  const result = { ok: false, port: args.port, baud: args.baud, image_bytes: image.length, offset: args.offset };
  try {
    if (!args.stub) {
      // esptool-js has no --no-stub switch: skip runStub by pretending a stub is not available.
      // The ROM takes 1 KiB flash blocks (esptool FLASH_WRITE_SIZE 0x400); esptool-js keeps
      // its 16 KiB stub size unless told.
      loader.runStub = async function () { this.FLASH_WRITE_SIZE = 0x400; return this.chip; };
    }
    const chip = await loader.main();
    if (!args.stub) {
      // esptool attaches the SPI flash before using it from the ROM (SPI_ATTACH 0x0D with the
      // ROM's extra 4 zero bytes, anchors.md §3.1); esptool-js's main() relies on the stub.
      await loader.checkCommand("attach SPI flash", 0x0d, new Uint8Array(8));
    }
    result.chip = chip;
    result.connect_s = (performance.now() - t0) / 1000;
    result.baud_used = transport.baudrate;
    const txBefore = port.stats.txBytes;
    const t1 = performance.now();
    await loader.writeFlash({
      fileArray: [{ data: image, address: args.offset }],
      flashMode: "keep", flashFreq: "keep", flashSize: "keep",
      eraseAll: !!args.eraseAll, compress: args.compress,
      // In ROM mode esptool-js hex-encodes the ROM's 32 ASCII hex digits once more and its
      // own comparison fails; we compare ourselves below instead.
      calculateMD5Hash: args.stub ? (img) => md5hex(img) : undefined,
    });
    result.write_s = (performance.now() - t1) / 1000;
    result.write_wire_bytes = port.stats.txBytes - txBefore;
    let md5 = await loader.flashMd5sum(args.offset, image.length);
    if (!loader.IS_STUB && md5.length === 64) md5 = Buffer.from(md5, "hex").toString("latin1");
    result.image_md5 = md5hex(image);
    result.flash_md5 = md5;
    if (args.readBack > 0) {
      const n = Math.min(args.readBack, image.length);
      const t2 = performance.now();
      const back = await loader.readFlash(args.offset, n);
      result.read_s = (performance.now() - t2) / 1000;
      result.read_back_ok = md5hex(back.slice(0, n)) === md5hex(image.slice(0, n));
    }
    await loader.after("hard_reset");
    result.ok = result.flash_md5 === result.image_md5 && (args.readBack === 0 || result.read_back_ok);
  } catch (e) {
    result.error = String(e && e.message ? e.message : e);
  }
  result.wall_s = (performance.now() - t0) / 1000;
  result.wire_tx_bytes = port.stats.txBytes;
  result.wire_rx_bytes = port.stats.rxBytes;
  result.signals = port.stats.signals.length;
  result.log_tail = log.slice(-6);
  try { await transport.disconnect(); } catch { /* already gone */ }
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e) }) + "\n");
  process.exit(2);
});
