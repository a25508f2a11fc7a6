/**
 * The kernel's per-rule packet/byte counters, read from the live ruleset (`iptables-save -c`,
 * `nft -j list ruleset`), keyed the way explanation steps name their rules: family, table, chain
 * and the iptables rule number or the nft handle. Rules without a counter (nft rules with no
 * `counter` statement) have no entry.
 */
import type { ExplainStep, RuleCounterDelta } from '../model/explanation.js';
import { type LiveOptions, readRulesetDumps, rulesetFromDumps } from './load.js';
import type { Ruleset } from './model.js';

export type RuleCounters = ReadonlyMap<string, RuleCounterDelta>;

/** One reading of every rule's counters, and when it was taken (Unix ms, after the tools returned). */
export interface CounterReading {
  readonly timeMs: number;
  readonly counters: RuleCounters;
}

function key(family: string, table: string, chain: string, at: string): string {
  return `${family} ${table} ${chain} ${at}`;
}

/** The counters key of an explanation step's rule, or null for a policy step (chains have no rule counters). */
export function stepCounterKey(s: Pick<ExplainStep, 'family' | 'table' | 'chain' | 'ruleNumber' | 'handle' | 'rule'>): string | null {
  if (s.rule === null) return null;
  if (s.handle !== null) return key(s.family, s.table, s.chain, `h${s.handle}`);
  if (s.ruleNumber !== null) return key(s.family, s.table, s.chain, `#${s.ruleNumber}`);
  return null;
}

/** Every counted rule of a ruleset: iptables rules by number, nft rules by handle. */
export function countersOfRuleset(rs: Ruleset): RuleCounters {
  const out = new Map<string, RuleCounterDelta>();
  for (const t of rs.tables) {
    for (const c of t.chains.values()) {
      for (const r of c.rules) {
        if (r.counters === null) continue;
        const at = t.origin === 'nft' && r.handle !== null ? `h${r.handle}` : `#${r.position}`;
        out.set(key(t.family, t.name, c.name, at), r.counters);
      }
    }
  }
  return out;
}

/** Reads the live counters of the host or a netns. */
export async function readRuleCounters(opts: LiveOptions = {}): Promise<CounterReading> {
  const dumps = await readRulesetDumps({ ...opts, counters: true });
  const timeMs = Date.now();
  return { timeMs, counters: countersOfRuleset(rulesetFromDumps(dumps, 'counters')) };
}

/** How much each counter grew from `before` to `after`; null when the rule is missing from either (or was replaced: it went down). */
export function counterDelta(before: RuleCounters, after: RuleCounters, k: string): RuleCounterDelta | null {
  const a = before.get(k);
  const b = after.get(k);
  if (a === undefined || b === undefined || b.packets < a.packets || b.bytes < a.bytes) return null;
  return { packets: b.packets - a.packets, bytes: b.bytes - a.bytes };
}
