#!/usr/bin/env node
/**
 * Conntrack events per second delivered to JavaScript: journey's netlink source (native addon)
 * against `conntrack -E` (conntrack-tools, the reference) for the same burst, in the same run.
 *
 *   sudo node scripts/bench/native-conntrack.mjs [--flows 20000] [--rounds 2] [--json]
 *
 * Two throwaway namespaces (jl-d-ctb-a -> jl-d-ctb-b, conntrack on in b via a `ct state` rule).
 * A raw-socket sender (native-flows.c, compiled here) opens --flows new UDP connections as fast as
 * it can; b's conntrack makes one entry each, then `conntrack -F` destroys them all. A consumer
 * (one at a time: the native source, then the tool, both with an 8 MiB socket buffer) counts NEW and
 * DESTROY events until all arrived or 5 s of silence. Reports events/s delivered (burst start to last
 * event), events missing, and overruns reported (ENOBUFS; the native source then re-lists the table). Needs root and a built tree. Bounded (< 1 minute).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const args = process.argv.slice(2);
const opt = (n, d) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : d;
};
const FLOWS = Math.min(100000, Math.max(100, Number(opt('flows', '20000'))));
const ROUNDS = Math.min(5, Math.max(1, Number(opt('rounds', '2'))));
const JSON_OUT = args.includes('--json');
const log = (m) => process.stderr.write(`bench native-conntrack: ${m}\n`);
if (process.getuid?.() !== 0) {
  log('needs root');
  process.exit(2);
}
const { createNetlinkConntrackSource } = await import(join(root, 'dist/src/conntrack/netlink-source.js'));

const A = 'jl-d-ctb-a';
const B = 'jl-d-ctb-b';
const sh = (argv, input) => execFileSync(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], input }).toString();
const teardown = () => {
  for (const ns of [A, B]) {
    try {
      sh(['ip', 'netns', 'del', ns]);
    } catch {
      // absent
    }
  }
};
function setup() {
  teardown();
  for (const ns of [A, B]) {
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
  sh(['ip', 'link', 'add', 'jdc-a', 'netns', A, 'type', 'veth', 'peer', 'name', 'jdc-b', 'netns', B]);
  sh(['ip', '-n', A, 'addr', 'add', '10.78.0.1/16', 'dev', 'jdc-a']);
  sh(['ip', '-n', B, 'addr', 'add', '10.78.0.2/16', 'dev', 'jdc-b']);
  sh(['ip', '-n', A, 'link', 'set', 'jdc-a', 'up']);
  sh(['ip', '-n', B, 'link', 'set', 'jdc-b', 'up']);
  sh(
    ['ip', 'netns', 'exec', B, 'nft', '-f', '-'],
    'table ip jdct {\n chain in { type filter hook input priority 0; policy accept;\n  ct state new counter\n }\n}\n',
  );
  // a static neighbour: raw sends must not wait in the ARP queue
  const mac = sh(['ip', 'netns', 'exec', B, 'cat', '/sys/class/net/jdc-b/address']).trim();
  sh(['ip', '-n', A, 'neigh', 'replace', '10.78.0.2', 'lladdr', mac, 'dev', 'jdc-a', 'nud', 'permanent']);
}

function burst(bin) {
  return Number(sh(['ip', 'netns', 'exec', A, bin, '10.78.0.1', '10.78.0.2', '9', String(FLOWS)]).trim());
}

/** Runs a burst + flush while `consumer` counts; resolves with its numbers. */
async function measure(bin, kind) {
  let neu = 0;
  let destroy = 0;
  let first = 0;
  let last = 0;
  let overruns = 0;
  const seen = (type) => {
    const now = performance.now();
    if (!first) first = now;
    last = now;
    if (type === 'new') neu++;
    else if (type === 'destroy') destroy++;
  };
  let stop;
  if (kind === 'native') {
    const src = createNetlinkConntrackSource({ netns: B });
    await src.start(
      (evs) => {
        for (const e of evs) seen(e.type);
      },
      (err) => {
        if (/ENOBUFS/.test(err.message)) overruns++;
      },
    );
    stop = () => src.stop();
  } else {
    const p = spawn('ip', ['netns', 'exec', B, 'conntrack', '-E', '-b', String(8 << 20), '-e', 'NEW,DESTROY', '-o', 'id'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let rest = '';
    p.stdout.on('data', (b) => {
      const text = rest + b.toString();
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) seen(l.includes('[NEW]') ? 'new' : l.includes('[DESTROY]') ? 'destroy' : '');
    });
    p.stderr.on('data', (b) => {
      if (/ENOBUFS|No buffer space/i.test(b.toString())) overruns++;
    });
    await new Promise((r) => setTimeout(r, 300));
    stop = async () => {
      p.kill('SIGTERM');
      await new Promise((r) => p.on('close', r));
    };
  }
  const t0 = performance.now();
  const sent = burst(bin);
  sh(['ip', 'netns', 'exec', B, 'conntrack', '-F']);
  const deadline = Date.now() + 20_000;
  let lastSeen = -1;
  let quietSince = Date.now();
  while (Date.now() < deadline && (neu < sent || destroy < sent)) {
    await new Promise((r) => setTimeout(r, 100));
    if (neu + destroy !== lastSeen) {
      lastSeen = neu + destroy;
      quietSince = Date.now();
    } else if (Date.now() - quietSince > 5000) break;
  }
  await stop();
  // from the start of the burst to the last event: what reached JS per second, losses included
  const secs = Math.max(1e-3, ((last || t0) - t0) / 1000);
  return {
    kind,
    sent,
    new: neu,
    destroy,
    delivered: neu + destroy,
    missing: Math.max(0, 2 * sent - neu - destroy),
    overruns,
    eventsPerSec: (neu + destroy) / secs,
    firstEventMs: first ? first - t0 : null,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'jn-ctbench-'));
const runs = [];
try {
  setup();
  const bin = join(dir, 'flows');
  sh(['cc', '-O2', '-o', bin, join(here, 'native-flows.c')]);
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of ['native', 'conntrack-tool']) {
      const res = await measure(bin, kind);
      runs.push({ round: r, ...res });
      log(`${kind.padEnd(14)} ${Math.round(res.eventsPerSec)} events/s, ${res.missing} missing, ${res.overruns} overruns reported`);
    }
  }
} finally {
  teardown();
  rmSync(dir, { recursive: true, force: true });
}
const avg = (k, key) => {
  const xs = runs.filter((x) => x.kind === k).map((x) => x[key]);
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
};
const summary = {
  flows: FLOWS,
  rounds: ROUNDS,
  eventsPerSec: { native: Math.round(avg('native', 'eventsPerSec')), tool: Math.round(avg('conntrack-tool', 'eventsPerSec')) },
  ratioNativeToTool: +(avg('native', 'eventsPerSec') / avg('conntrack-tool', 'eventsPerSec')).toFixed(2),
  missing: { native: avg('native', 'missing'), tool: avg('conntrack-tool', 'missing') },
  runs,
};
if (JSON_OUT) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
else
  process.stdout.write(
    `conntrack events to JS, ${FLOWS} new + ${FLOWS} destroy per run, ${ROUNDS} rounds:\n` +
      `  netlink source (native)   ${summary.eventsPerSec.native} events/s, ${summary.missing.native} missing per run\n` +
      `  conntrack -E (reference)  ${summary.eventsPerSec.tool} events/s, ${summary.missing.tool} missing per run\n` +
      `  ratio native/tool         ${summary.ratioNativeToTool}\n`,
  );
