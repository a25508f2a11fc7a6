#!/usr/bin/env node
/**
 * The highest packet rate `journey watch --json > /dev/null` keeps with zero drops (the whole
 * pipeline: capture workers, decode, conntrack join, flows, JSON out), as a ratio to
 * `tcpdump -w /dev/null` on the same interface in the same run.
 *   sudo node scripts/bench/watch-rate.mjs [--seconds 2] [--rates 50000,100000,...] [--flows 2000] [--id c2bench] [--json]
 * Two throwaway namespaces (jl-c2bench-tx, jl-c2bench-rx) joined by a veth; capture-flood.c
 * (the capture benchmark's paced sender) floods 60-byte UDP frames to 10.77.0.9:9 through rx,
 * which routes them on (forwarding on, a conntrack rule loaded, so every frame has a conntrack
 * entry to join). `--flows N` (default 2000) spreads the frames over N source ports and replaces
 * one every 8th burst (thousands of 5-tuples, new connections all the time). A rate passes when
 * every frame delivered to the veth was captured and neither the kernel nor journey dropped one.
 * At every step: delivered (to the veth) = shown in flows + not flows (non-IP, copies...) + lost
 * where journey counted it (kernel ring, interface, pipe, hold queue; its last capture.stats
 * event's `loss`) + pending + `uncounted`; uncounted must be 0. `--id` names the namespaces
 * (jl-ID-tx/rx) so that runs on a shared machine do not collide.
 * Needs root and a built tree. Bounded (~3 minutes).
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFlood, createVethPair, flood as floodFrom, sh, teardownNetns } from './lib-flood.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(`--${n}`) ? args[args.indexOf(`--${n}`) + 1] : d);
const SECONDS = Number(opt('seconds', '2'));
const RATES = opt('rates', '25000,50000,100000,150000,200000,250000,300000').split(',').map(Number);
const JSON_OUT = args.includes('--json');
const FLOWS = Number(opt('flows', '2000'));
const DEADLINE = Date.now() + Number(opt('budget', '170')) * 1000;
const BENCH_ID = opt('id', 'c2bench');
const TX = `jl-${BENCH_ID}-tx`;
const RX = `jl-${BENCH_ID}-rx`;
const FILTER = 'udp dst port 9';
const nsx = (ns, a, o) => sh('nsenter', [`--net=/var/run/netns/${ns}`, '--', ...a], o);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`bench: ${a.join(' ')}\n`);
if (process.getuid?.() !== 0) {
  console.error('bench: needs root');
  process.exit(2);
}

const teardown = () => teardownNetns([TX, RX]);
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
  // rx forwards 10.77.0.9 out of a veth whose peer has no address (a black hole after the taps), tracking every flow
  nsx(RX, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  sh('ip', ['-n', RX, 'route', 'add', '10.77.0.9/32', 'dev', 'sink0']);
  sh('ip', ['-n', RX, 'neigh', 'add', '10.77.0.9', 'lladdr', '02:00:00:00:00:09', 'dev', 'sink0', 'nud', 'permanent']);
  nsx(RX, ['nft', '-f', '-'], {
    input: 'table ip jl_c2bench {\n chain forwarding { type filter hook forward priority 0; ct state new counter accept;\n }\n}\n',
  });
  const mac = JSON.parse(sh('ip', ['-n', RX, '-j', 'link', 'show', 'rxv']))[0].address;
  sh('ip', ['-n', TX, 'neigh', 'add', '10.77.0.9', 'lladdr', mac, 'dev', 'txv', 'nud', 'permanent']);
  sh('ip', ['-n', TX, 'route', 'add', '10.77.0.9/32', 'dev', 'txv']);
  return buildFlood(dir);
}
/** Packet sockets open in the receiving namespace (a capture's socket appears here when it opens). */
const packetSockets = () => sh('ip', ['netns', 'exec', RX, 'cat', '/proc/net/packet']).trim().split('\n').length - 1;
const rxStats = () => JSON.parse(sh('ip', ['-n', RX, '-s', '-j', 'link', 'show', 'rxv']))[0].stats64.rx;
const flood = (bin, rate) => floodFrom(bin, { netns: TX, dst: '10.77.0.9', rate, seconds: SECONDS, flows: FLOWS });

async function trial(tool, bin, rate) {
  const argv =
    tool === 'tcpdump'
      ? ['nsenter', `--net=/var/run/netns/${RX}`, '--', 'tcpdump', '-i', 'rxv', '-p', '-n', '-B', '8192', '-w', '/dev/null', FILTER]
      : [
          'node',
          join(root, 'dist/src/cli/main.js'),
          'watch',
          '--json',
          '--netns',
          RX,
          '-i',
          'rxv',
          '--no-docker',
          '--no-explain-flows',
          '--stats-interval',
          '0',
          FILTER,
        ];
  const sockets0 = packetSockets();
  const outFile = join(dir, `${tool}-${rate}.jsonl`);
  const outFd = openSync(outFile, 'w');
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', tool === 'tcpdump' ? 'ignore' : outFd, 'pipe'] });
  closeSync(outFd);
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const ready = tool === 'tcpdump' ? /listening on/ : /capture statistics|capturing on|E_/;
  for (let i = 0; i < 200 && !ready.test(err); i++) await sleep(50);
  // the capture counts from when its packet socket exists: wait for it (a loaded machine may open it
  // well after the start notice), or the frames sent before would look like uncounted loss
  for (let i = 0; i < 300 && packetSockets() <= sockets0; i++) await sleep(50);
  await sleep(tool === 'tcpdump' ? 300 : 1500);
  const s0 = rxStats();
  const f = await flood(bin, rate);
  await sleep(1500);
  const s1 = rxStats();
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await Promise.race([done, sleep(15000)]);
  let captured;
  let kdrop;
  let own = 0;
  if (tool === 'tcpdump') {
    captured = Number(/(\d+) packets? captured/.exec(err)?.[1] ?? NaN);
    kdrop = Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? NaN);
  } else {
    const m = /rxv: (\d+) packets received, (\d+) dropped by kernel, (\d+) dropped by interface, (\d+) dropped by journey/.exec(err);
    captured = Number(m?.[1] ?? NaN);
    kdrop = Number(m?.[2] ?? NaN);
    own = Number(m?.[4] ?? NaN);
  }
  // delivered to the veth by the kernel (sent minus what the veth itself dropped)
  const delivered = f.sent - (s1.dropped - s0.dropped);
  const lost = Math.max(0, delivered - captured);
  // journey's own account at stop (the last capture.stats event's loss for rxv): where each frame went
  let acct = null;
  // flows that never found their conntrack entry: every flooded tuple is tracked, so any such flow
  // means the join fell behind (or the namespace tracks nothing and the bench measures the hold queue)
  let flows = 0;
  let withoutCt = 0;
  if (tool === 'journey') {
    for (const line of readFileSync(outFile, 'utf8').split('\n')) {
      if (line.includes('"flow.start"')) {
        flows++;
        if (line.includes('"id":"pkt:')) withoutCt++;
      }
      if (!line.includes('"capture.stats"')) continue;
      const l = JSON.parse(line).loss?.find((x) => x.iface === 'rxv');
      if (l) acct = l;
    }
  }
  const notShown = acct ? acct.notShown.nonIp + acct.notShown.undecodable + acct.notShown.copies + acct.notShown.linkControl : 0;
  const told = acct ? acct.lost.kernelRing + acct.lost.interface + acct.lost.pipe + acct.lost.holdQueue : Number.isNaN(kdrop) ? 0 : kdrop;
  // delivered to the veth, but neither shown, left out for a stated reason, counted lost, nor pending: vanished uncounted
  const uncounted = acct ? delivered - acct.shown - notShown - told - acct.pending : delivered - captured - (Number.isNaN(kdrop) ? 0 : kdrop);
  return {
    rate,
    achieved: Math.round(f.sent / f.elapsed),
    sent: f.sent,
    captured,
    kernelDropped: kdrop,
    ownDropped: own,
    delivered,
    ...(acct ? { reachedPipeline: acct.delivered, shown: acct.shown, notShown, lostAt: acct.lost, pending: acct.pending, flows, withoutCt } : {}),
    toldLost: told,
    lost,
    uncounted,
    ok: lost === 0 && kdrop === 0 && own === 0 && told === 0 && uncounted === 0 && withoutCt === 0,
  };
}

let dir = '';
const results = { tcpdump: { trials: [], maxZeroDrop: 0, failed: false }, journey: { trials: [], maxZeroDrop: 0, failed: false } };
dir = mkdtempSync(join(tmpdir(), 'journey-c2bench-'));
try {
  const bin = setup(dir);
  for (const rate of RATES) {
    for (const tool of ['tcpdump', 'journey']) {
      if (results[tool].failed || Date.now() > DEADLINE) continue;
      const r = await trial(tool, bin, rate);
      results[tool].trials.push(r);
      const where = r.lostAt
        ? ` (captured ${r.captured}, reached the pipeline ${r.reachedPipeline}) = shown ${r.shown} + not flows ${r.notShown} + lost (ring ${r.lostAt.kernelRing}, interface ${r.lostAt.interface}, pipe ${r.lostAt.pipe}, hold queue ${r.lostAt.holdQueue}) + pending ${r.pending}; flows ${r.flows}, without conntrack ${r.withoutCt}`
        : ` = captured ${r.captured} + kernel-drop ${r.kernelDropped}`;
      log(
        `${tool.padEnd(8)} ${String(rate).padStart(7)} pps: sent ${r.sent} (${r.achieved} pps) delivered ${r.delivered}${where} + uncounted ${r.uncounted} ${r.ok ? 'OK' : 'DROPS'}`,
      );
      if (r.ok) results[tool].maxZeroDrop = Math.max(results[tool].maxZeroDrop, r.achieved);
      else results[tool].failed = true;
    }
  }
} finally {
  teardown();
  rmSync(dir, { recursive: true, force: true });
}
const ratio = results.tcpdump.maxZeroDrop > 0 ? +(results.journey.maxZeroDrop / results.tcpdump.maxZeroDrop).toFixed(2) : NaN;
if (JSON_OUT) console.log(JSON.stringify({ ...results, ratio }));
else {
  console.log(
    `${FLOWS} flows; load ${(await import('node:os'))
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}; uncounted at any step: ${Math.max(0, ...results.journey.trials.map((t) => Math.abs(t.uncounted)))}\n` +
      `highest zero-drop rate: journey watch --json ${results.journey.maxZeroDrop} pps, tcpdump -w /dev/null ${results.tcpdump.maxZeroDrop} pps (ratio ${ratio}; ladder ${RATES.join(',')}${results.tcpdump.failed ? '' : ', tcpdump never dropped: the ladder top bounds its figure'})`,
  );
}
