// Shared by export-ipfix.mjs and export-nats.mjs: the events (the recorded lab replay's, repeated
// with distinct flow ids and ports), the reference (the same events written by `watch --json`'s
// JSON lines writer to /dev/null, in the same run), and collectors started on loopback.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/watch/default/');
export const dist = (p) => import(join(ROOT, 'dist/src', p));
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `n` events made from the replay's events of `types`, each copy with its own flow id and source port. */
export async function benchEvents(n, types) {
  const { startPipeline } = await dist('pipeline/pipeline.js');
  const p = await startPipeline({
    read: [`${FIX}eth0.pcap`, `${FIX}docker0.pcap`],
    conntrackSnapshot: `${FIX}conntrack.txt`,
    dockerSnapshot: `${FIX}docker.json`,
    rulesetFiles: { iptablesSave: [`${FIX}iptables-save.txt`], addrs: `${FIX}addrs.json`, routes: `${FIX}routes.json` },
  });
  const base = [];
  for await (const ev of p) if (types.includes(ev.type)) base.push(ev);
  const out = [];
  for (let i = 0; out.length < n; i++) {
    const ev = base[i % base.length];
    const copy = Math.floor(i / base.length);
    const sport = 1024 + (copy % 60000);
    const flow = ev.flow ? { ...ev.flow, id: `${ev.flow.id}-${copy}`, orig: { ...ev.flow.orig, sport } } : undefined;
    out.push({ ...ev, seq: i + 1, ...(flow ? { flow } : {}) });
  }
  return out;
}

/** The reference: events/s of the JSON lines writer of `watch --json` to /dev/null. */
export async function jsonReference(events) {
  const { JsonLinesWriter } = await dist('output/jsonl.js');
  const out = createWriteStream('/dev/null');
  const w = new JsonLinesWriter(out);
  const t0 = performance.now();
  for (const ev of events) w.write(ev);
  await w.flush();
  await new Promise((r) => out.end(r));
  const s = (performance.now() - t0) / 1000;
  return { perSecond: events.length / s, seconds: s, lost: w.lost };
}

export async function freeTcpPort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const p = srv.address().port;
  await new Promise((r) => srv.close(r));
  return p;
}

/** A daemon on loopback; resolves when `ready` shows in its output. */
export async function daemon(cmd, args, ready) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  child.on('error', (e) => (log += String(e)));
  for (let i = 0; i < 100 && !ready.test(log); i++) await sleep(100);
  if (!ready.test(log)) throw new Error(`${cmd} did not start (run scripts/setup as root): ${log}`);
  return {
    log: () => log,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
    },
  };
}

export function tempDir(name) {
  const d = mkdtempSync(join(tmpdir(), `journey-bench-${name}-`));
  return { dir: d, remove: () => rmSync(d, { recursive: true, force: true }) };
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
