#!/usr/bin/env node
/**
 * Decoder benchmark: journey's decodeFrame (reused view, no allocation) and observationFromView
 * (only for kept packets) against node-pcap's own decoder (pcap.decode.packet, objects per
 * packet) on the same frames, in the same run. Frames: the Ethernet fixture capture (ARP, ICMP,
 * fragments, IPv6 with extension headers, TCP, UDP, ICMP errors), repeated.
 *   node scripts/bench/capture-decode.mjs [--seconds 2] [--json]
 * Needs a built tree (npm run build). No root.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const require = createRequire(import.meta.url);
const { readCaptureFiles } = await import(join(root, 'dist/src/capture/index.js'));
const { PacketView, SkipCounters, decodeFrame, observationFromView } = await import(join(root, 'dist/src/decode/index.js'));
const pcapDecode = require(join(root, 'node_modules/pcap/decode')).decode.packet;

const args = process.argv.slice(2);
const SECONDS = Number(args[args.indexOf('--seconds') + 1] || 2);
const batches = [];
for await (const b of readCaptureFiles([join(root, 'test/fixtures/pcap/c1b-eth.pcap')])) batches.push(b);
const frames = batches.reduce((a, b) => a + b.count, 0);

function timeIt(fn) {
  // warm up, then run for SECONDS
  for (let i = 0; i < 2000; i++) fn();
  let n = 0;
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round(SECONDS * 1e9));
  let now = t0;
  while (now < end) {
    for (let i = 0; i < 200; i++) fn();
    n += 200;
    now = process.hrtime.bigint();
  }
  return Number(now - t0) / (n * frames);
}

const view = new PacketView();
const skips = new SkipCounters();
let sink = 0;
const ours = timeIt(() => {
  for (const b of batches) for (let i = 0; i < b.count; i++) if (decodeFrame(b, i, view, skips)) sink += view.sport;
});
const oursObs = timeIt(() => {
  for (const b of batches)
    for (let i = 0; i < b.count; i++) if (decodeFrame(b, i, view, skips)) sink += observationFromView(view, b.iface)?.tuple.sport ?? 0;
});
// node-pcap wants {buf, header, link_type}: build them once (its per-packet cost is what we time)
const pcapPackets = [];
for (const b of batches)
  for (let i = 0; i < b.count; i++) {
    const buf = Buffer.from(b.data.buffer, b.data.byteOffset + b.offsets[i], b.lengths[i]);
    const header = Buffer.alloc(16);
    header.writeUInt32LE(Math.floor(b.timesUs[i] / 1e6), 0);
    header.writeUInt32LE(b.timesUs[i] % 1e6, 4);
    header.writeUInt32LE(b.lengths[i], 8);
    header.writeUInt32LE(b.wireLengths[i], 12);
    pcapPackets.push({ buf, header, link_type: 'LINKTYPE_ETHERNET' });
  }
const theirs = timeIt(() => {
  for (const p of pcapPackets) sink += pcapDecode(p) ? 1 : 0;
});
const res = {
  frames,
  decodeFrameNsPerPkt: +ours.toFixed(1),
  decodePlusObservationNsPerPkt: +oursObs.toFixed(1),
  nodePcapDecodeNsPerPkt: +theirs.toFixed(1),
  speedupVsNodePcap: +(theirs / ours).toFixed(1),
};
if (args.includes('--json')) console.log(JSON.stringify(res));
else {
  console.log(`decoder benchmark: ${frames} mixed frames (fixture capture), ${SECONDS} s each`);
  console.log(`  journey decodeFrame (reused view)          ${res.decodeFrameNsPerPkt} ns/packet`);
  console.log(`  journey decodeFrame + observationFromView  ${res.decodePlusObservationNsPerPkt} ns/packet`);
  console.log(`  node-pcap decode.packet (reference)        ${res.nodePcapDecodeNsPerPkt} ns/packet`);
  console.log(`  ratio: node-pcap / journey decodeFrame = ${res.speedupVsNodePcap}x`);
}
if (sink === -1) console.log(sink);
