#!/usr/bin/env node
/**
 * The highest packet rate `journey watch --json > /dev/null` keeps with zero drops (the whole
 * pipeline: capture workers, decode, conntrack join, flows, JSON out), as a ratio to
 * `tcpdump -w /dev/null` on the same interface in the same run.
 *   sudo node scripts/bench/watch-rate.mjs [--seconds 6] [--rates 25000,50000,...] [--flows 2000] [--spread 1] [--new-per-second 0] [--legs 2] [--id c2bench] [--no-kernel] [--node-args "..."] [--json]
 * Throwaway namespaces jl-c2bench-tx and jl-c2bench-rx joined by a veth; capture-flood.c
 * (the capture benchmark's paced sender) floods 60-byte UDP frames to 10.77.0.9:9 through rx,
 * which routes them on out of sink0 (forwarding on, a conntrack rule loaded, so every frame has a
 * conntrack entry to join) to jl-c2bench-sink, which takes them (as a container takes what its
 * bridge delivers: no kernel drop per frame). Both legs are captured, as on a Docker host's uplink and bridge: journey
 * watches rxv and sink0 (`--legs 1`: rxv only); the reference is one `tcpdump -w /dev/null` per
 * interface. `--flows N` (default 2000) spreads the frames over N source ports and replaces
 * one every 8th burst (thousands of 5-tuples, new connections all the time); each trial starts with
 * the conntrack table flushed, so its first burst is thousands of new connections. A burst (up to 32
 * frames) goes to one tuple, so a tuple's frames come in runs, which the capture folds
 * (native-bindings/capture/src/capture-fold.c); `--spread 32` interleaves them instead (each frame
 * of a burst to another destination port: no two frames in a row share a tuple, nothing to fold),
 * the hardest many-flow load for journey. `--new-per-second N` replaces tuples on a clock (N new
 * connections a second whatever the rate) instead of every 8th burst (fewer a second as the rate
 * grows and bursts get longer). A rate passes when,
 * on every interface, every frame the kernel delivered past it was captured, neither the kernel
 * nor journey dropped one, and every flow joined its conntrack entry.
 * At every step and interface: delivered = shown in flows + not flows (non-IP, copies...) + lost
 * where journey counted it (kernel ring, interface, pipe, hold queue; its last capture.stats
 * event's `loss`) + pending + `uncounted`; uncounted must be 0. `--id` names the namespaces
 * (jl-ID-tx/rx) so that runs on a shared machine do not collide.
 * The flood lasts 6 s by default: a worker queues up to 32 MiB of batches and the kernel ring holds
 * 32 MiB more, so a 2-second flood (the old default) fitted in the queues and measured how big a
 * burst journey absorbs, not the rate it keeps. The output goes to /dev/shm (tmpfs, as cheap as
 * /dev/null for the writer, and countable): a file on disk added writeback stalls of its own.
 * Needs root and a built tree. Bounded (~5 minutes).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFlood, createVethPair, flood as floodFrom, sh, teardownNetns } from './lib-flood.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(`--${n}`) ? args[args.indexOf(`--${n}`) + 1] : d);
const SECONDS = Number(opt('seconds', '6'));
const RATES = opt('rates', '25000,50000,75000,100000,150000,200000,300000').split(',').map(Number);
const JSON_OUT = args.includes('--json');
const FLOWS = Number(opt('flows', '2000'));
const DEADLINE = Date.now() + Number(opt('budget', '300')) * 1000;
const BENCH_ID = opt('id', 'c2bench');
const TX = `jl-${BENCH_ID}-tx`;
const RX = `jl-${BENCH_ID}-rx`;
const SPREAD = Number(opt('spread', '1'));
const NEW_PER_SECOND = Number(opt('new-per-second', '0'));
const FILTER = 'udp and dst host 10.77.0.9';
/** Both legs of every packet (in on rxv, forwarded out of sink0: a Docker host's uplink and bridge), or `--legs 1` for rxv only. */
const IFACES = opt('legs', '2') === '1' ? ['rxv'] : ['rxv', 'sink0'];
const nsx = (ns, a, o) => sh('nsenter', [`--net=/var/run/netns/${ns}`, '--', ...a], o);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`bench: ${a.join(' ')}\n`);
if (process.getuid?.() !== 0) {
  console.error('bench: needs root');
  process.exit(2);
}

/** Beyond sink0: a namespace that takes the frames (sink1 has their destination MAC) and routes them out of an ifb, which consumes them. */
const SINK = `jl-${BENCH_ID}-sink`;
const teardown = () => teardownNetns([TX, RX, SINK]);
function setup(dir) {
  createVethPair(TX, RX);
  // no IPv6: the links would carry router solicitations and MLD reports, counted by the link but not flooded frames
  for (const [ns, dev] of [
    [TX, 'txv'],
    [RX, 'rxv'],
  ])
    for (const conf of ['all', 'default', dev]) nsx(ns, ['sysctl', '-qw', `net.ipv6.conf.${conf}.disable_ipv6=1`]);
  // beyond sink0 the frames are taken, as a container takes what its bridge delivers: sink1 (in
  // its own namespace) has their destination MAC and forwards them out of an ifb device, which
  // consumes them. A black hole there (a peer that does not want the frames) made every frame a
  // kernel drop as well, which journey's drop program (host-wide) then saw once a frame.
  sh('ip', ['netns', 'add', SINK]);
  sh('ip', ['-n', RX, 'link', 'add', 'sink0', 'type', 'veth', 'peer', 'name', 'sink1', 'netns', SINK]);
  sh('ip', ['-n', RX, 'addr', 'add', '10.78.0.1/24', 'dev', 'sink0']);
  sh('ip', ['-n', SINK, 'link', 'set', 'sink1', 'address', '02:00:00:00:00:09']);
  sh('ip', ['-n', SINK, 'addr', 'add', '10.78.0.2/24', 'dev', 'sink1']);
  sh('ip', ['-n', SINK, 'link', 'add', 'sinkifb', 'type', 'ifb']);
  for (const [ns, dev] of [
    [TX, 'txv'],
    [RX, 'rxv'],
    [RX, 'sink0'],
    [SINK, 'sink1'],
    [SINK, 'sinkifb'],
    [TX, 'lo'],
    [RX, 'lo'],
  ])
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  for (const conf of ['all', 'default']) nsx(SINK, ['sysctl', '-qw', `net.ipv6.conf.${conf}.disable_ipv6=1`]);
  nsx(SINK, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  for (const conf of ['all', 'default', 'sink1']) nsx(SINK, ['sysctl', '-qw', `net.ipv4.conf.${conf}.rp_filter=0`]);
  sh('ip', ['-n', SINK, 'route', 'add', '10.77.0.9/32', 'dev', 'sinkifb']);
  // rx forwards 10.77.0.9 out of sink0 (after the taps), tracking every flow
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
/** Frames the kernel delivered past each captured interface: received on rxv, sent out of sink0 (minus what each dropped). */
const linkStats = () =>
  Object.fromEntries(
    IFACES.map((dev) => {
      const st = JSON.parse(sh('ip', ['-n', RX, '-s', '-j', 'link', 'show', dev]))[0].stats64;
      return [dev, dev === 'rxv' ? st.rx.packets - st.rx.dropped : st.tx.packets - st.tx.dropped];
    }),
  );
/**
 * With `--pin` (the default on 2+ CPUs) the sender (and the forwarding it drives, in its softirq)
 * runs on CPU 0 and the observer, tcpdump or journey with all its processes, on CPU 1: on a Docker
 * host the traffic does not come from the observer's core, and unpinned the observer's CPU slows
 * the sender itself, so the rate measured would be the sender's. `--no-pin` shares both CPUs.
 */
const PIN = !args.includes('--no-pin') && (await import('node:os')).cpus().length >= 2;
const observerPin = PIN ? ['taskset', '-c', '1'] : [];
const flood = (bin, rate) =>
  floodFrom(bin, {
    netns: TX,
    dst: '10.77.0.9',
    rate,
    seconds: SECONDS,
    flows: FLOWS,
    spread: SPREAD,
    newPerSecond: NEW_PER_SECOND,
    ...(PIN ? { cpu: 0 } : {}),
  });

/** `--node-args "--cpu-prof --cpu-prof-dir=/tmp/prof"` (or --perf-basic-prof): flags for journey's node, to profile the run. */
const NODE_ARGS = (opt('node-args', '') ?? '').split(' ').filter(Boolean);
const journeyArgv = () => [
  ...observerPin,
  'node',
  ...NODE_ARGS,
  join(root, 'dist/src/cli/main.js'),
  'watch',
  '--json',
  '--netns',
  RX,
  ...IFACES.flatMap((i) => ['-i', i]),
  '--no-docker',
  '--no-explain-flows',
  ...(args.includes('--no-kernel') ? ['--no-kernel'] : []),
  '--stats-interval',
  '0',
  FILTER,
];
const tcpdumpArgv = (iface) => [
  ...observerPin,
  'nsenter',
  `--net=/var/run/netns/${RX}`,
  '--',
  'tcpdump',
  '-i',
  iface,
  '-p',
  '-n',
  '-B',
  '8192',
  '-w',
  '/dev/null',
  FILTER,
];

/** What journey told the user on stderr during a trial that explains a loss (conntrack events the kernel dropped), each kind once with its count. */
function journeyNotices(err) {
  const counts = new Map();
  for (const line of err.split('\n')) {
    const m = /conntrack netlink: the kernel dropped events|E_CONNTRACK[^\n]*/.exec(line);
    if (m) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  }
  return [...counts].map(([what, n]) => `${what} (x${n})`);
}

async function trial(tool, bin, rate) {
  // every trial starts from an empty conntrack table: all the flood's tuples are new connections at
  // its start (the hardest moment for journey), whatever the trials before it left for 30 s
  nsx(RX, ['conntrack', '-F'], { stdio: 'ignore' });
  const sockets0 = packetSockets();
  const outFile = join(dir, `${tool}-${rate}.jsonl`);
  const outFd = openSync(outFile, 'w');
  // tcpdump: one process per interface (as a user would run it); journey: one watch on all of them
  const argvs = tool === 'tcpdump' ? IFACES.map(tcpdumpArgv) : [journeyArgv()];
  const children = argvs.map((argv) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', tool === 'tcpdump' ? 'ignore' : outFd, 'pipe'] });
    const c = { child, err: '' };
    child.stderr.on('data', (d) => (c.err += d));
    return c;
  });
  closeSync(outFd);
  const ready = tool === 'tcpdump' ? /listening on/ : /capture statistics|capturing on|E_/;
  for (let i = 0; i < 200 && !children.every((c) => ready.test(c.err)); i++) await sleep(50);
  // the capture counts from when its packet sockets exist: wait for them (a loaded machine may open
  // them well after the start notice), or the frames sent before would look like uncounted loss
  for (let i = 0; i < 300 && packetSockets() < sockets0 + IFACES.length; i++) await sleep(50);
  await sleep(tool === 'tcpdump' ? 300 : 1500);
  const s0 = linkStats();
  const f = await flood(bin, rate);
  await sleep(1500);
  const s1 = linkStats();
  await Promise.all(
    children.map(async ({ child }) => {
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await Promise.race([done, sleep(15000)]);
    }),
  );
  // journey's own account at stop (the last capture.stats event's loss per interface): where each frame went
  const acct = new Map();
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
      for (const l of JSON.parse(line).loss ?? []) acct.set(l.iface, l);
    }
  }
  const per = IFACES.map((iface) => {
    const delivered = s1[iface] - s0[iface];
    let captured;
    let kdrop;
    let own = 0;
    if (tool === 'tcpdump') {
      const err = children[IFACES.indexOf(iface)].err;
      captured = Number(/(\d+) packets? captured/.exec(err)?.[1] ?? NaN);
      kdrop = Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? NaN);
    } else {
      const m = new RegExp(
        `${iface}: (\\d+) packets received, (\\d+) dropped by kernel, (\\d+) dropped by interface, (\\d+) dropped by journey`,
      ).exec(children[0].err);
      captured = Number(m?.[1] ?? NaN);
      kdrop = Number(m?.[2] ?? NaN);
      own = Number(m?.[4] ?? NaN);
    }
    const a = acct.get(iface);
    const notShown = a ? a.notShown.nonIp + a.notShown.undecodable + a.notShown.copies + a.notShown.linkControl : 0;
    const told = a ? a.lost.kernelRing + a.lost.interface + a.lost.pipe + a.lost.holdQueue : Number.isNaN(kdrop) ? 0 : kdrop;
    // delivered past the interface, but neither shown, left out for a stated reason, counted lost, nor pending: vanished uncounted
    const uncounted = a ? delivered - a.shown - notShown - told - a.pending : delivered - captured - (Number.isNaN(kdrop) ? 0 : kdrop);
    const lost = Math.max(0, delivered - captured);
    return {
      iface,
      delivered,
      captured,
      kernelDropped: kdrop,
      ownDropped: own,
      ...(a ? { reachedPipeline: a.delivered, shown: a.shown, notShown, lostAt: a.lost, pending: a.pending } : {}),
      toldLost: told,
      lost,
      uncounted,
      ok: lost === 0 && kdrop === 0 && own === 0 && told === 0 && uncounted === 0,
    };
  });
  // no statistics from a capture (it did not exit on SIGINT in time, or printed none): this trial
  // measured nothing, which is neither a pass nor a drop
  const unmeasured = per.filter((p) => Number.isNaN(p.captured)).map((p) => p.iface);
  return {
    rate,
    achieved: Math.round(f.sent / f.elapsed),
    sent: f.sent,
    ...(unmeasured.length > 0 ? { unmeasured, stderr: children.map((c) => c.err.trim().split('\n').slice(-3).join(' | ')).join(' || ') } : {}),
    interfaces: per,
    ...(tool === 'journey'
      ? {
          flows,
          withoutCt,
          // journey's own count at stop: packets that found no conntrack entry (shown as flows without one)
          packetsWithoutCt: Number(/(\d+) without conntrack entry/.exec(children[0].err)?.[1] ?? NaN),
          notices: journeyNotices(children[0].err),
        }
      : {}),
    uncounted: per.reduce((n, p) => n + p.uncounted, 0),
    ok: per.every((p) => p.ok) && withoutCt === 0,
  };
}

let dir = '';
const results = { tcpdump: { trials: [], maxZeroDrop: 0, failed: false }, journey: { trials: [], maxZeroDrop: 0, failed: false } };
dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'journey-c2bench-'));
try {
  const bin = setup(dir);
  for (const rate of RATES) {
    for (const tool of ['tcpdump', 'journey']) {
      if (results[tool].failed || Date.now() > DEADLINE) continue;
      let r = await trial(tool, bin, rate);
      // a trial without statistics is run again (twice at most); still none, the ladder stops there for that tool
      for (let again = 0; again < 2 && r.unmeasured; again++) {
        log(`${tool} ${rate} pps: no statistics from ${r.unmeasured.join(', ')} (${r.stderr}); again`);
        r = await trial(tool, bin, rate);
      }
      results[tool].trials.push(r);
      if (r.unmeasured) {
        log(`${tool} ${rate} pps: no statistics from ${r.unmeasured.join(', ')} three times: the ladder stops here for ${tool}`);
        results[tool].failed = true;
        results[tool].unmeasuredAt = rate;
        continue;
      }
      const where = r.interfaces
        .map((p) =>
          p.lostAt
            ? `${p.iface}: delivered ${p.delivered} (captured ${p.captured}, reached the pipeline ${p.reachedPipeline}) = shown ${p.shown} + not flows ${p.notShown} + lost (ring ${p.lostAt.kernelRing}, interface ${p.lostAt.interface}, pipe ${p.lostAt.pipe}, hold queue ${p.lostAt.holdQueue}) + pending ${p.pending} + uncounted ${p.uncounted}`
            : `${p.iface}: delivered ${p.delivered} = captured ${p.captured} + kernel-drop ${p.kernelDropped} + uncounted ${p.uncounted}`,
        )
        .join('; ');
      const ct =
        r.flows !== undefined
          ? `; flows ${r.flows} (${Math.round(r.flows / SECONDS)} new a second), without conntrack ${r.withoutCt} (${r.packetsWithoutCt} packets)${r.notices.length > 0 ? `; journey said: ${r.notices.join(' | ')}` : ''}`
          : '';
      log(`${tool.padEnd(8)} ${String(rate).padStart(7)} pps: sent ${r.sent} (${r.achieved} pps) ${where}${ct} ${r.ok ? 'OK' : 'DROPS'}`);
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
    `${FLOWS} flows${SPREAD > 1 ? ` interleaved (--spread ${SPREAD})` : ' in runs'}${NEW_PER_SECOND > 0 ? `, ${NEW_PER_SECOND} new a second` : ''}, ${IFACES.join(' + ')}, ${PIN ? 'sender on CPU 0, observer on CPU 1' : 'CPUs shared'}; load ${(
      await import('node:os')
    )
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}; uncounted at any step: ${Math.max(0, ...results.journey.trials.map((t) => Math.abs(t.uncounted)))}\n` +
      `highest zero-drop rate: journey watch --json ${results.journey.maxZeroDrop} pps, tcpdump -w /dev/null ${results.tcpdump.maxZeroDrop} pps (ratio ${ratio}; ladder ${RATES.join(',')}${results.tcpdump.unmeasuredAt ? `, tcpdump unmeasured at ${results.tcpdump.unmeasuredAt} pps: its figure is a lower bound` : results.tcpdump.failed ? '' : ', tcpdump never dropped: the ladder top bounds its figure'})`,
  );
}
