#!/usr/bin/env node
/**
 * Memory per 100,000 live flows in journey's correlator (flows with four legs each, names, NAT),
 * against references measured in the same run:
 *   - the same connections as `conntrack -L -o extended` text (bytes per line),
 *   - the same connections parsed into ConntrackEntry objects held in a Map (the bare table),
 *   - the kernel's own conntrack object size (/proc/slabinfo, when readable).
 *   node --expose-gc scripts/bench/watch-memory.mjs [--flows 100000] [--json]
 * Needs a built tree (npm run build). No root.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const { Correlator } = await import(join(root, 'dist/src/correlate/correlator.js'));
const { parseConntrackLine } = await import(join(root, 'dist/src/conntrack/parse.js'));

const args = process.argv.slice(2);
const N = Number(args.includes('--flows') ? args[args.indexOf('--flows') + 1] : 100_000);
const JSON_OUT = args.includes('--json');
if (typeof global.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}
// V8's heap and the ArrayBuffers beside it (the correlator keeps its legs in typed arrays, whose
// memory is not in heapUsed)
const heap = () => {
  global.gc();
  global.gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

function line(i) {
  const a = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const sport = 1024 + (i % 60000);
  const c = `172.17.${(i >> 8) & 255}.${i & 255 || 1}`;
  return `ipv4     2 tcp      6 431999 ESTABLISHED src=${a} dst=10.0.10.26 sport=${sport} dport=8000 src=${c} dst=${a} sport=80 dport=${sport} [ASSURED] mark=0 zone=0 use=2 id=${1_000_000 + i}`;
}

// reference 1: text
let textBytes = 0;
for (let i = 0; i < N; i++) textBytes += line(i).length + 1;

// reference 2: parsed entries in a Map
let base = heap();
const table = new Map();
for (let i = 0; i < N; i++) {
  const e = parseConntrackLine(line(i), 'conntrack-tool').entry;
  table.set(e.id, e);
}
const tableBytes = heap() - base;
const entries = [...table.values()];
table.clear();

// journey: the correlator with N live flows, 4 legs each
base = heap();
let emitted = 0;
// as the pipeline does: one name object per address, shared by its flows
const nameCache = new Map();
const names = (addr) => {
  if (!nameCache.has(addr)) nameCache.set(addr, addr.startsWith('172.17.') ? { addr, container: 'web', network: 'bridge' } : null);
  return nameCache.get(addr);
};
const c = new Correlator({ emit: () => emitted++, names, maxFlows: N + 10, maxEntries: N + 10 });
const t0 = 1_700_000_000_000;
// as decoded packets are: with the fingerprint that tells a frame's copy (decode/observation.ts)
let fp = 0;
const obs = (iface, tuple, us) => {
  fp = (fp + 0x9e3779b1) | 0;
  return { timeUs: us, iface, tuple, wireLen: 60, tcpFlags: 16, fingerprint: fp };
};
for (let i = 0; i < N; i++) {
  const e = entries[i];
  c.onConntrack([{ type: 'new', time: t0, entry: e }]);
  const us = t0 * 1000 + i;
  c.onObservation(obs('eth0', e.orig, us));
  c.onObservation(obs('docker0', { ...e.orig, dst: e.reply.src, dport: e.reply.sport }, us + 40));
  c.onObservation(obs('docker0', e.reply, us + 90));
  c.onObservation(obs('eth0', { ...e.reply, src: e.orig.dst, sport: e.orig.dport }, us + 120));
}
c.tick(t0 + 1000);
const live = c.stats().flowsLive;
const journeyBytes = heap() - base;
let slab = null;
try {
  const l = readFileSync('/proc/slabinfo', 'utf8')
    .split('\n')
    .find((x) => x.startsWith('nf_conntrack '));
  if (l) slab = Number(l.trim().split(/\s+/)[3]);
} catch {
  /* not root */
}

// the 100 ms tick with N live flows and nothing to emit (its cost is what the live loop pays)
const tickT0 = performance.now();
for (let k = 1; k <= 20; k++) c.tick(t0 + 1000 + k * 100);
const tickMs = (performance.now() - tickT0) / 20;
const per = (b) => b / N;
const r = {
  flows: N,
  live,
  eventsEmitted: emitted,
  journeyBytesPerFlow: Math.round(per(journeyBytes)),
  journeyMiBPer100k: +(((journeyBytes / N) * 100_000) / 1048576).toFixed(1),
  reference: {
    conntrackTextBytesPerEntry: Math.round(per(textBytes)),
    parsedTableBytesPerEntry: Math.round(per(tableBytes)),
    kernelObjectBytes: slab,
  },
  ratioToConntrackText: +(journeyBytes / textBytes).toFixed(2),
  ratioToParsedTable: +(journeyBytes / tableBytes).toFixed(2),
  tickMs: +tickMs.toFixed(2),
};
if (JSON_OUT) console.log(JSON.stringify(r));
else {
  console.log(
    `journey correlator: ${r.journeyBytesPerFlow} B per live flow (4 legs, names, NAT) = ${r.journeyMiBPer100k} MiB per 100,000 flows (${live} live)`,
  );
  console.log(
    `reference: conntrack -L text ${r.reference.conntrackTextBytesPerEntry} B/entry; parsed entries in a Map ${r.reference.parsedTableBytesPerEntry} B/entry; kernel nf_conntrack object ${slab ?? 'n/a'} B`,
  );
  console.log(`ratio: ${r.ratioToConntrackText}x the conntrack -L text, ${r.ratioToParsedTable}x the bare parsed table`);
  console.log(`one 100 ms tick over ${live} live flows: ${r.tickMs} ms`);
}
