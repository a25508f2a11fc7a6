#!/usr/bin/env node
/**
 * Explain benchmark: time per packet of `explainPacket` (compiled ruleset, no cache) on Docker
 * rulesets and on a synthetic 10,000-rule ruleset, against one pass of a packet through the kernel
 * with the same 10,000 rules, measured in the same run.
 *
 *   sudo node scripts/bench/explain.mjs [--packets 20000] [--json]
 *
 * Simulator: Docker 28 iptables golden and Docker 29 nft golden (the standard probes: published
 * port, hairpin, self-hairpin, outbound, direct access, host-local; distinct source ports), and the
 * synthetic ruleset: filter OUTPUT with 10,000 non-matching rules (`-s 10.a.b.c/32 -p udp --dport N
 * -j DROP`) that a local UDP packet to 127.0.0.1:9 traverses entirely.
 * Kernel reference: a scratch namespace (jl-b-bench-<pid>) loaded with the same ruleset by
 * iptables-restore (iptables-nft), a small C sender (explain-udp-send.c, compiled here) sending UDP
 * datagrams to 127.0.0.1:9: ns per sendto() with the 10,000 rules and with none; their difference is
 * the kernel's cost of the 10,000 rules for one packet (output, postrouting, lo, input).
 * Memory: the heap one kept explanation holds (Docker 28 golden; a live flow keeps its own).
 * Ratio = simulator time per packet / kernel time per packet (same rules), medians of 3 alternating
 * rounds (the load average is printed: a shared machine makes both vary). Needs root and a built
 * tree (npm run build). Bounded: about a minute.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gunzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const { parseIptablesSave } = await import(join(root, 'dist/src/ruleset/iptables-save.js'));
const { parseNftJson } = await import(join(root, 'dist/src/ruleset/nft-json.js'));
const { makeHostContext, parseIpAddr, parseIpRoute } = await import(join(root, 'dist/src/ruleset/host-context.js'));
const { compileRuleset, explainPacket } = await import(join(root, 'dist/src/explain/explain.js'));
const { explanationJson } = await import(join(root, 'dist/src/model/event-json.js'));

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const N = Number(opt('packets', '20000'));
const asJson = args.includes('--json');
const GOLDEN = process.env.JOURNEY_CORPUS ?? join(root, '..', 'shared', 'corpus', 'moby-golden');
const FIX = join(root, 'test', 'fixtures', 'ruleset');

const host = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);
const tcp = (src, sport, dst, dport) => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });
const probes = [
  (i) => ({ tuple: tcp('10.0.10.5', 1024 + (i % 60000), '10.0.10.26', 8080), iif: 'eth0' }),
  (i) => ({ tuple: tcp('192.168.0.3', 1024 + (i % 60000), '10.0.10.26', 8080), iif: 'br-dummy' }),
  (i) => ({ tuple: tcp('192.168.0.2', 1024 + (i % 60000), '10.0.10.26', 8080), iif: 'br-dummy' }),
  (i) => ({ tuple: tcp('192.168.0.2', 1024 + (i % 60000), '198.51.100.10', 80), iif: 'br-dummy' }),
  (i) => ({ tuple: tcp('10.0.10.5', 1024 + (i % 60000), '192.168.0.2', 80), iif: 'eth0' }),
  (i) => ({ tuple: tcp('', 1024 + (i % 60000), '10.0.10.26', 8080), local: true }),
];

function timeIt(fn, n) {
  for (let i = 0; i < Math.min(2000, n); i++) fn(i); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / n / 1000; // µs
}

/**
 * Heap held by one kept explanation (a live flow keeps its own), with the JSON text its events
 * put out made too (event-json's cache): heap after a full GC, 5,000 kept, over 5,000.
 */
function heldPerExplanation(make) {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  const n = 5000;
  const kept = [];
  for (let i = 0; i < 200; i++) explanationJson(make(i));
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < n; i++) {
    const ex = make(i);
    explanationJson(ex);
    kept.push(ex);
  }
  gc();
  const held = (process.memoryUsage().heapUsed - before) / n;
  kept.length = 0;
  return held;
}

const results = {};
{
  const rs = parseIptablesSave(
    readFileSync(
      join(GOLDEN, 'iptables', 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden'),
      'utf8',
    ),
  );
  const t0 = process.hrtime.bigint();
  const c = compileRuleset(rs, host);
  results.docker28CompileMs = Number(process.hrtime.bigint() - t0) / 1e6;
  results.docker28UsPerPacket = timeIt((i) => explainPacket(c, probes[i % probes.length](i)), N);
  results.docker28HeldBytes = heldPerExplanation((i) => explainPacket(c, probes[i % probes.length](i)));
}
{
  const bundle = JSON.parse(gunzipSync(readFileSync(join(FIX, 'moby-nft-goldens.json.gz'))).toString('utf8'));
  const rs = parseNftJson(bundle['hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip']);
  const c = compileRuleset(rs, host);
  results.docker29UsPerPacket = timeIt((i) => explainPacket(c, probes[i % probes.length](i)), N);
}

const RULES = 10_000;
let simSynthetic = () => NaN;
const lines = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];
for (let i = 0; i < RULES; i++)
  lines.push(`-A OUTPUT -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 -p udp -m udp --dport ${1000 + (i % 60000)} -j DROP`);
lines.push('COMMIT', '');
const synthetic = lines.join('\n');
{
  const t0 = process.hrtime.bigint();
  const rs = parseIptablesSave(synthetic, { source: 'synthetic' });
  results.syntheticParseMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const t1 = process.hrtime.bigint();
  const c = compileRuleset(rs, host);
  results.syntheticCompileMs = Number(process.hrtime.bigint() - t1) / 1e6;
  const udp = (i) => ({
    tuple: { family: 4, proto: 'udp', protoNum: 17, src: '127.0.0.1', dst: '127.0.0.1', sport: 1024 + (i % 60000), dport: 9 },
    local: true,
  });
  const ex = explainPacket(c, udp(0));
  results.syntheticStepsPerPacket = ex.steps.length;
  results.syntheticVerdict = ex.verdict;
  simSynthetic = () => timeIt((i) => explainPacket(c, udp(i)), Math.max(200, Math.floor(N / 50)));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ROUNDS = 3;

// kernel reference
const tmp = mkdtempSync(join(tmpdir(), 'jl-b-bench-'));
const ns = `jl-b-bench-${process.pid}`;
try {
  execFileSync('cc', ['-O2', '-o', join(tmp, 'send'), join(here, 'explain-udp-send.c')]);
  execFileSync('ip', ['netns', 'add', ns]);
  const inNs = (argv, input) => execFileSync('nsenter', [`--net=/var/run/netns/${ns}`, '--', ...argv], { input, encoding: 'utf8' });
  inNs(['ip', 'link', 'set', 'lo', 'up']);
  const sends = 100_000;
  const send = () => Number(inNs([join(tmp, 'send'), String(sends), '9']).trim());
  // the simulator and the kernel measured alternately, ROUNDS times; medians (the machine may be shared)
  const without = [];
  for (let r = 0; r < ROUNDS; r++) without.push(send());
  writeFileSync(join(tmp, 'rules'), synthetic);
  inNs(['iptables-restore', join(tmp, 'rules')]);
  const withRules = [];
  const sim = [];
  for (let r = 0; r < ROUNDS; r++) {
    withRules.push(send());
    sim.push(simSynthetic());
  }
  results.kernelNsPerSendNoRules = median(without);
  results.kernelNsPerSendWithRules = median(withRules);
  results.syntheticUsPerPacket = median(sim);
  results.syntheticUsPerPacketRounds = sim;
  results.kernelUsPerPacketRules = (results.kernelNsPerSendWithRules - results.kernelNsPerSendNoRules) / 1000;
  results.ratioSimToKernelRules = results.syntheticUsPerPacket / results.kernelUsPerPacketRules;
} catch (e) {
  results.kernelError = String(e.message ?? e);
} finally {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // already gone
  }
  rmSync(tmp, { recursive: true, force: true });
}
if (results.syntheticUsPerPacket === undefined) results.syntheticUsPerPacket = simSynthetic();
results.machine = `${cpus()[0]?.model ?? '?'} × ${cpus().length}, node ${process.version}, load average ${loadavg()
  .map((x) => x.toFixed(1))
  .join(' ')}`;
results.packets = N;

if (asJson) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
else {
  const f = (x, d = 1) => (typeof x === 'number' ? x.toFixed(d) : String(x));
  console.log(`machine: ${results.machine}`);
  console.log(`Docker 28 golden (iptables): ${f(results.docker28UsPerPacket, 2)} µs/packet (compile ${f(results.docker28CompileMs, 2)} ms)`);
  console.log(`Docker 29 golden (nftables): ${f(results.docker29UsPerPacket, 2)} µs/packet`);
  console.log(`held by a kept explanation (Docker 28 golden, one direction, with its events' text made): ${f(results.docker28HeldBytes, 0)} B`);
  console.log(
    `synthetic ${RULES} rules: ${f(results.syntheticUsPerPacket)} µs/packet (${results.syntheticStepsPerPacket} steps, ${results.syntheticVerdict}; parse ${f(results.syntheticParseMs)} ms, compile ${f(results.syntheticCompileMs)} ms)`,
  );
  if (results.kernelError) console.log(`kernel reference failed: ${results.kernelError}`);
  else {
    console.log(
      `kernel, same ${RULES} rules: ${f(results.kernelUsPerPacketRules, 2)} µs/packet (sendto ${f(results.kernelNsPerSendWithRules, 0)} ns with the rules, ${f(results.kernelNsPerSendNoRules, 0)} ns without)`,
    );
    console.log(`ratio simulator / kernel for the ${RULES} rules: ${f(results.ratioSimToKernelRules, 2)}×`);
  }
}
