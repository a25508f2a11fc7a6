/**
 * The IPv6 goldens of moby's corpus (Docker 28 `__ip6tables.golden`, Docker 29 nftables
 * `__ip6.golden`) replayed in the lab: each ruleset loaded into the lab's host namespace (no
 * dockerd; the topology read from the ruleset, the uplink fd00:10::/64), every probe of it run
 * under the kernel's trace, and `explainPacket` on the live ruleset compared with the trace step by
 * step (first and later packets) and with conntrack's NAT. Goldens with the same text are one
 * ruleset: each distinct one is replayed once.
 *
 * CI time: by default a fixed sample spread over the sorted list (every STRIDE-th distinct ruleset,
 * both backends); JOURNEY_IPV6_GOLDENS=all replays every one (scripts/ipv6-goldens runs that).
 * The test prints how many goldens and rulesets were replayed and how many packets were compared.
 * One lab id ("6g"), brought up and down once per ruleset (a replay is up in about a second).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labNames, labUp, leftovers, listProbes } from '../../lab/driver.js';
import type { KernelTrace } from '../../src/netfilter/kernel-trace.js';
import { compareProbesWithKernel } from './ipv6-helpers.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('6g');
const corpus = process.env['JOURNEY_CORPUS'] ?? fileURLToPath(new URL('../../../shared/corpus/moby-golden', import.meta.url));
const ALL = process.env['JOURNEY_IPV6_GOLDENS'] === 'all';
/** Every STRIDE-th distinct ruleset of each backend in CI. */
const STRIDE = 16;

interface Golden {
  readonly file: string;
  /** The other goldens with the same text. */
  readonly same: string[];
}

function ipv6Goldens(): { iptables: Golden[]; nft: Golden[]; files: number } {
  const pick = (dir: string, suffix: string): { list: Golden[]; files: number } => {
    const files = readdirSync(join(corpus, dir))
      .filter((f) => f.endsWith(suffix))
      .sort();
    const byHash = new Map<string, Golden>();
    for (const f of files) {
      const h = createHash('sha256')
        .update(readFileSync(join(corpus, dir, f)))
        .digest('hex');
      const g = byHash.get(h);
      if (g) g.same.push(f);
      else byHash.set(h, { file: `${dir}/${f}`, same: [] });
    }
    return { list: [...byHash.values()], files: files.length };
  };
  const ipt = pick('iptables', '__ip6tables.golden');
  const nft = pick('nftables', '__ip6.golden');
  return { iptables: ipt.list, nft: nft.list, files: ipt.files + nft.files };
}

const all = existsSync(corpus) ? ipv6Goldens() : { iptables: [], nft: [], files: 0 };
const chosen = ALL ? [...all.iptables, ...all.nft] : [...all.iptables, ...all.nft].filter((_, i) => i % STRIDE === 0);
const tally = { rulesets: 0, goldens: 0, empty: 0, probes: 0, first: 0, later: 0, nat: 0, differences: 0 };

describe(`IPv6 goldens replayed in the lab (${ALL ? 'all' : `every ${STRIDE}th distinct ruleset`})`, () => {
  beforeAll(async () => {
    await assertLabCanRun();
    await labDown(ID);
  });
  afterAll(async () => {
    await labDown(ID);
    process.stdout.write(
      `replay-ipv6-goldens: ${tally.rulesets} distinct IPv6 rulesets replayed (${tally.goldens} of the corpus's ${all.files} IPv6 goldens, ${tally.empty} of them cleaned: nothing to probe); ` +
        `${tally.probes} probes; compared ${tally.first} first packets and ${tally.later} later packets with nft monitor trace, NAT with ${tally.nat} conntrack entries; ${tally.differences} differences\n`,
    );
  });

  it('the corpus has its IPv6 goldens (74 ip6tables, 62 nftables ip6)', () => {
    expect(existsSync(corpus), `golden corpus missing at ${corpus}`).toBe(true);
    expect(all.files).toBe(136);
    expect(chosen.length).toBeGreaterThan(0);
  });

  for (const g of chosen) {
    it(`${g.file}${g.same.length ? ` (and ${g.same.length} identical)` : ''}: every probe's explained path equals the kernel's`, async () => {
      const info = await labUp({ id: ID, ruleset: join(corpus, g.file) });
      try {
        expect(info.family).toBe(6);
        const probes = listProbes('replay', info);
        if (probes.length === 0) {
          // a `cleaned` golden (every network removed): Docker's chains stay, nothing is published or routed to
          expect(g.file).toMatch(/\/cleaned,/);
          expect(info.containers).toEqual([]);
          tally.empty += 1 + g.same.length;
        }
        const traces = new Map<string, KernelTrace>();
        const r = await compareProbesWithKernel(ID, info, probes, traces, { ip6Rules: false });
        expect(r.ruleset.tables.some((t) => t.family === 'ip6')).toBe(true);
        tally.rulesets++;
        tally.goldens += 1 + g.same.length;
        tally.probes += probes.length;
        tally.first += r.first;
        tally.later += r.later;
        tally.nat += r.nat;
        tally.differences += r.bad.length;
        expect(r.bad).toEqual([]);
        expect(r.first).toBe(probes.length);
      } finally {
        await labDown(ID);
      }
      expect(await leftovers(labNames(ID))).toEqual([]);
    }, 120_000);
  }
});
