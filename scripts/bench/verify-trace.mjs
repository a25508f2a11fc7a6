#!/usr/bin/env node
/**
 * What `--verify 5` costs, as ratios to the same journey without it, in the same run:
 *  - forwarding: the packets a second the host forwards while `journey watch --json` runs on it,
 *    with `--verify 5` (its trace table is evaluated by every packet) over without (goal >= 0.98);
 *  - the table alone: the same flood with the trace table loaded or not and no journey running (its
 *    kernel cost apart from journey's CPU; both ratios also as the median of per-round ratios);
 *  - flow.start: the delay from a new flow's first packet (its capture time) to its flow.start
 *    line, with and without `--verify 5` (p50/p99 and the difference).
 * Two throwaway namespaces (jl-kvbench-tx, jl-kvbench-rx, lib-flood.mjs): rx forwards what tx sends
 * to 10.77.0.9 out of a black-hole veth (sink0), tracking every connection. Forwarding: capture-flood.c
 * floods 60-byte UDP frames at `--rate` (default 2,000,000/s: as fast as tx can) for `--seconds`;
 * the rate is sink0's transmitted packets over the flood's time. Rounds alternate off/on
 * (`--rounds`, default 3) and the medians are compared. flow.start: `--flows` (default 100) UDP
 * flows, one every 20 ms, each from a new source port.
 *   sudo node scripts/bench/verify-trace.mjs [--rounds 3] [--seconds 2] [--rate 2000000] [--flows 100] [--json]
 * Needs root and a built tree (npm run build).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { traceTableDefinition } from '../../dist/src/netfilter/trace-arm.js';
import { buildFlood, createVethPair, flood as floodFrom, sh, teardownNetns } from './lib-flood.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(`--${n}`) ? args[args.indexOf(`--${n}`) + 1] : d);
const ROUNDS = Number(opt('rounds', '3'));
const SECONDS = Number(opt('seconds', '2'));
const RATE = Number(opt('rate', '2000000'));
const FLOWS = Number(opt('flows', '100'));
const JSON_OUT = args.includes('--json');
const TX = 'jl-kvbench-tx';
const RX = 'jl-kvbench-rx';
const nsx = (ns, a, o) => sh('nsenter', [`--net=/var/run/netns/${ns}`, '--', ...a], o);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`bench: ${a.join(' ')}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : Number.NaN;
};
if (process.getuid?.() !== 0) {
  console.error('bench: needs root');
  process.exit(2);
}

function setup(dir) {
  createVethPair(TX, RX);
  sh('ip', ['-n', RX, 'link', 'add', 'sink0', 'type', 'veth', 'peer', 'name', 'sink1']);
  sh('ip', ['-n', RX, 'addr', 'add', '10.78.0.1/24', 'dev', 'sink0']);
  for (const [ns, dev] of [
    [TX, 'txv'],
    [RX, 'rxv'],
    [RX, 'sink0'],
    [RX, 'sink1'],
    [TX, 'lo'],
    [RX, 'lo'],
  ])
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  nsx(RX, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  sh('ip', ['-n', RX, 'route', 'add', '10.77.0.9/32', 'dev', 'sink0']);
  sh('ip', ['-n', RX, 'neigh', 'add', '10.77.0.9', 'lladdr', '02:00:00:00:00:09', 'dev', 'sink0', 'nud', 'permanent']);
  // a ruleset to explain (and conntrack on, so that every packet has an entry)
  nsx(RX, ['nft', '-f', '-'], {
    input: 'table ip kvbench {\n chain forwarding { type filter hook forward priority 0; policy accept;\n  ct state new counter accept\n }\n}\n',
  });
  const mac = JSON.parse(sh('ip', ['-n', RX, '-j', 'link', 'show', 'rxv']))[0].address;
  sh('ip', ['-n', TX, 'neigh', 'add', '10.77.0.9', 'lladdr', mac, 'dev', 'txv', 'nud', 'permanent']);
  sh('ip', ['-n', TX, 'route', 'add', '10.77.0.9/32', 'dev', 'txv']);
  return buildFlood(dir);
}

const sinkTx = () => JSON.parse(sh('ip', ['-n', RX, '-s', '-j', 'link', 'show', 'sink0']))[0].stats64.tx.packets;

/** `journey watch --json` on rx (with --verify 5 or not), ready; its flow.start delays collected. */
async function startWatch(verify) {
  const argv = [join(root, 'dist/src/cli/main.js'), 'watch', '--json', '--netns', RX, '-i', 'rxv', '--no-docker', '--stats-interval', '0'];
  if (verify) argv.push('--verify', '5');
  const child = spawn('node', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const delays = [];
  const results = { verified: 0, contradicted: 0, unverified: 0 };
  let ready = false;
  createInterface({ input: child.stdout }).on('line', (l) => {
    const now = Date.now();
    let ev;
    try {
      ev = JSON.parse(l);
    } catch {
      return;
    }
    if (ev.type === 'notice' && /capturing on/.test(ev.message)) ready = true;
    if (ev.type !== 'flow.start' || ev.flow.orig.dport !== 7) return;
    const first = Math.min(...ev.flow.legs.map((x) => x.firstUs));
    if (Number.isFinite(first)) delays.push(now - first / 1000);
    const r = ev.flow.explanation?.verification?.result;
    if (r) results[r]++;
  });
  child.stderr.resume();
  for (let i = 0; i < 300 && !ready; i++) await sleep(50);
  await sleep(1000);
  return {
    delays,
    results,
    async stop() {
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await Promise.race([done, sleep(15000)]);
    },
  };
}

/** The flood's packets a second forwarded out of sink0. */
async function forwarded(bin) {
  const s0 = sinkTx();
  const f = await floodFrom(bin, { netns: TX, dst: '10.77.0.9', rate: RATE, seconds: SECONDS });
  await sleep(300);
  return (sinkTx() - s0) / f.elapsed;
}

async function forwardingRound(bin, verify) {
  const w = await startWatch(verify);
  try {
    return await forwarded(bin);
  } finally {
    await w.stop();
  }
}

/**
 * The trace table's own cost, apart from journey's CPU: the same flood with `inet journey_trace_bench`
 * loaded (its definition from dist/, exactly what `--verify 5` arms) or not, and no journey running.
 */
async function kernelRound(bin, armed) {
  if (armed) nsx(RX, ['nft', '-f', '-'], { input: traceTableDefinition('journey_trace_bench', 5) });
  try {
    return await forwarded(bin);
  } finally {
    if (armed) nsx(RX, ['nft', 'delete', 'table', 'inet', 'journey_trace_bench']);
  }
}

async function startRound(verify) {
  const w = await startWatch(verify);
  try {
    const client = `const d=require('dgram');let i=0;const go=()=>{if(i++>=${FLOWS})return;const s=d.createSocket('udp4');s.send('x',7,'10.77.0.9',()=>s.close());setTimeout(go,20)};go();`;
    await new Promise((res) => spawn('nsenter', [`--net=/var/run/netns/${TX}`, '--', 'node', '-e', client], { stdio: 'ignore' }).on('exit', res));
    await sleep(2000);
    return { delays: w.delays, results: w.results };
  } finally {
    await w.stop();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'journey-kvbench-'));
const fwd = { off: [], on: [] };
const kern = { off: [], on: [] };
let start;
try {
  const bin = setup(dir);
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of ['off', 'on']) {
      const pps = await forwardingRound(bin, mode === 'on');
      fwd[mode].push(pps);
      log(`round ${r + 1} --verify ${mode === 'on' ? '5' : 'off'}: forwarded ${Math.round(pps)} pps`);
    }
    for (const mode of ['off', 'on']) {
      const pps = await kernelRound(bin, mode === 'on');
      kern[mode].push(pps);
      log(`round ${r + 1} trace table ${mode === 'on' ? 'loaded' : 'absent'}, no journey: forwarded ${Math.round(pps)} pps`);
    }
  }
  const off = await startRound(false);
  const on = await startRound(true);
  start = { off, on };
} finally {
  teardownNetns([TX, RX]);
  rmSync(dir, { recursive: true, force: true });
}
const load = (await import('node:os')).loadavg()[0];
const out = {
  forwarding: {
    offPps: Math.round(median(fwd.off)),
    onPps: Math.round(median(fwd.on)),
    ratio: +(median(fwd.on) / median(fwd.off)).toFixed(3),
    rounds: fwd,
    /** Per round on/off, whose median is less sensitive to the machine's load drifting across rounds. */
    pairedRatio: +median(fwd.on.map((v, i) => v / fwd.off[i])).toFixed(3),
  },
  /** The trace table alone (no journey running): its kernel cost per forwarded packet. */
  kernelOnly: {
    offPps: Math.round(median(kern.off)),
    onPps: Math.round(median(kern.on)),
    ratio: +(median(kern.on) / median(kern.off)).toFixed(3),
    pairedRatio: +median(kern.on.map((v, i) => v / kern.off[i])).toFixed(3),
    rounds: kern,
  },
  flowStart: {
    flows: FLOWS,
    off: { events: start.off.delays.length, p50: pct(start.off.delays, 50), p99: pct(start.off.delays, 99) },
    on: { events: start.on.delays.length, p50: pct(start.on.delays, 50), p99: pct(start.on.delays, 99), results: start.on.results },
  },
  load1: load,
};
out.flowStart.addedP50 = out.flowStart.on.p50 - out.flowStart.off.p50;
if (JSON_OUT) console.log(JSON.stringify(out));
else {
  console.log(
    `forwarding with journey watch running: --verify 5 ${out.forwarding.onPps} pps, without ${out.forwarding.offPps} pps: ratio ${out.forwarding.ratio}, paired ${out.forwarding.pairedRatio} (goal >= 0.98; medians of ${ROUNDS} alternating rounds; load ${load.toFixed(1)})`,
  );
  console.log(
    `forwarding with only the trace table loaded (no journey): ${out.kernelOnly.onPps} pps, without ${out.kernelOnly.offPps} pps: ratio ${out.kernelOnly.ratio}, paired ${out.kernelOnly.pairedRatio}`,
  );
  console.log(
    `flow.start after the first packet: without --verify p50 ${out.flowStart.off.p50.toFixed(0)} ms p99 ${out.flowStart.off.p99.toFixed(0)} ms; with --verify 5 p50 ${out.flowStart.on.p50.toFixed(0)} ms p99 ${out.flowStart.on.p99.toFixed(0)} ms (added p50 ${out.flowStart.addedP50.toFixed(0)} ms); ${JSON.stringify(out.flowStart.on.results)} of ${out.flowStart.on.events} flows`,
  );
}
