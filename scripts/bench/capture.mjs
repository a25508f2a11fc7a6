#!/usr/bin/env node
/**
 * Capture benchmark: the highest packet rate each capture path keeps with zero drops, and its CPU
 * per packet, against tcpdump measured in the same run.
 *
 *   sudo node scripts/bench/capture.mjs [--seconds 2] [--rates 50000,100000,...] [--json]
 *
 * Two throwaway namespaces (jl-c1bench-tx, jl-c1bench-rx) joined by a veth; a small C sender
 * (capture-flood.c, compiled here) floods 60-byte UDP frames at a paced rate from tx; the
 * receiver captures on its veth with filter "udp dst port 9":
 *   - tcpdump -p -w /dev/null (the reference; drops from its "dropped by kernel" line),
 *   - journey's workers, backend native (journey's libpcap addon: TPACKET_V3, whole batches to JS),
 *     backend pcap (node-pcap, TPACKET_V3, a JS callback per packet) and backend cap (immediate
 *     mode), the main process decoding every frame into a PacketView (capture + decode, as
 *     `journey watch` does).
 * A rate passes when every frame the sender sent (minus what the veth itself dropped before any
 * tap) was captured and the kernel reported no drop. The ladder stops at a tool's first failure.
 * CPU per packet: the capturing process's user+system time (all its threads: the native backend
 * drains the ring in a libuv pool thread) during the flood / packets captured.
 * Needs root and a built tree (npm run build). Bounded: stops by itself within ~4 minutes.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFlood, createVethPair, flood as floodFrom, sh, teardownNetns } from './lib-flood.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const { startCapture } = await import(join(root, 'dist/src/capture/index.js'));
const { PacketView, decodeFrame } = await import(join(root, 'dist/src/decode/index.js'));

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const SECONDS = Number(opt('seconds', '2'));
const RATES = opt('rates', '50000,100000,150000,200000,250000,300000,400000,500000,700000').split(',').map(Number);
const TOOLS = opt('tools', 'tcpdump,native,pcap,cap').split(',');
const JSON_OUT = args.includes('--json');
const BUFFER_MIB = Number(opt('buffer-mib', '8'));
const DEADLINE = Date.now() + Number(opt('budget', '240')) * 1000;
const TX = 'jl-c1bench-tx';
const RX = 'jl-c1bench-rx';
const DST = '10.77.0.9';
const FILTER = 'udp dst port 9';
const log = (...a) => process.stderr.write(`bench: ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (process.getuid?.() !== 0) {
  console.error('bench: needs root (network namespaces, capture)');
  process.exit(2);
}

const teardown = () => teardownNetns([TX, RX]);
function setup(dir) {
  createVethPair(TX, RX);
  for (const [ns, dev] of [
    [TX, 'txv'],
    [RX, 'rxv'],
    [TX, 'lo'],
    [RX, 'lo'],
  ])
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  const mac = JSON.parse(sh('ip', ['-n', RX, '-j', 'link', 'show', 'rxv']))[0].address;
  // the target is no one's address: rx (forwarding off) drops it silently after the taps
  sh('ip', ['-n', TX, 'neigh', 'add', DST, 'lladdr', mac, 'dev', 'txv', 'nud', 'permanent']);
  return buildFlood(dir);
}

function rxCounters() {
  const s = JSON.parse(sh('ip', ['-n', RX, '-s', '-j', 'link', 'show', 'rxv']))[0].stats64.rx;
  return { packets: s.packets, dropped: s.dropped };
}
/** CPU time of a process in µs, all its threads, from the scheduler (ns precision, user + system). */
function procCpuUs(pid) {
  try {
    let ns = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        /* the thread ended */
      }
    }
    return ns / 1000;
  } catch {
    return NaN;
  }
}
/** Runs the sender; the event loop stays free (journey's main process decodes while it runs). */
const flood = (bin, rate) => floodFrom(bin, { netns: TX, dst: DST, rate, seconds: SECONDS });

async function trialTcpdump(bin, rate) {
  const child = spawn(
    'nsenter',
    [`--net=/var/run/netns/${RX}`, '--', 'tcpdump', '-i', 'rxv', '-p', '-n', '-B', String(BUFFER_MIB * 1024), '-w', '/dev/null', FILTER],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  for (let i = 0; i < 100 && !/listening on/.test(err); i++) await sleep(50);
  await sleep(300);
  const c0 = rxCounters();
  const cpu0 = procCpuUs(child.pid);
  const f = await flood(bin, rate);
  await sleep(1200); // tcpdump's 1 s block timeout
  const c1 = rxCounters();
  const cpu1 = procCpuUs(child.pid);
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await done;
  const captured = Number(/(\d+) packets? captured/.exec(err)?.[1] ?? NaN);
  const kdrop = Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? NaN);
  return {
    ...f,
    captured,
    kernelDropped: kdrop,
    ownDropped: 0,
    pathDropped: c1.dropped - c0.dropped,
    wire: c1.packets - c0.packets,
    cpuUs: cpu1 - cpu0,
    mainCpuUs: 0,
  };
}

async function trialJourney(bin, rate, backend) {
  const tStart = performance.now();
  const h = await startCapture({
    netns: RX,
    interfaces: ['rxv'],
    backend,
    filter: FILTER,
    statsIntervalMs: 500,
    bufferSize: BUFFER_MIB << 20,
    watch: false,
  });
  const startMs = performance.now() - tStart;
  if (h.backend !== backend) throw new Error(`backend ${backend} asked, ${h.backend} running: ${h.fallback ?? ''}`);
  const view = new PacketView();
  let frames = 0;
  let decoded = 0;
  let pid = 0;
  h.on('iface-up', (e) => (pid = e.pid));
  let decodeNs = 0n;
  h.on('batch', (b) => {
    frames += b.count;
    const t = process.hrtime.bigint();
    for (let i = 0; i < b.count; i++) if (decodeFrame(b, i, view)) decoded++;
    decodeNs += process.hrtime.bigint() - t;
  });
  h.on('error', (e) => log(`${backend}: ${e.message}`));
  await sleep(400);
  const w0 = procCpuUs(pid);
  const m0 = procCpuUs(process.pid);
  decodeNs = 0n;
  const c0 = rxCounters();
  const f = await flood(bin, rate);
  await sleep(300);
  const c1 = rxCounters();
  const w1 = procCpuUs(pid);
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  const m1 = procCpuUs(process.pid) - m0;
  const final = await h.stop();
  const s1 = final[0];
  return {
    ...f,
    captured: frames,
    decoded,
    kernelDropped: backend === 'cap' ? NaN : s1.kernelDropped,
    ownDropped: s1.ownDropped,
    pathDropped: c1.dropped - c0.dropped,
    wire: c1.packets - c0.packets,
    cpuUs: w1 - w0,
    mainCpuUs: m1,
    decodeUs: Number(decodeNs) / 1000,
    workerStartMs: Math.round(startMs),
    workerRssKiB: rssKiB,
  };
}

const results = {};
const dir = mkdtempSync(join(tmpdir(), 'journey-bench-'));
let interrupted = false;
process.on('SIGINT', () => {
  interrupted = true;
});
try {
  const bin = setup(dir);
  const lib =
    sh('tcpdump', ['--version'])
      .split('\n')
      .find((l) => /libpcap/.test(l)) ?? '';
  log(`${lib.trim()}; ${SECONDS} s per rate; rates ${RATES.join(', ')}`);
  for (const tool of TOOLS) results[tool] = { trials: [], maxZeroDrop: 0, failed: false };
  // rates outer, tools inner: the machine's load changes hit every tool alike
  for (const rate of RATES) {
    for (const tool of TOOLS) {
      if (results[tool].failed) continue;
      if (Date.now() > DEADLINE || interrupted) break;
      const r = tool === 'tcpdump' ? await trialTcpdump(bin, rate) : await trialJourney(bin, rate, tool);
      const delivered = r.sent - r.pathDropped;
      const lost = Math.max(0, delivered - r.captured);
      const ok = lost === 0 && !(r.kernelDropped > 0) && r.ownDropped === 0;
      const achieved = Math.round(r.sent / r.elapsed);
      const cpuPerPkt = r.captured > 0 ? r.cpuUs / r.captured : NaN;
      const mainPerPkt = r.captured > 0 ? r.mainCpuUs / r.captured : NaN;
      const decodePerPkt = r.captured > 0 && r.decodeUs !== undefined ? r.decodeUs / r.captured : NaN;
      results[tool].trials.push({
        rate,
        achieved,
        ...r,
        lost,
        ok,
        cpuPerPktUs: cpuPerPkt,
        mainCpuPerPktUs: mainPerPkt,
        decodePerPktUs: decodePerPkt,
      });
      log(
        `${tool.padEnd(7)} target ${String(rate).padStart(7)} pps: sent ${r.sent} (${achieved} pps) captured ${r.captured} lost ${lost} kernel-drop ${r.kernelDropped} own-drop ${r.ownDropped} path-drop ${r.pathDropped} | cpu ${cpuPerPkt.toFixed(3)} µs/pkt${tool === 'tcpdump' ? '' : ` + main ${mainPerPkt.toFixed(3)} µs/pkt`} ${ok ? 'OK' : 'DROPS'}`,
      );
      if (ok) results[tool].maxZeroDrop = Math.max(results[tool].maxZeroDrop, achieved);
      else results[tool].failed = true;
    }
    if (Date.now() > DEADLINE || interrupted) {
      log('time budget reached: stopping');
      break;
    }
    if (TOOLS.every((t) => results[t].failed)) break;
  }
} finally {
  teardown();
  rmSync(dir, { recursive: true, force: true });
}

// CPU: each tool against tcpdump at the highest target rate both ran
const pairRate = (t) =>
  Math.max(0, ...RATES.filter((r) => results[t]?.trials.some((x) => x.rate === r) && results.tcpdump?.trials.some((x) => x.rate === r)));
const trial = (t, r) => results[t]?.trials.find((x) => x.rate === r);
const summary = { seconds: SECONDS, filter: FILTER, frameBytes: 60, bufferMiB: BUFFER_MIB, tools: {} };
for (const t of TOOLS) {
  const ref = results.tcpdump;
  const r = pairRate(t);
  const a = trial(t, r);
  const b = trial('tcpdump', r);
  const last = results[t]?.trials.at(-1);
  const total = (x, tool) => x.cpuPerPktUs + (tool === 'tcpdump' ? 0 : x.mainCpuPerPktUs);
  summary.tools[t] = {
    maxZeroDropPps: results[t]?.maxZeroDrop ?? 0,
    // no drop at the last rate tried, but the sender could not reach it: a lower bound
    senderLimited: !!(last?.ok && last.achieved < 0.95 * last.rate),
    firstDropAtPps: last && !last.ok ? last.achieved : null,
    ratioToTcpdump: ref?.maxZeroDrop ? +(results[t].maxZeroDrop / ref.maxZeroDrop).toFixed(2) : null,
    cpuAtPps: a ? a.achieved : null,
    workerCpuPerPktUs: a ? +a.cpuPerPktUs.toFixed(3) : null,
    mainCpuPerPktUs: a && t !== 'tcpdump' ? +a.mainCpuPerPktUs.toFixed(3) : null,
    cpuRatioToTcpdump: a && b ? +(total(a, t) / total(b, 'tcpdump')).toFixed(1) : null,
    // the capturing process alone (journey's worker vs tcpdump), at the same rate, and over every
    // rate both ran (median of the per-rate ratios: the machine's load hits both alike)
    workerCpuRatioToTcpdump: a && b ? +(a.cpuPerPktUs / b.cpuPerPktUs).toFixed(2) : null,
    workerCpuRatioMedian: (() => {
      const rs = (results[t]?.trials ?? [])
        .map((x) => [x, trial('tcpdump', x.rate)])
        .filter(([x, y]) => y && x.captured > 0 && y.captured > 0)
        .map(([x, y]) => x.cpuPerPktUs / y.cpuPerPktUs)
        .sort((p, q) => p - q);
      return rs.length ? +rs[Math.floor(rs.length / 2)].toFixed(2) : null;
    })(),
    // main process: pipe read + FrameBatch rebuild (the design's cost) and decoding, per packet
    mainPipeCpuPerPktUs: a && t !== 'tcpdump' ? +(a.mainCpuPerPktUs - a.decodePerPktUs).toFixed(3) : null,
    decodeCpuPerPktUs: a && t !== 'tcpdump' ? +a.decodePerPktUs.toFixed(3) : null,
    workerStartMs: a?.workerStartMs ?? null,
    workerRssMiB: a?.workerRssKiB ? +(a.workerRssKiB / 1024).toFixed(1) : null,
  };
}
if (JSON_OUT) console.log(JSON.stringify({ summary, results }));
else {
  console.log(`capture benchmark: ${SECONDS} s per rate, 60-byte UDP frames over a veth, filter "${FILTER}", ${BUFFER_MIB} MiB buffer`);
  console.log('tool      zero-drop pps  (ratio to tcpdump)  first drop at   CPU µs/pkt: capture + main(decode)  (ratio to tcpdump)  at pps');
  for (const [t, s] of Object.entries(summary.tools)) {
    console.log(
      `${t.padEnd(9)} ${String(s.maxZeroDropPps).padStart(9)}${s.senderLimited ? '+' : ' '} ${String(`(${s.ratioToTcpdump ?? '-'})`).padStart(12)}       ${String(s.firstDropAtPps ?? '-').padStart(9)}   ${String(s.workerCpuPerPktUs ?? '-').padStart(8)} + ${String(s.mainCpuPerPktUs ?? 0).padEnd(8)} ${String(`(${s.cpuRatioToTcpdump ?? '-'})`).padStart(20)}  ${s.cpuAtPps ?? '-'}`,
    );
  }
  for (const [t, s] of Object.entries(summary.tools)) {
    if (t !== 'tcpdump' && s.workerCpuRatioToTcpdump !== null) {
      console.log(
        `${t}: capture process alone ${s.workerCpuRatioToTcpdump}x tcpdump's CPU per packet at ${s.cpuAtPps} pps; median over all rates ${s.workerCpuRatioMedian}x`,
      );
    }
  }
  for (const [t, s] of Object.entries(summary.tools)) {
    if (s.workerStartMs !== null) {
      console.log(
        `${t}: worker process start ${s.workerStartMs} ms, RSS ${s.workerRssMiB} MiB; main process per packet: pipe + batch ${s.mainPipeCpuPerPktUs} µs, decode ${s.decodeCpuPerPktUs} µs`,
      );
    }
  }
  console.log('"+": no drop at the highest rate the sender reached (the sender, not the capture, was the limit).');
}
