#!/usr/bin/env node
// Fuzzes what journey reads from others: mutated frames through the decoder (every link type it
// knows, the observation, the fragment table) and mutated rulesets (iptables-save text and
// `nft -j` JSON from the lab's recorded hosts) through the loaders, the compiler and the
// simulator. A crash is any exception that is not a JourneyError with a code; a hang is one item
// over --hang-ms; RSS is sampled and checked against --rss-mib. Deterministic from --seed.
//
//   node scripts/fuzz.mjs [--frames 1000000] [--rulesets 10000] [--seed N] [--rss-mib 768] [--hang-ms 2000] [--json FILE]
//
// The unit suite runs it with 100,000 frames and 5,000 rulesets (test/unit/fuzz-suite.test.ts);
// the longer run (the defaults) gives the README's figures. Needs the build (npm run build).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dist = (p) => import(join(ROOT, 'dist', 'src', p));
const { decodeBytes, observationFromView, PacketView, SkipCounters, FragmentPorts } = await dist('decode/index.js');
const { rulesetFromDumps, hostFromDumps } = await dist('ruleset/load.js');
const { compileRuleset } = await dist('netfilter/compile.js');
const { explainPacket } = await dist('explain/explain.js');
const { isJourneyError } = await dist('model/errors.js');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const FRAMES = Number(opt('frames', 1_000_000));
const RULESETS = Number(opt('rulesets', 10_000));
const SEED = Number(opt('seed', Date.now() % 2 ** 31));
const RSS_MIB = Number(opt('rss-mib', 768));
const HANG_MS = Number(opt('hang-ms', 2000));
const JSON_OUT = opt('json', undefined);

// xorshift32: the same seed gives the same run
let state = SEED >>> 0 || 1;
const rnd = () => {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 4294967296;
};
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];

const result = {
  seed: SEED,
  frames: 0,
  rulesets: 0,
  crashes: 0,
  hangs: 0,
  codedErrors: 0,
  decoded: 0,
  skipped: 0,
  maxRssMiB: 0,
  rssBoundMiB: RSS_MIB,
  seconds: 0,
  firstCrashes: [],
};
const t0 = Date.now();
const sampleRss = () => {
  const r = process.memoryUsage().rss / 1048576;
  if (r > result.maxRssMiB) result.maxRssMiB = Math.round(r);
};
const crash = (what, e, input) => {
  result.crashes++;
  if (result.firstCrashes.length < 5)
    result.firstCrashes.push({ what, error: String(e?.stack ?? e).slice(0, 600), input: String(input).slice(0, 400) });
};
const timed = (what, input, f) => {
  const s = performance.now();
  try {
    f();
  } catch (e) {
    if (isJourneyError(e) && typeof e.code === 'string') result.codedErrors++;
    else crash(what, e, input);
  }
  if (performance.now() - s > HANG_MS) {
    result.hangs++;
    if (result.firstCrashes.length < 5)
      result.firstCrashes.push({ what: `${what} (hang)`, error: `${Math.round(performance.now() - s)} ms`, input: String(input).slice(0, 400) });
  }
};

// ---------------------------------------------------------------- frames
const golden = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/decode/golden.json'), 'utf8')).frames;
const seeds = golden.map((f) => ({ lt: f.linkType, bytes: Buffer.from(f.hex, 'hex') }));
// frames of the recorded captures too (classic pcap, little-endian)
for (const name of ['c1b-eth.pcap', 'any-sll2.pcap']) {
  const b = readFileSync(join(ROOT, 'test/fixtures/pcap', name));
  const lt = b.readUInt32LE(20) & 0xffff;
  for (let o = 24; o + 16 <= b.length; ) {
    const cap = b.readUInt32LE(o + 8);
    seeds.push({ lt, bytes: b.subarray(o + 16, o + 16 + cap) });
    o += 16 + cap;
  }
}
const LINK_TYPES = [0, 1, 12, 101, 113, 228, 229, 276, 147];
const view = new PacketView();
const skips = new SkipCounters();
const frags = new FragmentPorts(4096);
const buf = Buffer.alloc(65536 + 64);

function mutateFrame(src) {
  let len = src.length;
  src.copy(buf, 0, 0, len);
  const n = 1 + int(6);
  for (let k = 0; k < n; k++) {
    switch (int(7)) {
      case 0: // flip a byte
        if (len > 0) buf[int(len)] = int(256);
        break;
      case 1: // a byte in the headers (where the lengths and versions are)
        if (len > 0) buf[int(Math.min(len, 80))] = pick([0, 1, 0x7f, 0x80, 0xff, 0x45, 0x60, 0x06, 0x11, 0x2c, int(256)]);
        break;
      case 2: // truncate
        len = int(len + 1);
        break;
      case 3: // extend with garbage
        for (let e = int(64); e > 0 && len < buf.length; e--) buf[len++] = int(256);
        break;
      case 4: // a 16-bit field to an extreme (IP total length, ports, ethertype)
        if (len > 2) buf.writeUInt16BE(pick([0, 1, 0xffff, 0x8100, 0x86dd, 0x0800, 0x88a8, 20, 40]), int(len - 1));
        break;
      case 5: // duplicate a slice (stacked VLAN tags, extension headers)
        if (len > 8 && len < buf.length - 64) {
          const a = int(len - 4);
          const l = Math.min(4 + int(16), len - a);
          buf.copy(buf, a + l, a, len);
          len += l;
        }
        break;
      default: // set the fragment bits
        if (len > 22) buf[20] = int(256);
    }
  }
  return len;
}

for (let i = 0; i < FRAMES; i++) {
  const s = pick(seeds);
  const len = mutateFrame(s.bytes);
  const lt = rnd() < 0.85 ? s.lt : pick(LINK_TYPES);
  const s0 = performance.now();
  try {
    if (decodeBytes(buf, 0, len, lt, view, skips)) {
      result.decoded++;
      const o = observationFromView(view, 'fuzz', i);
      if (o !== undefined && o.fragment !== undefined) frags.join(o);
    } else result.skipped++;
  } catch (e) {
    crash('frame', e, `lt=${lt} ${buf.subarray(0, len).toString('hex')}`);
  }
  if (performance.now() - s0 > HANG_MS) result.hangs++;
  result.frames++;
  if ((i & 0xffff) === 0) sampleRss();
}
sampleRss();

// ---------------------------------------------------------------- rulesets
const labDir = join(ROOT, 'test/fixtures/ruleset/lab');
const hosts = readdirSync(labDir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(labDir, f), 'utf8')));
const TOKENS = [
  '-j',
  '-g',
  'ACCEPT',
  'DROP',
  'RETURN',
  'DOCKER',
  'FORWARD',
  '-A',
  ':X - [0:0]',
  '-m',
  'conntrack',
  '--ctstate',
  'tcp',
  '-p',
  '--dport',
  '65536',
  '-1',
  '0/0',
  '::/0',
  '"',
  '\\',
  '!',
  '-i',
  'docker0+',
  'COMMIT',
  '*nat',
  '*filter',
  'MASQUERADE',
  'DNAT',
  '--to-destination',
  '1.2.3.4:99999',
  '-s',
  '300.1.1.1/33',
];

function mutateText(text) {
  const lines = text.split('\n');
  const n = 1 + int(5);
  for (let k = 0; k < n; k++) {
    const i = int(lines.length);
    const l = lines[i] ?? '';
    switch (int(7)) {
      case 0:
        lines.splice(i, 1);
        break;
      case 1:
        lines.splice(i, 0, l);
        break;
      case 2: {
        const t = l.split(' ');
        t[int(t.length)] = pick(TOKENS);
        lines[i] = t.join(' ');
        break;
      }
      case 3: // a jump between two chains of the file (loops included)
        {
          const chains = lines.filter((x) => x.startsWith(':')).map((x) => x.slice(1).split(' ')[0]);
          if (chains.length > 0) lines.splice(i, 0, `-A ${pick(chains)} -j ${pick(chains)}`);
        }
        break;
      case 4:
        lines[i] = l.slice(0, int(l.length + 1));
        break;
      case 5:
        lines[i] = l.replace(/[0-9]+/, String(pick([0, -1, 65536, 4294967296, 1e21, 'x'])));
        break;
      default:
        lines.splice(i, 0, pick(TOKENS));
    }
  }
  return lines.join('\n');
}

function mutateJson(node, depth = 0) {
  if (Array.isArray(node)) {
    const a = node.map((x) => (rnd() < 0.02 ? mutateJson(x, depth + 1) : x));
    if (rnd() < 0.05 && a.length > 0) a.splice(int(a.length), 1);
    if (rnd() < 0.05 && a.length > 0) a.push(pick(a));
    return a;
  }
  if (node !== null && typeof node === 'object') {
    const o = { ...node };
    for (const k of Object.keys(o)) if (rnd() < 0.1) o[k] = mutateJson(o[k], depth + 1);
    if (rnd() < 0.03) delete o[pick(Object.keys(o))];
    return o;
  }
  switch (int(8)) {
    case 0:
      return null;
    case 1:
      return -1;
    case 2:
      return 'x'.repeat(int(50));
    case 3:
      return [node];
    case 4:
      return { jump: { target: pick(['DOCKER', 'FORWARD', 'nope', '']) } };
    case 5:
      return 2 ** 53;
    case 6:
      return {};
    default:
      return node;
  }
}

for (let i = 0; i < RULESETS; i++) {
  const h = pick(hosts);
  const d = h.dumps;
  let dumps;
  if (d.nftJson && rnd() < 0.4) {
    let j = d.nftJson;
    try {
      j = JSON.stringify(mutateJson(JSON.parse(d.nftJson)));
    } catch {
      // the recorded dump is valid JSON; mutations of it always stringify
    }
    if (rnd() < 0.05) j = j.slice(0, int(j.length));
    dumps = { ...d, nftJson: j, iptablesSave: null };
  } else dumps = { ...d, iptablesSave: mutateText(d.iptablesSave ?? ''), nftJson: rnd() < 0.5 ? null : d.nftJson };
  timed('ruleset', dumps.iptablesSave ?? dumps.nftJson, () => {
    const rs = rulesetFromDumps(dumps, 'fuzz');
    const host = hostFromDumps(h.hostDumps, 'fuzz');
    const c = compileRuleset(rs, host);
    for (const k of h.cases.slice(0, 4)) explainPacket(c, { tuple: k.tuple, iif: k.iif });
  });
  result.rulesets++;
  if ((i & 0xff) === 0) sampleRss();
}
sampleRss();
result.seconds = Math.round((Date.now() - t0) / 100) / 10;
const ok = result.crashes === 0 && result.hangs === 0 && result.maxRssMiB <= RSS_MIB;
console.log(
  `fuzz (seed ${SEED}): ${result.frames} frames (${result.decoded} decoded, ${result.skipped} counted skips), ${result.rulesets} rulesets (${result.codedErrors} coded errors); ${result.crashes} crashes, ${result.hangs} hangs, max RSS ${result.maxRssMiB} MiB (bound ${RSS_MIB}); ${result.seconds} s`,
);
for (const c of result.firstCrashes) console.log(`  ${c.what}: ${c.error}\n    input: ${c.input}`);
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(result, null, 2));
process.exit(ok ? 0 : 1);
