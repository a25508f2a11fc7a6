#!/usr/bin/env node
/**
 * Delay from a packet to its printed event (p50/p99), live in the lab, against tcpdump printing
 * the same packets in the same run (the reference):
 *   - journey: `journey watch --json` on the lab's Docker host; for each new connection, the time
 *     its flow.start line is read minus the capture time of its first packet (the flow's first leg).
 *     With --json, flow.start comes with the first packet (no start delay; later legs come as
 *     flow.update).
 *   - tcpdump: `tcpdump --immediate-mode -l -tt` on the uplink (no buffering in the kernel ring:
 *     the reference for "as soon as possible"), the time its line is read minus the packet's time.
 * Traffic: N TCP connections from the lab's external namespace to the published port, every 20 ms.
 *   node scripts/bench/watch-latency.mjs [--connections 300] [--id c2] [--node-args "..."] [--json]
 * Needs root, a built tree (npm run build); brings the lab up (scenario default) and down.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const { labUp, labDown } = await import(join(root, 'dist/lab/driver.js'));
const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(n) ? args[args.indexOf(n) + 1] : d);
const N = Number(opt('--connections', '300'));
const ID = opt('--id', 'c2');
const JSON_OUT = args.includes('--json');
/** `--node-args "--cpu-prof --cpu-prof-dir=/tmp/prof"`: flags for journey's node, to profile the run. */
const NODE_ARGS = opt('--node-args', '').split(' ').filter(Boolean);
/** Connections counted as warm-up in the second p99. */
const WARM = 20;

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const info = await labUp({ scenario: 'default', id: ID });
const ns = info.netns.host;
const journeyDelays = [];
const tcpdumpDelays = [];
let watch;
let td;
let capturing = false;
try {
  watch = spawn(
    'node',
    [...NODE_ARGS, join(root, 'dist/src/cli/main.js'), 'watch', '--json', '--netns', ns, '--docker-host', info.dockerHost, '--stats-interval', '0'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  createInterface({ input: watch.stdout }).on('line', (l) => {
    const now = Date.now();
    let ev;
    try {
      ev = JSON.parse(l);
    } catch {
      return;
    }
    if (ev.type === 'notice' && /capturing on/.test(ev.message ?? '')) capturing = true;
    if (ev.type !== 'flow.start' || ev.flow.orig.dport !== 8000 || ev.flow.orig.src !== info.extAddr) return;
    const first = Math.min(...ev.flow.legs.map((x) => x.firstUs));
    if (Number.isFinite(first)) journeyDelays.push(now - first / 1000);
  });
  td = spawn(
    'nsenter',
    [
      `--net=/var/run/netns/${ns}`,
      '--',
      'tcpdump',
      '--immediate-mode',
      '-l',
      '-tt',
      '-n',
      '-p',
      '-i',
      'eth0',
      'tcp dst port 8000 and tcp[tcpflags] & tcp-syn != 0',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  createInterface({ input: td.stdout }).on('line', (l) => {
    const now = Date.now();
    const t = Number(l.split(' ')[0]);
    // (an empty line would read as time 0)
    if (Number.isFinite(t) && t > 0) tcpdumpDelays.push(now - t * 1000);
  });
  // a loaded machine may take far longer than a fixed wait to open the capture: wait for its notice
  for (let i = 0; i < 600 && !capturing; i++) await sleep(100);
  await sleep(2000);
  // N connections, one every 20 ms, from the external namespace
  const client = `const net=require('net');let i=0;const go=()=>{if(i++>=${N})return;const s=net.connect(8000,'${info.hostAddr}',()=>{s.end('GET / HTTP/1.0\\r\\n\\r\\n')});s.on('error',()=>{});s.on('data',()=>{});setTimeout(go,20)};go();`;
  await new Promise((res) =>
    spawn('nsenter', [`--net=/var/run/netns/${info.netns.ext}`, '--', 'node', '-e', client], { stdio: 'ignore' }).on('exit', res),
  );
  await sleep(2500);
} finally {
  watch?.kill('SIGINT');
  td?.kill('SIGINT');
  await sleep(1500);
  await labDown(ID);
}
const r = {
  connections: N,
  journey: {
    events: journeyDelays.length,
    p50: pct(journeyDelays, 50),
    p99: pct(journeyDelays, 99),
    // the first connections also pay for V8 compiling the hot path (a cost once per run)
    warmP99: pct(journeyDelays.slice(WARM), 99),
    max: Math.max(...journeyDelays),
  },
  tcpdump: { lines: tcpdumpDelays.length, p50: pct(tcpdumpDelays, 50), p99: pct(tcpdumpDelays, 99) },
};
r.ratioP50 = +(r.journey.p50 / Math.max(1, r.tcpdump.p50)).toFixed(1);
r.ratioP99 = +(r.journey.p99 / Math.max(1, r.tcpdump.p99)).toFixed(1);
r.load = (await import('node:os')).loadavg().map((x) => +x.toFixed(1));
if (JSON_OUT) console.log(JSON.stringify(r));
else {
  console.log(
    `journey watch --json: ${r.journey.events}/${N} flow.start events; packet -> printed event p50 ${r.journey.p50.toFixed(0)} ms, p99 ${r.journey.p99.toFixed(0)} ms, max ${r.journey.max.toFixed(0)} ms; after the first ${WARM} p99 ${r.journey.warmP99.toFixed(0)} ms (ratio to tcpdump p50 ${r.ratioP50}, p99 ${r.ratioP99}; load ${r.load.join(' ')})`,
  );
  console.log(
    `reference tcpdump --immediate-mode -l: ${r.tcpdump.lines}/${N} SYN lines; packet -> printed line p50 ${r.tcpdump.p50.toFixed(0)} ms, p99 ${r.tcpdump.p99.toFixed(0)} ms`,
  );
}
