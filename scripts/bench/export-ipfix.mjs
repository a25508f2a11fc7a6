#!/usr/bin/env node
// Benchmark of `--export ipfix://` (needs `npm run build`, nfdump from scripts/setup), loopback only,
// bounded and self-stopping.
//
//   node scripts/bench/export-ipfix.mjs [--records 50000] [--batch 1000] [--runs 3] [--json]
//
// Records per second delivered to Debian's nfcapd: the flow.end events of the recorded lab replay
// (repeated with distinct flow ids and ports) go through journey's IPFIX exporter (UDP) in closed
// loop — a batch, then the next when nfcapd has received all of it (its -R repeater hands the
// test a copy of every datagram) — and `nfdump -I` confirms what nfcapd stored (flows, sequence
// failures). Reference, same run: the same events written by `watch --json`'s writer to /dev/null.
// The figure that matters is the ratio ipfix/reference.
import { createSocket } from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { benchEvents, daemon, dist, jsonReference, median, sleep, tempDir } from './lib-export.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : dflt;
};
const N = opt('records', 50_000);
const BATCH = opt('batch', 1000);
const RUNS = opt('runs', 3);

/** Data records in IPFIX datagrams, read with the templates the stream announced. */
function recordCounter() {
  const templates = new Map();
  return (m) => {
    let n = 0;
    const length = m.readUInt16BE(2);
    for (let s = 16; s + 4 <= length; ) {
      const id = m.readUInt16BE(s);
      const end = s + m.readUInt16BE(s + 2);
      let o = s + 4;
      if (id === 2) {
        while (o + 4 <= end) {
          const tid = m.readUInt16BE(o);
          const count = m.readUInt16BE(o + 2);
          o += 4;
          const lens = [];
          for (let i = 0; i < count; i++) {
            lens.push(m.readUInt16BE(o + 2));
            o += m.readUInt16BE(o) & 0x8000 ? 8 : 4;
          }
          templates.set(tid, lens);
        }
      } else if (templates.has(id)) {
        const lens = templates.get(id);
        while (o < end) {
          for (const l of lens) o += l !== 0xffff ? l : m[o] < 255 ? 1 + m[o] : 3 + m.readUInt16BE(o + 1);
          n++;
        }
      }
      s = end;
    }
    return n;
  };
}

async function ipfixRun(events) {
  const { ipfixTarget } = await dist('export/ipfix.js');
  const tmp = tempDir('nfcapd');
  const rep = createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  let seen = 0;
  const count = recordCounter();
  rep.on('message', (m) => {
    seen += count(m);
  });
  await new Promise((r) => rep.bind(0, '127.0.0.1', r));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const nf = await daemon(
    'nfcapd',
    ['-b', '127.0.0.1', '-p', String(port), '-w', tmp.dir, '-t', '3600', '-B', String(8 << 20), '-R', `127.0.0.1/${rep.address().port}`],
    /Startup/,
  );
  const t = await ipfixTarget.open(new URL(`ipfix://127.0.0.1:${port}`), { host: 'bench', env: {}, log: () => undefined });
  const t0 = performance.now();
  let waitedOut = 0;
  for (let i = 0; i < events.length; i += BATCH) {
    for (const ev of events.slice(i, i + BATCH)) t.write(ev);
    const want = Math.min(events.length, i + BATCH);
    const until = performance.now() + 2000;
    while (seen < want && performance.now() < until) await new Promise((r) => setImmediate(r));
    if (seen < want) waitedOut++;
  }
  const s = (performance.now() - t0) / 1000;
  await t.close();
  await sleep(200);
  await nf.stop();
  rep.close();
  const file = readdirSync(tmp.dir).find((f) => f.startsWith('nfcapd.') && !f.includes('current'));
  const info = execFileSync('nfdump', ['-r', join(tmp.dir, file), '-I'], { encoding: 'utf8' });
  tmp.remove();
  return {
    perSecond: seen / s,
    seconds: s,
    seen,
    stored: Number(/^Flows: (\d+)/m.exec(info)?.[1] ?? -1),
    sequenceFailures: Number(/Sequence failures: (\d+)/.exec(info)?.[1] ?? -1),
    stats: t.stats(),
    batchesTimedOut: waitedOut,
  };
}

const events = await benchEvents(N, ['flow.end']);
const ipfix = [];
const ref = [];
for (let r = 0; r < RUNS; r++) {
  ref.push(await jsonReference(events));
  ipfix.push(await ipfixRun(events));
}
const load = (await import('node:os'))
  .loadavg()
  .map((x) => x.toFixed(1))
  .join(' ');
const result = {
  records: N,
  ipfixRecordsPerSecond: Math.round(median(ipfix.map((x) => x.perSecond))),
  referenceEventsPerSecond: Math.round(median(ref.map((x) => x.perSecond))),
  ratio: Number((median(ipfix.map((x) => x.perSecond)) / median(ref.map((x) => x.perSecond))).toFixed(3)),
  runs: ipfix.map((x) => ({
    seconds: Number(x.seconds.toFixed(3)),
    seenByCollector: x.seen,
    storedByNfcapd: x.stored,
    sequenceFailures: x.sequenceFailures,
    lost: x.stats.lost,
    batchesTimedOut: x.batchesTimedOut,
  })),
  loadavg: load,
};
if (args.includes('--json')) console.log(JSON.stringify(result));
else {
  console.log(`IPFIX export to nfcapd (UDP, loopback), ${N} flow records, median of ${RUNS} runs, load ${load}:`);
  console.log(`  journey --export ipfix: ${result.ipfixRecordsPerSecond} records/s received by nfcapd`);
  console.log(`  reference (watch --json writer to /dev/null, same events): ${result.referenceEventsPerSecond} events/s`);
  console.log(`  ratio: ${result.ratio}`);
  for (const r of result.runs) console.log(`  run: ${JSON.stringify(r)}`);
}
