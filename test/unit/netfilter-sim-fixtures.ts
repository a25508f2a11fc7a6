/**
 * What the netfilter simulator's unit tests share: the golden host (its addresses and routes),
 * small rulesets written as iptables-save text or as nft JSON chain specs, and a step path to
 * compare ("table chain #n verdict").
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import type { Ruleset } from '../../src/ruleset/model.js';
import { makeHostContext, parseIpAddr, parseIpRoute, type HostContext } from '../../src/ruleset/host-context.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { explainPacket, type PacketSpec } from '../../src/explain/explain.js';
import type { Explanation } from '../../src/model/explanation.js';
import type { Tuple } from '../../src/model/tuple.js';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const FIX = join(ROOT, 'test', 'fixtures', 'ruleset');
export const GOLDEN = process.env['JOURNEY_CORPUS'] ?? join(ROOT, '..', 'shared', 'corpus', 'moby-golden');

export const host: HostContext = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);

export const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({
  family: src.includes(':') || dst.includes(':') ? 6 : 4,
  proto: 'tcp',
  protoNum: 6,
  src,
  dst,
  sport,
  dport,
});

/** "table chain #n verdict" per step, policy/return as "-". */
export const path = (ex: Explanation): string[] =>
  ex.steps.map((s) => `${s.table} ${s.chain} ${s.ruleNumber === null ? '-' : `#${s.ruleNumber}`} ${s.verdict}`);

export function ipt(text: string): Ruleset {
  return parseIptablesSave(text, { source: 'test' });
}

/** A tiny nft ruleset from chain specs: base chains and rules as JSON expressions. */
export function nft(
  family: string,
  table: string,
  chains: { name: string; hook?: string; prio?: number; type?: string; policy?: string; rules: unknown[][] }[],
  sets: unknown[] = [],
): Ruleset {
  const items: unknown[] = [{ table: { family, name: table, handle: 1 } }, ...sets];
  let h = 1;
  for (const c of chains) {
    items.push({
      chain: {
        family,
        table,
        name: c.name,
        handle: h++,
        ...(c.hook ? { type: c.type ?? 'filter', hook: c.hook, prio: c.prio ?? 0, policy: c.policy ?? 'accept' } : {}),
      },
    });
  }
  for (const c of chains) for (const r of c.rules) items.push({ rule: { family, table, chain: c.name, handle: h++, expr: r } });
  return parseNftJson({ nftables: items }, { source: 'test' });
}

export const m = (left: unknown, right: unknown, op = '=='): unknown => ({ match: { op, left, right } });
export const meta = (key: string): unknown => ({ meta: { key } });
export const payload = (protocol: string, field: string): unknown => ({ payload: { protocol, field } });

/** A TCP packet from the uplink to a container address, through `rs` on the golden host. */
export const fwd = (rs: Ruleset, spec?: Partial<PacketSpec>): Explanation =>
  explainPacket(compileRuleset(rs, host), { tuple: tcp('10.0.10.5', 40000, '192.168.0.2', 80), iif: 'eth0', ...spec });
