#!/usr/bin/env node
// Benchmark of `--export nats://` (needs `npm run build`, nats-server from scripts/setup), loopback
// only, bounded and self-stopping.
//
//   node scripts/bench/export-nats.mjs [--events 20000] [--runs 3] [--json]
//
// Events per second through NATS: every event of the recorded lab replay (repeated with distinct
// flow ids and ports) published by journey's NATS exporter to Debian's nats-server with JetStream
// (file store), each acknowledged by the server, and read back by the reader of
// `serve --from nats://…` in the same process (end to end). Reference, same run: the same events
// written by `watch --json`'s writer to /dev/null. The figures that matter are the ratios.
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { benchEvents, daemon, dist, freeTcpPort, jsonReference, median, sleep, tempDir } from './lib-export.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : dflt;
};
const N = opt('events', 20_000);
const RUNS = opt('runs', 3);

async function natsRun(events, run) {
  const { natsTarget } = await dist('export/nats.js');
  const { openNatsFleet } = await dist('export/nats-fleet.js');
  const store = tempDir('nats');
  const port = await freeTcpPort();
  const server = await daemon('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store.dir], /Server is ready/);
  const url = `nats://127.0.0.1:${port}/bench${run}`;
  const reader = await openNatsFleet(url, {}, () => undefined);
  let received = 0;
  let receivedAt = 0;
  reader.on('event', () => {
    received++;
    if (received === events.length) receivedAt = performance.now();
  });
  const t = await natsTarget.open(new URL(url), { host: 'bench', env: {}, log: () => undefined });
  const t0 = performance.now();
  for (const ev of events) t.write(ev);
  let ackedAt = 0;
  const until = t0 + 120_000;
  while ((t.stats().sent + t.stats().lost < events.length || received < events.length) && performance.now() < until) {
    if (!ackedAt && t.stats().sent + t.stats().lost >= events.length) ackedAt = performance.now();
    await sleep(5);
  }
  if (!ackedAt) ackedAt = performance.now();
  const st = t.stats();
  await t.close();
  await reader.stop();
  await server.stop();
  store.remove();
  return {
    acked: st.sent / ((ackedAt - t0) / 1000),
    endToEnd: received / (((receivedAt || performance.now()) - t0) / 1000),
    sent: st.sent,
    lost: st.lost,
    received,
  };
}

const events = await benchEvents(N, ['flow.start', 'flow.update', 'flow.end', 'drop', 'notice', 'capture.stats', 'ruleset.changed']);
const nats = [];
const ref = [];
for (let r = 0; r < RUNS; r++) {
  ref.push(await jsonReference(events));
  nats.push(await natsRun(events, r));
}
const refRate = median(ref.map((x) => x.perSecond));
const result = {
  events: N,
  publishedAckedPerSecond: Math.round(median(nats.map((x) => x.acked))),
  endToEndPerSecond: Math.round(median(nats.map((x) => x.endToEnd))),
  referenceEventsPerSecond: Math.round(refRate),
  ratioPublished: Number((median(nats.map((x) => x.acked)) / refRate).toFixed(3)),
  ratioEndToEnd: Number((median(nats.map((x) => x.endToEnd)) / refRate).toFixed(3)),
  runs: nats.map((x) => ({ sent: x.sent, lost: x.lost, received: x.received })),
  loadavg: loadavg()
    .map((x) => x.toFixed(1))
    .join(' '),
};
if (args.includes('--json')) console.log(JSON.stringify(result));
else {
  console.log(`NATS export (JetStream, file store, loopback), ${N} events, median of ${RUNS} runs, load ${result.loadavg}:`);
  console.log(`  published and acknowledged: ${result.publishedAckedPerSecond} events/s (ratio ${result.ratioPublished})`);
  console.log(`  end to end (serve --from's reader): ${result.endToEndPerSecond} events/s (ratio ${result.ratioEndToEnd})`);
  console.log(`  reference (watch --json writer to /dev/null, same events): ${result.referenceEventsPerSecond} events/s`);
  for (const r of result.runs) console.log(`  run: ${JSON.stringify(r)}`);
}
