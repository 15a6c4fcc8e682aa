// A Web-Serial-like SerialPort over TCP, so esptool-js's own Transport and ESPLoader can talk to
// a board served by `mpctl sim esp32 --listen rfc2217://...` (or socket://) from Node.
//
// esptool-js drives a port through the Web Serial API shape: open(), readable/writable streams,
// setSignals({dataTerminalReady, requestToSend, break}), getInfo(), close(), plus the optional
// setBaudRate() capability it prefers over reopening the port (esptool-js webserial.js
// changeBaudrate). For rfc2217:// we speak the few RFC 2217 pieces that carry those: telnet
// option negotiation (COM-PORT-OPTION 44, BINARY 0, SGA 3), SET-BAUDRATE (1) and SET-CONTROL
// (5: DTR on 8 / off 9, RTS on 11 / off 12, BREAK on 5 / off 6), and IAC (0xFF) doubling in data.
// Facts from RFC 2217 / RFC 854; the code is ours.
import net from "node:net";

const IAC = 255, SB = 250, SE = 240, WILL = 251, WONT = 252, DO = 253, DONT = 254;
const OPT_BINARY = 0, OPT_SGA = 3, OPT_COMPORT = 44;
const SET_BAUDRATE = 1, SET_CONTROL = 5;
const CTL = { dtrOn: 8, dtrOff: 9, rtsOn: 11, rtsOff: 12, breakOn: 5, breakOff: 6 };

function parseUrl(url) {
  const m = /^(rfc2217|socket):\/\/([^:/]+):(\d+)/.exec(url);
  if (!m) throw new Error(`unsupported port ${url} (want rfc2217://HOST:PORT or socket://HOST:PORT)`);
  return { scheme: m[1], host: m[2], port: Number(m[3]) };
}

export class TcpSerialPort {
  constructor(url) {
    this.url = url;
    this.target = parseUrl(url);
    this.rfc = this.target.scheme === "rfc2217";
    this.readable = null;
    this.writable = null;
    this.sock = null;
    this.stats = { txBytes: 0, rxBytes: 0, signals: [], bauds: [] };
    this.t0 = Date.now();
  }

  // Web Serial reports the USB ids of the port; --usb-pid makes this one look like an
  // Espressif native USB port (303A:1001 USB-Serial/JTAG, 303A:0002 the ESP32-S2's ROM CDC).
  getInfo() { return this.usb ? { usbVendorId: this.usb.vid, usbProductId: this.usb.pid } : {}; }

  async open(options = {}) {
    const sock = net.connect(this.target.port, this.target.host);
    sock.setNoDelay(true);
    await new Promise((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    this.sock = sock;
    this.closed = false;
    let controller;
    this.readable = new ReadableStream({
      start: (c) => { controller = c; },
      cancel: () => {},
    });
    this.rx = { state: 0, sb: [] };
    sock.on("data", (buf) => {
      const data = this.rfc ? this.decodeTelnet(buf) : buf;
      if (data.length) {
        this.stats.rxBytes += data.length;
        try { controller.enqueue(new Uint8Array(data)); } catch { /* reader gone */ }
      }
    });
    sock.on("close", () => { try { controller.close(); } catch { /* already closed */ } });
    sock.on("error", () => {});
    this.writable = new WritableStream({
      write: (chunk) => this.send(chunk),
    });
    if (this.rfc) {
      this.raw([IAC, WILL, OPT_COMPORT]);
    }
    if (options.baudRate) await this.setBaudRate(options.baudRate);
  }

  raw(bytes) { this.sock.write(Buffer.from(bytes)); }

  send(chunk) {
    this.stats.txBytes += chunk.length;
    if (!this.rfc) return new Promise((r) => this.sock.write(Buffer.from(chunk), r));
    // IAC in data is doubled.
    const out = [];
    for (const b of chunk) { out.push(b); if (b === IAC) out.push(IAC); }
    return new Promise((r) => this.sock.write(Buffer.from(out), r));
  }

  subneg(cmd, value) {
    const body = [OPT_COMPORT, cmd];
    for (const b of value) { body.push(b); if (b === IAC) body.push(IAC); }
    this.raw([IAC, SB, ...body, IAC, SE]);
  }

  // Strip telnet commands from received bytes, answering option negotiation.
  decodeTelnet(buf) {
    const out = [];
    const rx = this.rx;
    for (const b of buf) {
      switch (rx.state) {
        case 0: if (b === IAC) rx.state = 1; else out.push(b); break;
        case 1:
          if (b === IAC) { out.push(IAC); rx.state = 0; }
          else if (b === SB) { rx.sb = []; rx.state = 3; }
          else if (b === WILL || b === WONT || b === DO || b === DONT) { rx.verb = b; rx.state = 2; }
          else rx.state = 0;
          break;
        case 2: this.negotiate(rx.verb, b); rx.state = 0; break;
        case 3: if (b === IAC) rx.state = 4; else rx.sb.push(b); break;
        case 4:
          if (b === SE) rx.state = 0;
          else { rx.sb.push(b); rx.state = 3; }
          break;
      }
    }
    return out;
  }

  negotiate(verb, opt) {
    const ours = opt === OPT_BINARY || opt === OPT_SGA || opt === OPT_COMPORT;
    this.opts = this.opts || new Set();
    const key = `${verb}:${opt}`;
    if (this.opts.has(key)) return;
    this.opts.add(key);
    if (verb === DO) this.raw([IAC, ours ? WILL : WONT, opt]);
    else if (verb === WILL) this.raw([IAC, ours ? DO : DONT, opt]);
  }

  async setSignals(sig = {}) {
    if (!this.rfc) return;
    const t = Date.now() - this.t0;
    if (sig.dataTerminalReady !== undefined) {
      this.subneg(SET_CONTROL, [sig.dataTerminalReady ? CTL.dtrOn : CTL.dtrOff]);
      this.stats.signals.push({ t, dtr: !!sig.dataTerminalReady });
    }
    if (sig.requestToSend !== undefined) {
      this.subneg(SET_CONTROL, [sig.requestToSend ? CTL.rtsOn : CTL.rtsOff]);
      this.stats.signals.push({ t, rts: !!sig.requestToSend });
    }
    if (sig.break !== undefined) this.subneg(SET_CONTROL, [sig.break ? CTL.breakOn : CTL.breakOff]);
  }

  async setBaudRate(baud) {
    this.stats.bauds.push({ t: Date.now() - this.t0, baud });
    if (!this.rfc) return;
    this.subneg(SET_BAUDRATE, [(baud >>> 24) & 255, (baud >>> 16) & 255, (baud >>> 8) & 255, baud & 255]);
  }

  async close() {
    if (this.sock && !this.closed) {
      this.closed = true;
      await new Promise((r) => this.sock.end(r));
      this.sock.destroy();
    }
    this.readable = null;
    this.writable = null;
  }
}
