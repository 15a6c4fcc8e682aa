// The independent side of tests/rp2/uf2_test.lua: the npm `uf2` package (wokwi/uf2, MIT; not
// mpctl's code) decodes and encodes UF2 blocks.
//   node uf2_peer.js decode FILE.uf2 OUT.bin   -> JSON {blocks:[{flags,addr,size,no,total,family}]} on stdout,
//                                                 the payloads in file order concatenated into OUT.bin
//   node uf2_peer.js encode IN.bin ADDR FAMILY PAYLOAD OUT.uf2   -> one block per PAYLOAD bytes of IN.bin
const fs = require('fs');
const path = require('path');
const uf2 = require(path.resolve(process.env.MPCTL_NODE_MODULES || 'node_modules', 'uf2'));

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'decode') {
  const data = fs.readFileSync(args[0]);
  const blocks = [];
  const payloads = [];
  for (let off = 0; off < data.length; off += uf2.blockSize) {
    const b = uf2.decodeBlock(new Uint8Array(data.subarray(off, off + uf2.blockSize)));
    blocks.push({ flags: b.flags, addr: b.flashAddress, size: b.payload.length, no: b.blockNumber,
      total: b.totalBlocks, family: b.boardFamily, family_name: uf2.familyMap.get(b.boardFamily) || null });
    payloads.push(Buffer.from(b.payload));
  }
  fs.writeFileSync(args[1], Buffer.concat(payloads));
  process.stdout.write(JSON.stringify({ blocks }) + '\n');
} else if (cmd === 'encode') {
  const data = fs.readFileSync(args[0]);
  const addr = Number(args[1]), family = Number(args[2]), payload = Number(args[3]);
  const total = Math.ceil(data.length / payload);
  const out = new Uint8Array(total * uf2.blockSize);
  for (let i = 0; i < total; i++) {
    uf2.encodeBlock({ flags: uf2.UF2Flags.familyIDPresent, flashAddress: addr + i * payload,
      payload: new Uint8Array(data.subarray(i * payload, (i + 1) * payload)), blockNumber: i, totalBlocks: total,
      boardFamily: family }, out, i * uf2.blockSize);
  }
  fs.writeFileSync(args[4], out);
} else {
  process.stderr.write('usage: uf2_peer.js decode|encode ...\n');
  process.exit(2);
}
