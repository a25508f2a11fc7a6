#!/usr/bin/env node
/**
 * Replay benchmark: reading a capture file into FrameBatches (readCaptureFiles), with and
 * without decoding every frame, against `tcpdump -r FILE -w /dev/null` on the same file in the
 * same run. The file: the fixture capture's frames repeated to --frames (default 500000), as
 * pcap and as pcapng (written by journey's writer).
 *   node scripts/bench/capture-replay.mjs [--frames 500000] [--json]
 * Needs a built tree and tcpdump. No root.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const { readCaptureFiles, createPcapngWriter } = await import(join(root, 'dist/src/capture/index.js'));
const { PacketView, decodeFrame } = await import(join(root, 'dist/src/decode/index.js'));
const args = process.argv.slice(2);
const FRAMES = Number(args[args.indexOf('--frames') + 1] || 500000);
const dir = mkdtempSync(join(tmpdir(), 'journey-replay-bench-'));

try {
  // build the files
  const src = [];
  for await (const b of readCaptureFiles([join(root, 'test/fixtures/pcap/c1b-eth.pcap')]))
    for (let i = 0; i < b.count; i++) src.push(Buffer.from(b.data.subarray(b.offsets[i], b.offsets[i] + b.lengths[i])));
  const parts = [];
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(1, 20);
  parts.push(h);
  const t0 = 1_700_000_000_000_000;
  const ng = createPcapngWriter(join(dir, 'big.pcapng'));
  for (let i = 0; i < FRAMES; i++) {
    const f = src[i % src.length];
    const r = Buffer.alloc(16);
    const t = t0 + i * 10;
    r.writeUInt32LE(Math.floor(t / 1e6), 0);
    r.writeUInt32LE(t % 1e6, 4);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    parts.push(r, f);
    ng.writeFrame('eth0', 1, f, f.length, t);
    if (i % 10000 === 9999) await ng.drain();
  }
  writeFileSync(join(dir, 'big.pcap'), Buffer.concat(parts));
  await ng.close();

  const res = { frames: FRAMES, files: {} };
  // warm up the JIT on both formats before timing anything
  for (const name of ['big.pcap', 'big.pcapng']) for await (const b of readCaptureFiles([join(dir, name)])) void b;
  for (const name of ['big.pcap', 'big.pcapng']) {
    const file = join(dir, name);
    let t = process.hrtime.bigint();
    execFileSync('tcpdump', ['-r', file, '-w', '/dev/null'], { stdio: 'ignore' });
    const tcpdumpS = Number(process.hrtime.bigint() - t) / 1e9;
    t = process.hrtime.bigint();
    let n = 0;
    for await (const b of readCaptureFiles([file])) n += b.count;
    const readS = Number(process.hrtime.bigint() - t) / 1e9;
    const v = new PacketView();
    t = process.hrtime.bigint();
    let d = 0;
    for await (const b of readCaptureFiles([file])) for (let i = 0; i < b.count; i++) if (decodeFrame(b, i, v)) d++;
    const decodeS = Number(process.hrtime.bigint() - t) / 1e9;
    if (n !== FRAMES) throw new Error(`${name}: read ${n} of ${FRAMES} frames`);
    res.files[name] = {
      bytes: statSync(file).size,
      tcpdumpKpps: Math.round(FRAMES / tcpdumpS / 1000),
      readKpps: Math.round(FRAMES / readS / 1000),
      readDecodeKpps: Math.round(FRAMES / decodeS / 1000),
      readRatioToTcpdump: +(tcpdumpS / readS).toFixed(2),
      decoded: d,
    };
  }
  if (args.includes('--json')) console.log(JSON.stringify(res));
  else {
    console.log(`replay benchmark: ${FRAMES} frames (fixture mix, 60-1514 bytes)`);
    for (const [f, r] of Object.entries(res.files)) {
      console.log(
        `  ${f.padEnd(11)} tcpdump -r -w /dev/null ${r.tcpdumpKpps} kpps | readCaptureFiles ${r.readKpps} kpps (ratio ${r.readRatioToTcpdump}) | + decodeFrame ${r.readDecodeKpps} kpps`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
