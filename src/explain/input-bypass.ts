/**
 * "Why did `ufw deny 8000` do nothing?": a packet DNAT'd to a container crosses FORWARD, never
 * INPUT, so a firewall on INPUT that would have applied to the packet before DNAT is never
 * consulted. Decided with the simulator — the same packet explained on the ruleset without its
 * DNAT rules, its INPUT steps' deciding rule — never guessed. Used by `journey explain` (a note)
 * and by `verify exposure` (a row's "never consulted").
 */
import type { Explanation, ExplainStep } from '../model/explanation.js';
import type { CompiledRuleset } from '../netfilter/compile.js';
import type { Ruleset } from '../ruleset/model.js';
import { type ChainOwner, chainOwner } from '../ruleset/owners.js';
import { explainPacket, type PacketSpec } from './explain.js';

/** The deciding rule of a path, named. */
export interface DecidingRule {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly rule: string | null;
  readonly ruleNumber: number | null;
  readonly handle: number | null;
  readonly verdict: string;
  readonly owner: ChainOwner;
}

const FILTER_HOOKS = new Set(['forward', 'input', 'output']);
const DECIDING = new Set(['accept', 'policy-accept', 'drop', 'reject', 'policy-drop']);

/** The step that decided a path: the first drop, else the first indeterminate, else the last filter accept. */
export function decidingStep(ex: Pick<Explanation, 'steps'>, ghosts: ReadonlySet<string> = new Set()): ExplainStep | null {
  const drop = ex.steps.find((s) => s.verdict === 'drop' || s.verdict === 'reject' || s.verdict === 'policy-drop');
  if (drop) return drop;
  const ind = ex.steps.find((s) => s.verdict === 'indeterminate');
  if (ind) return ind;
  const filt = ex.steps.filter(
    (s) =>
      DECIDING.has(s.verdict) &&
      FILTER_HOOKS.has(s.hook) &&
      s.table !== 'nat' &&
      !/^nat-/.test(s.chain) &&
      !ghosts.has(`${s.family} ${s.table} ${s.chain}`),
  );
  return filt[filt.length - 1] ?? null;
}

export function decidingRule(s: ExplainStep | null): DecidingRule | null {
  if (s === null) return null;
  return {
    family: s.family,
    table: s.table,
    chain: s.chain,
    rule: s.rule,
    ruleNumber: s.ruleNumber,
    handle: s.handle,
    verdict: s.verdict,
    owner: chainOwner(s.family, s.table, s.chain),
  };
}

export function ruleName(d: DecidingRule): string {
  const where = `${d.family === 'ip' || d.family === 'ip6' ? '' : `${d.family} `}${d.table} ${d.chain}`;
  if (d.rule === null) return `the policy of ${where} (${d.verdict.replace('policy-', '')})`;
  return `${where} rule ${d.ruleNumber ?? `handle ${d.handle ?? '?'}`}: ${d.rule}`;
}

/** The ruleset without its DNAT/REDIRECT rules: where the packet would have gone had nothing rewritten it. */
export function withoutDnat(rs: Ruleset): Ruleset {
  return {
    ...rs,
    tables: rs.tables.map((t) => ({
      ...t,
      chains: new Map(
        [...t.chains].map(([k, c]) => [
          k,
          { ...c, rules: c.rules.filter((r) => !r.exprs.some((e) => e.kind === 'nat' && (e.type === 'dnat' || e.type === 'redirect'))) },
        ]),
      ),
    })),
  };
}

/**
 * For a DNAT'd packet that was not for the host: what INPUT would have done with it before DNAT
 * (its deciding rule and owner, explained on `alt`, the ruleset without DNAT), when that is worth
 * saying — a firewall that would refuse it, or one the user set up (ufw, firewalld); else null.
 */
export function inputNeverConsulted(
  ex: Explanation,
  spec: PacketSpec,
  alt: CompiledRuleset | null,
  what = 'this packet',
): { sentence: string; rule: DecidingRule } | null {
  if (ex.nat.dnat === null || alt === null) return null;
  let ex2: Explanation;
  try {
    ex2 = explainPacket(alt, spec);
  } catch {
    return null; // the hypothetical packet is unusable: say nothing rather than guess
  }
  const inputSteps = ex2.steps.filter((s) => s.hook === 'input' && s.table !== 'nat');
  const d = decidingStep({ steps: inputSteps });
  const dr = decidingRule(d);
  if (d === null || dr === null) return null;
  const accepts = d.verdict === 'accept' || d.verdict === 'policy-accept';
  // whose INPUT it is: the deciding rule's owner, else the first firewall manager whose chains the packet crossed there
  const crossed = inputSteps.map((x) => chainOwner(x.family, x.table, x.chain)).find((o) => o !== 'neutral' && o !== 'docker');
  const owner = dr.owner !== 'neutral' ? dr.owner : (crossed ?? 'neutral');
  // an INPUT that would accept anyway is no surprise; a firewall that would refuse it, or one the user set up, is
  if (accepts && owner === 'neutral') return null;
  const who = owner === 'neutral' ? 'the INPUT firewall' : owner;
  const port = spec.tuple.proto === 'tcp' || spec.tuple.proto === 'udp' ? `${spec.tuple.dport}/${spec.tuple.proto}` : spec.tuple.proto;
  return {
    sentence: `${who} ${accepts ? 'accepts' : 'denies'} ${port} in INPUT (${ruleName(dr)}); ${what} is DNAT'd to ${ex.nat.dnat.to} and crosses FORWARD, so INPUT is never consulted`,
    rule: dr,
  };
}
