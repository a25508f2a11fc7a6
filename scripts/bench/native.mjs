#!/usr/bin/env node
/**
 * Native-binding benchmark: what the eBPF programs cost the forwarding path, and how many kernel
 * events per second reach JavaScript — each against a reference measured in the same run.
 *
 *   sudo node scripts/bench/native.mjs [--seconds 3] [--rounds 2] [--json]
 *
 * Three throwaway namespaces: jl-d-bench-tx (10.77.1.1) -> jl-d-bench-fw (router: DNAT
 * 10.77.1.2:9 -> 10.77.2.1:9 in PREROUTING, MASQUERADE out, like a published port) -> jl-d-bench-rx.
 * A paced C sender (scripts/bench/capture-flood.c, compiled here) floods 60-byte UDP frames as fast
 * as it can; the rate is what rx receives (its veth rx_packets) per second. Modes, interleaved:
 *   - off:      nothing attached (the reference);
 *   - filtered: drops + the 16 netfilter hook programs attached in fw, user filter matching nothing
 *               (the programs run on every packet, nothing reaches user space);
 *   - once:     no filter, the default reporting (a connection once per hook point and direction,
 *               again when its conntrack status changes: decided in the kernel);
 *   - all:      no filter, everyPacket: every packet yields 5 hook events, all delivered to JS
 *               (events/s delivered, and events the ring buffer had no room for, counted).
 * Reports rates and their ratio to "off". Needs root and a built tree (npm run build). Bounded:
 * each measurement lasts --seconds; the whole run stops by itself in well under 2 minutes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
const ROUNDS = Math.min(5, Math.max(1, Number(opt('rounds', '2'))));
const JSON_OUT = args.includes('--json');
const log = (m) => process.stderr.write(`bench native: ${m}\n`);

if (process.getuid?.() !== 0) {
  log('needs root (network namespaces, eBPF)');
  process.exit(2);
}
const { openKernelEvents, nativeAvailability } = await import(join(root, 'dist/src/native/index.js'));
const avail = nativeAvailability();
if (!avail.available) {
  log(`native addon unavailable: ${avail.reason}`);
  process.exit(2);
}

const NS = { tx: 'jl-d-bench-tx', fw: 'jl-d-bench-fw', rx: 'jl-d-bench-rx' };
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
      ' chain pre { type nat hook prerouting priority -100; policy accept;\n  ip daddr 10.77.1.2 udp dport 9 dnat to 10.77.2.1:9\n }\n' +
      ' chain post { type nat hook postrouting priority 100; policy accept;\n  oifname "jdb-fw2" masquerade\n }\n}\n',
  );
  // rx answers nothing: drop quietly so no ICMP errors travel back
  sh(
    ['ip', 'netns', 'exec', NS.rx, 'nft', '-f', '-'],
    'table ip jdbench {\n chain in { type filter hook input priority 0; policy accept;\n  udp dport 9 drop\n }\n}\n',
  );
}

function rxPackets() {
  return Number(nsx(NS.rx, ['cat', '/sys/class/net/jdb-rx/statistics/rx_packets']).trim());
}

function compileFlood(dir) {
  const bin = join(dir, 'flood');
  sh(['cc', '-O2', '-o', bin, join(here, 'capture-flood.c')]);
  return bin;
}

function flood(bin, seconds) {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', NS.tx, bin, '10.77.1.2', '9', '5000000', String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
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

async function measure(bin, mode) {
  let k = null;
  let delivered = 0;
  if (mode !== 'off') {
    const filter = mode === 'filtered' ? { proto: 'tcp', port: 1 } : undefined;
    k = await openKernelEvents({ netns: NS.fw, ...(filter ? { filter } : {}), everyPacket: mode === 'all' });
    if (k.lost.length) throw new Error(`eBPF refused: ${k.lost.join('; ')}`);
    k.onHook((h) => (delivered += h.length));
    k.onDrop((d) => (delivered += d.length));
  }
  const before = rxPackets();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const sent = await flood(bin, SECONDS);
  await new Promise((r) => setTimeout(r, 200));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const got = rxPackets() - before;
  const st = k ? k.stats() : null;
  if (k) await k.stop();
  return {
    mode,
    sent,
    received: got,
    pps: got / SECONDS,
    eventsPerSec: delivered / secs,
    lostInKernel: st ? st.lostInKernel : 0,
    batches: st ? st.batches : 0,
    jsCpuPerEventUs: delivered ? (cpu.user + cpu.system) / delivered : 0,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'jn-bench-'));
const results = [];
try {
  setup();
  const bin = compileFlood(dir);
  log(`warm-up`);
  await flood(bin, 1);
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of ['off', 'filtered', 'once', 'all']) {
      const res = await measure(bin, mode);
      results.push({ round: r, ...res });
      log(
        `${mode.padEnd(8)} ${Math.round(res.pps)} pps forwarded` +
          (mode === 'all'
            ? `, ${Math.round(res.eventsPerSec)} events/s to JS, ${res.lostInKernel} lost in kernel, ${res.jsCpuPerEventUs.toFixed(2)} us JS CPU/event`
            : ''),
      );
    }
  }
} finally {
  teardown();
  rmSync(dir, { recursive: true, force: true });
}

const avg = (mode, key) => {
  const xs = results.filter((x) => x.mode === mode).map((x) => x[key]);
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
};
const summary = {
  seconds: SECONDS,
  rounds: ROUNDS,
  forwardedPps: {
    off: Math.round(avg('off', 'pps')),
    filtered: Math.round(avg('filtered', 'pps')),
    once: Math.round(avg('once', 'pps')),
    all: Math.round(avg('all', 'pps')),
  },
  ratioToOff: {
    filtered: +(avg('filtered', 'pps') / avg('off', 'pps')).toFixed(3),
    once: +(avg('once', 'pps') / avg('off', 'pps')).toFixed(3),
    all: +(avg('all', 'pps') / avg('off', 'pps')).toFixed(3),
  },
  eventsPerSecToJs: Math.round(avg('all', 'eventsPerSec')),
  lostInKernelPerRun: Math.round(avg('all', 'lostInKernel')),
  jsCpuPerEventUs: +avg('all', 'jsCpuPerEventUs').toFixed(3),
  runs: results,
};
if (JSON_OUT) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
else {
  process.stdout.write(
    `forwarding through a NAT namespace, ${SECONDS}s x ${ROUNDS} rounds:\n` +
      `  off (reference)            ${summary.forwardedPps.off} pps\n` +
      `  programs, filtered out     ${summary.forwardedPps.filtered} pps  (ratio ${summary.ratioToOff.filtered})\n` +
      `  programs, once per point   ${summary.forwardedPps.once} pps  (ratio ${summary.ratioToOff.once})\n` +
      `  programs, all to JS        ${summary.forwardedPps.all} pps  (ratio ${summary.ratioToOff.all})\n` +
      `  events delivered to JS     ${summary.eventsPerSecToJs} /s  (${summary.lostInKernelPerRun} lost in kernel per run, counted; ${summary.jsCpuPerEventUs} us JS CPU per event)\n`,
  );
}
