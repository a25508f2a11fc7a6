#!/usr/bin/env node
/**
 * Where the time goes: the functions of a `node --cpu-prof` profile by self time, as µs per packet
 * when the number of packets the profiled run handled is given.
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof scripts/bench/pipeline-cpu.mjs --json > /tmp/prof/run.json
 *   node scripts/bench/profile-summary.mjs /tmp/prof/*.cpuprofile [--packets N | --run /tmp/prof/run.json] [--top 15] [--skip F,G] [--json]
 * `--skip` leaves functions out of the list (pipeline-cpu.mjs's reference loop `referencePass` runs its
 * own number of packets, so its µs per journey packet means nothing; its share of the time is kept).
 * `--run` reads the packet count from pipeline-cpu.mjs's --json output (its `profiledPackets`).
 * GC and idle time are listed as V8 reports them ("(garbage collector)", "(idle)", "(program)").
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const args = process.argv.slice(2);
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const files = args.filter((a, i) => a.endsWith('.cpuprofile') && !['--packets', '--run', '--top', '--skip'].includes(args[i - 1]));
if (files.length !== 1) {
  console.error('usage: profile-summary.mjs FILE.cpuprofile [--packets N | --run RUN.json] [--top 15] [--json]');
  process.exit(2);
}
const runFile = opt('--run');
const packets =
  runFile !== undefined
    ? JSON.parse(readFileSync(runFile, 'utf8')).profiledPackets
    : opt('--packets') !== undefined
      ? Number(opt('--packets'))
      : undefined;
const TOP = Number(opt('--top') ?? 15);
const SKIP = new Set((opt('--skip') ?? '').split(',').filter(Boolean));

const prof = JSON.parse(readFileSync(files[0], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const selfUs = new Map();
let totalUs = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i + 1] ?? 0; // a sample's time is the gap to the next one
  const n = byId.get(prof.samples[i]);
  if (n === undefined) continue;
  const cf = n.callFrame;
  const where = cf.url ? `${basename(cf.url)}:${cf.lineNumber + 1}` : '';
  const key = `${cf.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
  selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
  totalUs += dt;
}
const rows = [...selfUs.entries()].filter(([k]) => !SKIP.has(k.split(' ')[0])).sort((a, b) => b[1] - a[1]);
const top = rows.slice(0, TOP).map(([fn, us]) => ({
  fn,
  selfMs: +(us / 1000).toFixed(1),
  share: +((us / totalUs) * 100).toFixed(1),
  ...(packets ? { usPerPacket: +(us / packets).toFixed(4) } : {}),
}));
if (args.includes('--json')) console.log(JSON.stringify({ totalMs: totalUs / 1000, packets, top }));
else {
  console.log(`profile ${basename(files[0])}: ${(totalUs / 1000).toFixed(0)} ms sampled${packets ? `, ${packets} packets` : ''}`);
  for (const r of top)
    console.log(
      `${String(r.share).padStart(5)}%  ${String(r.selfMs).padStart(8)} ms${packets ? `  ${r.usPerPacket.toFixed(4)} µs/pkt` : ''}  ${r.fn}`,
    );
}
