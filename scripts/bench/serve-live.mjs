#!/usr/bin/env node
// Delay from a real packet to a WebSocket client of `journey serve`, p50/p99, with 1 and 10
// clients, against the same measure for `journey watch --json` (packet -> its JSON line on
// stdout) taken in the same run on the same packets. Needs root and `npm run build`.
//
//   node scripts/bench/serve-live.mjs [--rate 100] [--seconds 5] [--json]
//
// Loopback only: a throwaway namespace jl-e-bench (lo up, nothing else) where a small TCP
// server on 127.0.0.1:7000 gets --rate connections per second for --seconds through a DNAT
// from 127.0.0.1:7001 (nft, nat output: conntrack joins and NATs every flow); journey serve and
// journey watch both capture `lo` in that namespace (conntrack joins the flows). Each flow.start
// carries its first packet's capture time (legs[].firstUs) and each event its latest packet
// (legs[].lastUs): the client subtracts them from its receive time (same host, same clock).
// serve and watch --json emit flow.start as soon as the first packet joins its conntrack entry
// (no start delay; the later leg comes as flow.update), so "first packet -> flow.start" is the
// pipeline + stream latency of a new connection; "last packet -> event" includes the counter
// updates, which are sent at most every 2 s per flow. Bounded: stops itself, removes the namespace.
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : dflt;
};
const RATE = opt('rate', 100);
const SECONDS = opt('seconds', 5);
const NS = 'jl-e-bench';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const children = [];

function cleanup() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  try {
    execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  } catch {
    /* gone */
  }
}
process.on('exit', cleanup);
const deadline = setTimeout(() => {
  console.error('bench/serve-live: over 3 minutes, stopping');
  process.exit(1);
}, 180_000);
deadline.unref();

if (process.getuid?.() !== 0) {
  console.error('bench/serve-live: needs root (a network namespace, live capture)');
  process.exit(2);
}

function startJourney(argv, ready) {
  const child = spawn(process.execPath, [CLI, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines = { out: createInterface({ input: child.stdout }), err: createInterface({ input: child.stderr }) };
  const stderr = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`journey ${argv[0]} not ready: ${stderr.join('\n')}`)), 30_000);
    const check = (l) => {
      if (ready.test(l)) {
        clearTimeout(t);
        resolve({ child, lines, stderr });
      }
    };
    lines.err.on('line', (l) => {
      stderr.push(l);
      check(l);
    });
    lines.out.on('line', check);
    child.once('exit', (c) => reject(new Error(`journey ${argv[0]} exited ${c}: ${stderr.join('\n')}`)));
  });
}

function pct(xs, p) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);
}

async function traffic() {
  // inside the namespace: a server and paced short connections, all on 127.0.0.1
  const script = `
    const net = require('node:net');
    const srv = net.createServer((s) => { s.on('data', () => s.end('ok')); s.on('error', () => {}); });
    srv.listen(7000, '127.0.0.1', () => {
      const total = ${RATE * SECONDS}; let started = 0, done = 0; const t0 = Date.now();
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor((Date.now() - t0) / 1000 * ${RATE}));
        while (started < due) {
          started++;
          const c = net.connect(7001, '127.0.0.1', () => c.write('x'));
          c.on('data', () => c.end()); c.on('error', () => {});
          c.on('close', () => { if (++done === total) { srv.close(); process.exit(0); } });
        }
        if (started >= total) clearInterval(tick);
      }, 2);
    });`;
  const child = spawn('nsenter', [`--net=/var/run/netns/${NS}`, '--', process.execPath, '-e', script], { stdio: 'inherit' });
  children.push(child);
  await new Promise((r) => child.once('exit', r));
}

async function runOnce(nClients) {
  const common = [
    '--netns',
    NS,
    '-i',
    'lo',
    '--no-docker',
    '--no-explain-flows',
    '--stats-interval',
    '0',
    '--duration',
    '120',
    'tcp port 7000 or tcp port 7001',
  ];
  const serve = await startJourney(['serve', '--port', '0', '-q', ...common], /listening on/);
  const wsUrl = /WebSocket (ws:\/\/\S+?),/.exec(serve.stderr.join('\n'))[1];
  const watch = await startJourney(['watch', '--json', ...common], /"capturing on/);
  const served = { start: [], any: [], events: 0 };
  const watched = { start: [], any: [], events: 0 };
  let measuring = true;
  const measure = (ev, into) => {
    if (!measuring || !ev.type?.startsWith('flow.')) return;
    const t = nowUs();
    into.events++;
    const legs = ev.flow.legs;
    if (legs.length === 0) return;
    const first = Math.min(...legs.map((l) => l.firstUs));
    const last = Math.max(...legs.map((l) => l.lastUs));
    if (ev.type === 'flow.start') into.start.push(t - first);
    into.any.push(t - last);
  };
  watch.lines.out.on('line', (l) => {
    if (l.startsWith('{')) measure(JSON.parse(l), watched);
  });
  const clients = await Promise.all(
    Array.from(
      { length: nClients },
      (_, i) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(wsUrl);
          ws.on('error', reject);
          ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', filter: { protocol: 'tcp', port: 7000, natOnly: true }, replay: 0 })));
          ws.on('message', (d) => {
            const ev = JSON.parse(d.toString());
            if (ev.type === 'subscribed') resolve(ws);
            else if (i === 0)
              measure(ev, served); // client 0 measures; the others load the server
            else if (ev.type === 'lost') served.lost = (served.lost ?? 0) + ev.count;
          });
        }),
    ),
  );
  const t0 = performance.now();
  await traffic();
  await new Promise((r) => setTimeout(r, 3000)); // the last flow.start events (startDelayMs) and updates
  const secs = (performance.now() - t0) / 1000;
  measuring = false; // the flow.end events of the shutdown are not part of the measure
  for (const ws of clients) ws.terminate();
  for (const j of [serve, watch]) j.child.kill('SIGINT');
  await Promise.all([serve, watch].map((j) => new Promise((r) => (j.child.exitCode !== null ? r() : j.child.once('exit', r)))));
  const row = (kind, m) => ({
    clients: nClients,
    kind,
    flows: m.start.length,
    events: m.events,
    eventsPerSecond: Math.round(m.events / secs),
    firstPacketToStartP50us: pct(m.start, 50),
    firstPacketToStartP99us: pct(m.start, 99),
    lastPacketToEventP50us: pct(m.any, 50),
    lastPacketToEventP99us: pct(m.any, 99),
  });
  // (not paired flow by flow: each process's correlator ticks at its own phase, so per-flow
  // differences measure that phase, not the stream; compare the distributions)
  return [{ ...row('serve (ws client)', served), lost: served.lost ?? 0 }, row('watch --json (stdout)', watched)];
}

try {
  execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
} catch {
  /* not there */
}
execFileSync('ip', ['netns', 'add', NS]);
execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
// a NAT rule makes conntrack track the namespace (a fresh one tracks nothing) and gives every
// flow a DNAT to explain: 127.0.0.1:7001 -> 127.0.0.1:7000, as a published port would
execFileSync('nsenter', [`--net=/var/run/netns/${NS}`, '--', 'nft', '-f', '-'], {
  input: 'table ip jl_bench {\n chain out {\n  type nat hook output priority -100;\n  tcp dport 7001 dnat to 127.0.0.1:7000\n }\n}\n',
});
const results = [];
for (const n of [1, 10]) results.push(...(await runOnce(n)));
cleanup();
if (args.includes('--json')) {
  console.log(JSON.stringify({ rate: RATE, seconds: SECONDS, results }, null, 2));
} else {
  console.log(`journey serve live bench: ${RATE} TCP connections/s for ${SECONDS} s on lo in ${NS}; delays in µs (packet capture time -> received)`);
  console.log('clients  consumer               flows  events  ev/s   first pkt->flow.start p50/p99   last pkt->event p50/p99');
  for (const r of results) {
    console.log(
      `${String(r.clients).padStart(7)}  ${r.kind.padEnd(21)}  ${String(r.flows).padStart(5)}  ${String(r.events).padStart(6)}  ${String(r.eventsPerSecond).padStart(4)}   ${String(r.firstPacketToStartP50us).padStart(10)} / ${String(r.firstPacketToStartP99us).padEnd(10)}   ${String(r.lastPacketToEventP50us).padStart(9)} / ${r.lastPacketToEventP99us}`,
    );
  }
}
clearTimeout(deadline);
process.exit(0);
