#!/usr/bin/env node
/**
 * Native-binding benchmark: what the eBPF programs cost the forwarding path, and how many kernel
 * events per second reach JavaScript — each against a reference measured in the same run.
 *
 *   sudo node scripts/bench/native.mjs [--seconds 3] [--rounds 5] [--modes off,empty,once,once-nat] [--sink forward|drop] [--cpu 0] [--bpf-stats] [--prefix d] [--json]
 *
 * Three throwaway namespaces: jl-<prefix>-bench-tx (10.77.1.1) -> jl-<prefix>-bench-fw (router: DNAT
 * 10.77.1.2:9 -> 10.77.3.9:9 in PREROUTING, MASQUERADE out, like a published port) -> jl-<prefix>-bench-rx.
 * `--sink forward` (the default): rx routes the packets on out of an ifb device, which consumes a
 * packet routed to it (consume_skb, no kernel drop: a forwarded packet's usual end; the `dummy`
 * module, which would do the same, is not in every kernel). `--sink drop`: the DNAT goes to
 * rx's own 10.77.2.1:9 and rx's input chain drops every packet, so each one is also a kernel drop
 * (kfree_skb with a reason): journey's drop program, which the kernel runs for every drop on the
 * host whatever its namespace, runs once a packet there.
 * A paced C sender (scripts/bench/capture-flood.c, compiled here) floods 60-byte UDP frames as fast
 * as it can; the rate is what rx receives (its veth rx_packets) per second. Modes, interleaved:
 *   - off:      nothing attached (the reference);
 *   - empty:    a program that does nothing (scripts/bench/nf-empty.c) linked at the same hook
 *               points: what the kernel charges for a netfilter BPF link at all;
 *   - filtered: drops + the netfilter hook programs attached in fw, user filter matching nothing
 *               (the programs run on every packet, nothing reaches user space);
 *   - hooks:    "once" without the drop program (the receiver's drops, one per packet here, cost
 *               nothing then): the netfilter programs' share alone (not in the default modes);
 *   - once:     no filter, the default reporting (a connection once per hook point and direction,
 *               again when its conntrack status changes: decided in the kernel);
 *   - all:      no filter, everyPacket: every packet yields a hook event at each point it
 *               passes, all delivered to JS (events/s delivered, and events the ring buffer had no
 *               room for, counted);
 *   - empty-nat, once-nat: empty and once with the 'nat' hook plan (both sides of each NAT and
 *               after the forward filter: 5 links a forwarded packet) instead of journey's default
 *               'after-nat' (2 links: prerouting -99, postrouting 101), which the other modes use.
 * Modes alternate within each round (the order reversed every other round); each mode's ratio is
 * taken to the "off" of its own round and the median over rounds is reported, with the load
 * average. --bpf-stats turns kernel.bpf_stats_enabled on for the run (restored after) and reports
 * each program's ns per run and the programs' ns per forwarded packet (bpftool prog show).
 * Needs root and a built tree (npm run build). Bounded: each measurement lasts --seconds; the
 * whole run stops by itself in a few minutes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
};
const SECONDS = Math.min(10, Math.max(1, Number(opt('seconds', '3'))));
const ROUNDS = Math.min(15, Math.max(1, Number(opt('rounds', '5'))));
const MODE_NAMES = ['off', 'empty', 'empty-nat', 'filtered', 'hooks', 'once', 'once-nat', 'all'];
const MODES = opt('modes', 'off,empty,filtered,once,all').split(',');
for (const m of MODES) if (!MODE_NAMES.includes(m)) throw new Error(`unknown mode ${m} (${MODE_NAMES.join(', ')})`);
if (!MODES.includes('off')) MODES.unshift('off');
const BPF_STATS = args.includes('--bpf-stats');
const SINK = opt('sink', 'forward');
if (SINK !== 'forward' && SINK !== 'drop') throw new Error(`--sink forward|drop, not ${SINK}`);
const TARGET = SINK === 'drop' ? '10.77.2.1' : '10.77.3.9';
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';
const JSON_OUT = args.includes('--json');
/** The CPU the sender (and so the forwarding of its packets) runs on: `--cpu N`, default 0. */
const PIN_CPU = Math.max(0, Number(opt('cpu', '0')) | 0);
const log = (m) => process.stderr.write(`bench native: ${m}\n`);

if (process.getuid?.() !== 0) {
  log('needs root (network namespaces, eBPF)');
  process.exit(2);
}
const { openKernelEvents, nativeAvailability, hookPlan } = await import(join(root, 'dist/src/native/index.js'));
/** The hook plan of a mode: the "-nat" modes use the 'nat' plan, the others journey's default. */
const planOf = (mode) => (mode.endsWith('-nat') ? 'nat' : 'after-nat');
const avail = nativeAvailability();
if (!avail.available) {
  log(`native addon unavailable: ${avail.reason}`);
  process.exit(2);
}

// --prefix (default d, or JOURNEY_TEST_LAB_PREFIX) keeps concurrent runs on one machine apart
const PREFIX = opt('prefix', process.env.JOURNEY_TEST_LAB_PREFIX || 'd');
if (!/^[a-z0-9]{1,4}$/.test(PREFIX)) throw new Error(`bad --prefix ${PREFIX}`);
const NS = { tx: `jl-${PREFIX}-bench-tx`, fw: `jl-${PREFIX}-bench-fw`, rx: `jl-${PREFIX}-bench-rx` };
const sh = (argv, input) => execFileSync(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], input }).toString();
const nsx = (ns, argv) => sh(['ip', 'netns', 'exec', ns, ...argv]);

function teardown() {
  for (const ns of Object.values(NS)) {
    try {
      sh(['ip', 'netns', 'del', ns]);
    } catch {
      // absent
    }
  }
}

function setup() {
  teardown();
  for (const ns of Object.values(NS)) {
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
  sh(['ip', 'link', 'add', 'jdb-tx', 'netns', NS.tx, 'type', 'veth', 'peer', 'name', 'jdb-fw1', 'netns', NS.fw]);
  sh(['ip', 'link', 'add', 'jdb-fw2', 'netns', NS.fw, 'type', 'veth', 'peer', 'name', 'jdb-rx', 'netns', NS.rx]);
  sh(['ip', '-n', NS.tx, 'addr', 'add', '10.77.1.1/24', 'dev', 'jdb-tx']);
  sh(['ip', '-n', NS.fw, 'addr', 'add', '10.77.1.2/24', 'dev', 'jdb-fw1']);
  sh(['ip', '-n', NS.fw, 'addr', 'add', '10.77.2.2/24', 'dev', 'jdb-fw2']);
  sh(['ip', '-n', NS.rx, 'addr', 'add', '10.77.2.1/24', 'dev', 'jdb-rx']);
  for (const [ns, dev] of [
    [NS.tx, 'jdb-tx'],
    [NS.fw, 'jdb-fw1'],
    [NS.fw, 'jdb-fw2'],
    [NS.rx, 'jdb-rx'],
  ])
    sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
  sh(['ip', '-n', NS.rx, 'route', 'add', 'default', 'via', '10.77.2.2']);
  nsx(NS.fw, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  sh(
    ['ip', 'netns', 'exec', NS.fw, 'nft', '-f', '-'],
    'table ip jdbench {\n' +
      ` chain pre { type nat hook prerouting priority -100; policy accept;\n  ip daddr 10.77.1.2 udp dport 9 dnat to ${TARGET}:9\n }\n` +
      ' chain post { type nat hook postrouting priority 100; policy accept;\n  oifname "jdb-fw2" masquerade\n }\n}\n',
  );
  if (SINK === 'drop') {
    // rx answers nothing: drop quietly so no ICMP errors travel back
    sh(
      ['ip', 'netns', 'exec', NS.rx, 'nft', '-f', '-'],
      'table ip jdbench {\n chain in { type filter hook input priority 0; policy accept;\n  udp dport 9 drop\n }\n}\n',
    );
    return;
  }
  // fw routes 10.77.3.0/24 to rx, rx on out of an ifb device (no neighbours, every packet consumed)
  sh(['ip', '-n', NS.fw, 'route', 'add', '10.77.3.0/24', 'via', '10.77.2.1']);
  nsx(NS.rx, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  sh(['ip', '-n', NS.rx, 'link', 'add', 'jdb-sink', 'type', 'ifb']);
  sh(['ip', '-n', NS.rx, 'link', 'set', 'jdb-sink', 'up']);
  sh(['ip', '-n', NS.rx, 'route', 'add', '10.77.3.0/24', 'dev', 'jdb-sink']);
}

function rxPackets() {
  return Number(nsx(NS.rx, ['cat', '/sys/class/net/jdb-rx/statistics/rx_packets']).trim());
}

function compile(dir, name) {
  const bin = join(dir, name);
  sh(['cc', '-O2', '-o', bin, join(here, `${name}.c`)]);
  return bin;
}

/** Per program id: name, run_cnt, run_time_ns (bpftool; the counters run only with bpf stats on). */
function progStats() {
  const out = new Map();
  for (const p of JSON.parse(sh(['bpftool', 'prog', 'show', '--json']))) {
    if (typeof p.name === 'string' && p.name.startsWith('jn_')) out.set(p.id, { name: p.name, runs: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0 });
  }
  return out;
}

/** The ids of the programs that appeared since `before`: taken right after this measurement
 * loaded its own, so another session opening later on the shared machine is not counted. */
function newProgIds(before) {
  return [...progStats().keys()].filter((id) => !before.has(id));
}

/** The do-nothing program linked at the journey's hook points in fw, until the returned stop(). */
function linkEmpty(bin, plan) {
  const pf = { 4: 2, 6: 10 };
  const hook = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 };
  const points = hookPlan(plan).map((p) => `${pf[p.family]}:${hook[p.hook]}:${p.priority}`);
  const p = spawn('ip', ['netns', 'exec', NS.fw, bin, ...points], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (b) => (err += b));
  return new Promise((resolve, reject) => {
    p.on('close', (code) => reject(new Error(`nf-empty exited ${code}: ${err.trim()}`)));
    p.stdout.once('data', () =>
      resolve(
        () =>
          new Promise((done) => {
            p.removeAllListeners('close');
            p.on('close', done);
            p.stdin.end();
          }),
      ),
    );
  });
}

function flood(bin, seconds) {
  return new Promise((resolve, reject) => {
    // pinned: the sender's CPU also forwards its packets (softirq), so every mode runs on the same one
    const p = spawn('taskset', ['-c', String(PIN_CPU), 'ip', 'netns', 'exec', NS.tx, bin, '10.77.1.2', '9', '5000000', String(seconds)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (b) => (out += b));
    const t = setTimeout(() => p.kill('SIGKILL'), (seconds + 10) * 1000);
    p.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) resolve(Number(out.trim().split(/\s+/)[0] ?? 0));
      else reject(new Error(`flood exited ${code}`));
    });
  });
}

async function measure(bins, mode) {
  let k = null;
  let stopEmpty = null;
  let delivered = 0;
  const progsBefore = BPF_STATS ? progStats() : null;
  if (mode.startsWith('empty')) stopEmpty = await linkEmpty(bins.empty, planOf(mode));
  else if (mode !== 'off') {
    const filter = mode === 'filtered' ? { proto: 'tcp', port: 1 } : undefined;
    k = await openKernelEvents({
      netns: NS.fw,
      ...(filter ? { filter } : {}),
      everyPacket: mode === 'all',
      hooks: planOf(mode),
      drops: mode !== 'hooks',
    });
    if (k.lost.length) throw new Error(`eBPF refused: ${k.lost.join('; ')}`);
    k.onHook((h) => (delivered += h.length));
    k.onDrop((d) => (delivered += d.length));
  }
  const ours = progsBefore ? newProgIds(progsBefore) : [];
  const before = rxPackets();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const sent = await flood(bins.flood, SECONDS);
  await new Promise((r) => setTimeout(r, 200));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const got = rxPackets() - before;
  const st = k ? k.stats() : null;
  const now = progsBefore ? progStats() : new Map();
  const progs = ours.filter((id) => now.has(id)).map((id) => now.get(id));
  if (k) await k.stop();
  if (stopEmpty) await stopEmpty();
  const progNs = progs.reduce((a, p) => a + p.ns, 0);
  return {
    mode,
    sent,
    received: got,
    pps: got / SECONDS,
    eventsPerSec: delivered / secs,
    lostInKernel: st ? st.lostInKernel : 0,
    batches: st ? st.batches : 0,
    jsCpuPerEventUs: delivered ? (cpu.user + cpu.system) / delivered : 0,
    load1: loadavg()[0],
    ...(BPF_STATS && mode !== 'off'
      ? {
          programs: progs.map((p) => ({ name: p.name, runs: p.runs, nsPerRun: p.runs ? +(p.ns / p.runs).toFixed(1) : 0 })),
          programNsPerForwarded: got ? +(progNs / got).toFixed(1) : 0,
        }
      : {}),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'jn-bench-'));
const results = [];
let statsBefore = null;
try {
  setup();
  const bins = { flood: compile(dir, 'capture-flood'), empty: compile(dir, 'nf-empty') };
  if (BPF_STATS) {
    statsBefore = readFileSync(STATS_SYSCTL, 'utf8').trim();
    writeFileSync(STATS_SYSCTL, '1');
  }
  log(`warm-up`);
  await flood(bins.flood, 1);
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 ? [...MODES].reverse() : MODES) {
      const res = await measure(bins, mode);
      results.push({ round: r, ...res });
      log(
        `round ${r} ${mode.padEnd(8)} ${Math.round(res.pps)} pps forwarded, load ${res.load1.toFixed(2)}` +
          (res.programs
            ? `, programs ${res.programNsPerForwarded} ns/packet (${res.programs.map((p) => `${p.name} ${p.nsPerRun}`).join(', ')} ns/run)`
            : '') +
          (mode === 'all'
            ? `, ${Math.round(res.eventsPerSec)} events/s to JS, ${res.lostInKernel} lost in kernel, ${res.jsCpuPerEventUs.toFixed(2)} us JS CPU/event`
            : ''),
      );
    }
  }
} finally {
  if (statsBefore !== null) writeFileSync(STATS_SYSCTL, statsBefore);
  teardown();
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  if (!v.length) return 0;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const of = (mode, key) => results.filter((x) => x.mode === mode).map((x) => x[key]);
/** Each round's rate of `mode` over the same round's "off". */
const ratios = (mode) =>
  results.filter((x) => x.mode === mode).map((x) => x.pps / (results.find((o) => o.mode === 'off' && o.round === x.round)?.pps || 1));
const modesRun = MODES.filter((m) => m !== 'off');
const summary = {
  sink: SINK,
  seconds: SECONDS,
  rounds: ROUNDS,
  load1: { min: +Math.min(...of('off', 'load1')).toFixed(2), max: +Math.max(...results.map((x) => x.load1)).toFixed(2) },
  forwardedPps: Object.fromEntries(MODES.map((m) => [m, Math.round(median(of(m, 'pps')))])),
  ratioToOff: Object.fromEntries(modesRun.map((m) => [m, +median(ratios(m)).toFixed(3)])),
  ratioRange: Object.fromEntries(modesRun.map((m) => [m, [+Math.min(...ratios(m)).toFixed(3), +Math.max(...ratios(m)).toFixed(3)]])),
  ...(BPF_STATS
    ? {
        programNsPerForwarded: Object.fromEntries(modesRun.map((m) => [m, +median(of(m, 'programNsPerForwarded')).toFixed(1)])),
        programNsPerRun: Object.fromEntries(
          modesRun.map((m) => {
            const names = new Map();
            for (const x of results.filter((y) => y.mode === m))
              for (const p of x.programs ?? []) if (p.runs) names.set(p.name, [...(names.get(p.name) ?? []), p.nsPerRun]);
            return [m, Object.fromEntries([...names].map(([n, v]) => [n, +median(v).toFixed(1)]))];
          }),
        ),
      }
    : {}),
  ...(MODES.includes('all')
    ? {
        eventsPerSecToJs: Math.round(median(of('all', 'eventsPerSec'))),
        lostInKernelPerRun: Math.round(median(of('all', 'lostInKernel'))),
        jsCpuPerEventUs: +median(of('all', 'jsCpuPerEventUs')).toFixed(3),
      }
    : {}),
  runs: results,
};
const LABEL = {
  empty: 'empty programs (kernel cost)',
  'empty-nat': "empty programs, 'nat' plan",
  'once-nat': "programs, once, 'nat' plan",
  filtered: 'programs, filtered out',
  hooks: 'hook programs only, once',
  once: 'programs, once per point',
  all: 'programs, all to JS',
};
if (JSON_OUT) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
else {
  const lines = [
    `forwarding through a NAT namespace (sink: ${SINK}), ${SECONDS}s x ${ROUNDS} rounds, medians, load average ${summary.load1.min}-${summary.load1.max}:`,
    `  off (reference)                ${summary.forwardedPps.off} pps`,
  ];
  for (const m of modesRun)
    lines.push(
      `  ${LABEL[m].padEnd(30)} ${summary.forwardedPps[m]} pps  (ratio ${summary.ratioToOff[m]}, rounds ${summary.ratioRange[m].join('-')})` +
        (summary.programNsPerForwarded
          ? `, programs ${summary.programNsPerForwarded[m]} ns/packet ${JSON.stringify(summary.programNsPerRun[m])} ns/run`
          : ''),
    );
  if (MODES.includes('all'))
    lines.push(
      `  events delivered to JS         ${summary.eventsPerSecToJs} /s  (${summary.lostInKernelPerRun} lost in kernel per run, counted; ${summary.jsCpuPerEventUs} us JS CPU per event)`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
}
