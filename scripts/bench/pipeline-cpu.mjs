#!/usr/bin/env node
/**
 * JavaScript CPU per packet on the main thread, decode + correlate, as the pipeline runs it
 * (pipeline/frame-intake.ts: decodeFrame into the reused view, then the correlator), against a
 * reference measured in the same run: a bare loop that reads the same header fields (ethertype,
 * addresses, ports, TCP flags, lengths) straight from the same frame buffers.
 *
 * The stream: `--flows` NATed TCP connections to a published port (conntrack entries present, as
 * the live pipeline has them), each packet seen on both legs and in both directions (uplink before
 * DNAT, bridge after DNAT, the reply on the bridge, the reply on the uplink), Ethernet frames in
 * batches per interface as the capture workers send them; a tick every 100 ms of packet time.
 * Allocation: bytes of new space per packet over a stretch without GC, and the GCs per million packets.
 *   node --expose-gc scripts/bench/pipeline-cpu.mjs [--flows 2000] [--seconds 3] [--rounds 3] [--json]
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof scripts/bench/pipeline-cpu.mjs ... ; node scripts/bench/profile-summary.mjs /tmp/prof/*.cpuprofile --run RUN.json --skip referencePass
 * Needs a built tree (npm run build). No root.
 */
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const { Correlator } = await import(join(root, 'dist/src/correlate/correlator.js'));
const { FragmentPorts, PacketView, SkipCounters } = await import(join(root, 'dist/src/decode/index.js'));
const { intakeBatch } = await import(join(root, 'dist/src/pipeline/frame-intake.js'));
const { parseConntrackLine } = await import(join(root, 'dist/src/conntrack/parse.js'));

const args = process.argv.slice(2);
const arg = (name, dflt) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
const FLOWS = arg('--flows', 2000);
const SECONDS = arg('--seconds', 3);
const ROUNDS = arg('--rounds', 3);
const JSON_OUT = args.includes('--json');
const BATCH = 256;

// --- the connections: client 10.x.y.z:sport -> 10.0.10.26:8000 (uplink), DNAT to 172.17.a.b:80 (bridge)
const ip = (s) => s.split('.').reduce((a, x) => a * 256 + Number(x), 0);
const conns = [];
for (let i = 0; i < FLOWS; i++) {
  const client = `10.${1 + ((i >> 16) & 255)}.${(i >> 8) & 255}.${i & 255 || 1}`;
  const sport = 1024 + (i % 60000);
  const cont = `172.17.${(i >> 8) & 255}.${i & 255 || 2}`;
  const line = `ipv4     2 tcp      6 431999 ESTABLISHED src=${client} dst=10.0.10.26 sport=${sport} dport=8000 src=${cont} dst=${client} sport=80 dport=${sport} [ASSURED] mark=0 zone=0 use=2 id=${1_000_000 + i}`;
  conns.push({ entry: parseConntrackLine(line, 'conntrack-tool').entry, client: ip(client), cont: ip(cont), sport });
}
const HOST = ip('10.0.10.26');

// --- frames: Ethernet + IPv4 + TCP (20-byte header), 54 bytes + payload
const FRAME = 14 + 20 + 20 + 6;
function writeFrame(d, o, src, dst, sp, dp, ipId, seq, flags) {
  d.fill(0, o, o + FRAME);
  d[o + 12] = 0x08; // IPv4
  const l3 = o + 14;
  d[l3] = 0x45;
  const total = FRAME - 14;
  d[l3 + 2] = total >> 8;
  d[l3 + 3] = total & 255;
  d[l3 + 4] = ipId >> 8;
  d[l3 + 5] = ipId & 255;
  d[l3 + 6] = 0x40;
  d[l3 + 8] = 64;
  d[l3 + 9] = 6;
  d[l3 + 10] = (ipId * 7) & 255; // stands in for the header checksum: differs packet to packet
  for (let k = 0; k < 4; k++) {
    d[l3 + 12 + k] = (src >>> (24 - 8 * k)) & 255;
    d[l3 + 16 + k] = (dst >>> (24 - 8 * k)) & 255;
  }
  const l4 = l3 + 20;
  d[l4] = sp >> 8;
  d[l4 + 1] = sp & 255;
  d[l4 + 2] = dp >> 8;
  d[l4 + 3] = dp & 255;
  d[l4 + 4] = (seq >>> 24) & 255;
  d[l4 + 5] = (seq >>> 16) & 255;
  d[l4 + 6] = (seq >>> 8) & 255;
  d[l4 + 7] = seq & 255;
  d[l4 + 12] = 0x50;
  d[l4 + 13] = flags;
}

/** One interface's batches: `perFlow` packets of each connection, in the order a capture sees them. */
function makeBatches(iface, legs, perFlow, t0Us, usPerPacket) {
  const frames = FLOWS * perFlow * legs.length;
  const batches = [];
  let n = 0;
  let cur = null;
  for (let r = 0; r < perFlow; r++)
    for (let i = 0; i < FLOWS; i++)
      for (const leg of legs) {
        if (cur === null || cur.count === BATCH) {
          const size = Math.min(BATCH, frames - n);
          cur = {
            iface,
            linkType: 1,
            data: new Uint8Array(size * FRAME),
            offsets: new Uint32Array(size),
            lengths: new Uint32Array(size),
            wireLengths: new Uint32Array(size),
            timesUs: new Float64Array(size),
            count: 0,
          };
          batches.push(cur);
        }
        const c = conns[i];
        const [src, dst, sp, dp] = leg(c);
        const k = cur.count++;
        cur.offsets[k] = k * FRAME;
        cur.lengths[k] = cur.wireLengths[k] = FRAME;
        cur.timesUs[k] = t0Us + (r * FLOWS + i) * usPerPacket;
        writeFrame(cur.data, k * FRAME, src, dst, sp, dp, (r * 31 + i) & 0xffff, r * 1000 + i, 0x10);
        n++;
      }
  return batches;
}

const T0_MS = 1_700_000_000_000;
const PER_FLOW = Math.max(2, Math.ceil(20_000 / FLOWS));
const US_PER_PACKET = 2; // 500 kpps of packet time per interface pair: a tick every 100 ms of it
// the uplink sees the request before DNAT and the reply after de-DNAT; the bridge the other two
const uplink = makeBatches(
  'eth0',
  [(c) => [c.client, HOST, c.sport, 8000], (c) => [HOST, c.client, 8000, c.sport]],
  PER_FLOW,
  T0_MS * 1000,
  US_PER_PACKET,
);
const bridge = makeBatches(
  'docker0',
  [(c) => [c.client, c.cont, c.sport, 80], (c) => [c.cont, c.client, 80, c.sport]],
  PER_FLOW,
  T0_MS * 1000 + 1,
  US_PER_PACKET,
);
// interleave the interfaces batch by batch, as the capture workers' batches arrive
const stream = [];
for (let k = 0; k < Math.max(uplink.length, bridge.length); k++) {
  if (uplink[k]) stream.push(uplink[k]);
  if (bridge[k]) stream.push(bridge[k]);
}
const PACKETS = stream.reduce((a, b) => a + b.count, 0);
const SPAN_US = PER_FLOW * FLOWS * US_PER_PACKET;

// --- journey: the pipeline's intake into a correlator that holds every connection's entry
let emitted = 0;
const correlator = new Correlator({ emit: () => emitted++, maxFlows: FLOWS + 10, startDelayMs: 0, idleTimeoutMs: 3_600_000 });
correlator.onConntrack(conns.map((c) => ({ type: 'new', time: T0_MS, entry: c.entry })));
const state = { view: new PacketView(), skips: new SkipCounters(), fragments: new FragmentPorts() };
const tally = { delivered: 0, undecodable: 0, nonIp: 0 };
let pass = 0;
/** One pass over the stream; packet times move on each pass, so the flows stay live and ticks run. */
function journeyPass() {
  const shift = pass++ * SPAN_US;
  for (const b of stream) {
    if (shift !== 0) for (let k = 0; k < b.count; k++) b.timesUs[k] += SPAN_US;
    intakeBatch(b, state, correlator, tally);
    const ms = b.timesUs[b.count - 1] / 1000;
    if (ms - lastTick >= 100) {
      correlator.tick(ms);
      lastTick = ms;
    }
  }
}
let lastTick = T0_MS;

// --- the reference: the same fields read from the same bytes
let sink = 0;
function referencePass() {
  for (const b of stream) {
    const d = b.data;
    for (let k = 0; k < b.count; k++) {
      const o = b.offsets[k];
      if (((d[o + 12] << 8) | d[o + 13]) !== 0x0800) continue;
      const l3 = o + 14;
      const ihl = (d[l3] & 15) * 4;
      const src = ((d[l3 + 12] << 24) | (d[l3 + 13] << 16) | (d[l3 + 14] << 8) | d[l3 + 15]) >>> 0;
      const dst = ((d[l3 + 16] << 24) | (d[l3 + 17] << 16) | (d[l3 + 18] << 8) | d[l3 + 19]) >>> 0;
      const l4 = l3 + ihl;
      const ports = ((d[l4] << 24) | (d[l4 + 1] << 16) | (d[l4 + 2] << 8) | d[l4 + 3]) >>> 0;
      sink = (sink + (src ^ dst ^ ports ^ d[l3 + 9] ^ d[l4 + 13] ^ b.wireLengths[k] ^ b.timesUs[k])) | 0;
    }
  }
}

function timeIt(fn) {
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round((SECONDS / ROUNDS) * 1e9));
  let passes = 0;
  let now = t0;
  while (now < end) {
    fn();
    passes++;
    now = process.hrtime.bigint();
  }
  return Number(now - t0) / 1000 / (passes * PACKETS);
}

// warm up both (this also creates every flow and its four legs)
journeyPass();
journeyPass();
referencePass();
const flowsLive = correlator.liveFlows;
let gcs = 0;
new PerformanceObserver((l) => {
  gcs += l.getEntries().length;
}).observe({ entryTypes: ['gc'] });

/** Bytes of new space one packet of known flows allocates: the least over stretches of 20 batches without a GC. */
function bytesPerPacket() {
  const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_used_size;
  let best = Number.NaN;
  for (let attempt = 0; attempt < 10; attempt++) {
    if (typeof global.gc === 'function') global.gc({ type: 'minor' });
    const tl = { delivered: 0, undecodable: 0, nonIp: 0 };
    const before = newSpace();
    for (let j = 0; j < 20; j++) {
      const b = stream[(attempt * 20 + j) % stream.length];
      for (let k = 0; k < b.count; k++) b.timesUs[k] += SPAN_US; // the next pass of these packets
      intakeBatch(b, state, correlator, tl);
    }
    const grew = newSpace() - before;
    if (grew >= 0 && !(grew / tl.delivered >= best)) best = grew / tl.delivered; // else a scavenge ran in between
  }
  return best;
}

const jr = [];
const rr = [];
for (let r = 0; r < ROUNDS; r++) {
  rr.push(timeIt(referencePass));
  await new Promise((res) => setTimeout(res, 20));
  const g0 = gcs;
  const p0 = tally.delivered;
  const us = timeIt(journeyPass);
  await new Promise((res) => setTimeout(res, 20)); // GC entries are delivered asynchronously
  jr.push({ us, gcPerM: ((gcs - g0) / (tally.delivered - p0)) * 1e6 });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const jUs = median(jr.map((x) => x.us));
const rUs = median(rr);
const r = {
  flows: FLOWS,
  flowsLive,
  packetsPerPass: PACKETS,
  journeyUsPerPacket: +jUs.toFixed(3),
  referenceUsPerPacket: +rUs.toFixed(4),
  ratio: +(jUs / rUs).toFixed(1),
  bytesPerPacket: +bytesPerPacket().toFixed(1),
  gcPerMillionPackets: +median(jr.map((x) => x.gcPerM)).toFixed(1),
  rounds: jr.map((x) => +x.us.toFixed(3)),
  matched: correlator.stats().packetsMatched,
  profiledPackets: tally.delivered,
  held: correlator.stats().packetsHeld,
  loadavg: loadavg().map((x) => +x.toFixed(2)),
  sink: sink & 1,
};
if (JSON_OUT) console.log(JSON.stringify(r));
else {
  console.log(
    `decode + correlate: ${r.journeyUsPerPacket} µs/packet (median of ${ROUNDS} rounds: ${r.rounds.join(', ')}), ${r.flowsLive} live flows, 4 legs each`,
  );
  console.log(`reference (the same fields read from the same bytes): ${r.referenceUsPerPacket} µs/packet; ratio ${r.ratio}`);
  console.log(`allocation: ${r.bytesPerPacket} B/packet of known flows, ${r.gcPerMillionPackets} GCs per million packets`);
  console.log(`load average ${r.loadavg.join(' ')}`);
}
