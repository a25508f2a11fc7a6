/**
 * Compiles a Ruleset once into the simulator's fast form: every match becomes a closure returning
 * 0 (no match), 1 (match) or 2 (cannot be evaluated: indeterminate, with a reason), jump targets are
 * resolved to chain objects, and the base chains are sorted per (IP version, hook) in the order the
 * kernel runs them (priority; NAT chains grouped at the NAT core's slot, as nf_nat registers them).
 */
import type { Hook, NfFamily } from '../model/explanation.js';
import type { Chain, Rule, Ruleset, Stmt, Table, Value, VerdictTarget } from '../ruleset/model.js';
import type { HostContext } from '../ruleset/host-context.js';
import type { SimPacket } from './packet.js';
import { assertNoChainLoops } from '../ruleset/loops.js';
import { type UndecidedKind, undecidedKind } from './undecided.js';

import { extractor } from './key-extract.js';
import { compileMatch } from './match-compile.js';
import { type Scalar, valueTest } from './value-match.js';

export type Tri = 0 | 1 | 2;

export interface CCond {
  readonly test: (p: SimPacket) => Tri;
  readonly text: string;
  /** Why it may be indeterminate (when test returns 2). */
  readonly reason: string;
  /** When the kernel decides it from state the simulator does not see (src/netfilter/undecided.ts). */
  readonly undecided?: UndecidedKind;
}

export type CStmt =
  | { readonly kind: 'accept' | 'drop' | 'return' | 'continue' | 'queue' | 'counter' | 'log' | 'nftrace' | 'notrack' }
  | { readonly kind: 'reject'; readonly with?: string }
  | { readonly kind: 'jump' | 'goto'; target: CChain }
  | {
      readonly kind: 'vmap';
      readonly lookup: (p: SimPacket) => CVerdict | null | 'unknown';
      readonly reason: string;
      /** A map keyed by a random or hashed number (`numgen random mod N vmap`, `jhash`): every verdict it may give. */
      readonly branches?: readonly CVerdict[];
      readonly keyText?: string;
    }
  | { readonly kind: 'nat'; readonly stmt: Extract<Stmt, { kind: 'nat' }> }
  | { readonly kind: 'mark'; readonly target: 'meta' | 'ct'; readonly value: number; readonly mask: number }
  | { readonly kind: 'unknown'; readonly text: string; readonly terminal: boolean };

export type CVerdict = { readonly kind: 'accept' | 'drop' | 'return' | 'continue' } | { readonly kind: 'jump' | 'goto'; readonly target: CChain };

export interface CRule {
  readonly rule: Rule;
  readonly conds: readonly CCond[];
  readonly stmts: CStmt[];
  /** True when the rule can change the path (a verdict, NAT, mark...); false for counter/log only. */
  readonly effective: boolean;
}

export interface CTable {
  readonly table: Table;
  readonly family: NfFamily;
  readonly name: string;
}

export interface CChain {
  readonly table: CTable;
  readonly chain: Chain;
  readonly name: string;
  readonly rules: CRule[];
}

export interface HookSlot {
  readonly priority: number;
  /** One chain, or (for NAT) the chains the NAT core runs in its slot, in their own priority order. */
  readonly chains: readonly CChain[];
  readonly nat: boolean;
}

export interface CompiledRuleset {
  readonly ruleset: Ruleset;
  readonly host: HostContext;
  readonly tables: readonly CTable[];
  /** `${4|6}:${hook}` → slots in kernel order. */
  readonly hooks: ReadonlyMap<string, readonly HookSlot[]>;
  readonly notes: readonly string[];
  readonly ruleCount: number;
  /**
   * Whether connection tracking runs in the namespace. Since Linux 4.10 conntrack hooks a namespace
   * only when a rule needs it (ct matches, NAT statements): without any, there is no conntrack entry,
   * `ct state` reads invalid and NAT chains are never evaluated (the kernel's trace shows it).
   */
  readonly conntrackActive: boolean;
}

const NAT_PRIO: Record<string, number> = { prerouting: -100, output: -100, postrouting: 100, input: 100 };

function compileVmap(s: Extract<Stmt, { kind: 'vmap' }>, table: Table, host: HostContext, resolve: (name: string) => CChain): CStmt {
  const ex = extractor(s.key, host, table.family);
  const pairs: (readonly [Value, VerdictTarget])[] = [];
  if (typeof s.map === 'string') {
    const set = table.sets.get(s.map);
    if (set?.targets) for (const [i, e] of set.elements.entries()) pairs.push([e, set.targets?.[i] as VerdictTarget]);
  } else for (const p of s.map) pairs.push(p);
  const compiled: { test: ((x: Scalar) => boolean) | null; verdict: CVerdict }[] = pairs.map(([k, vt]) => ({
    test: valueTest(s.key, k, table.sets),
    verdict: vt.kind === 'jump' || vt.kind === 'goto' ? { kind: vt.kind, target: resolve(vt.target) } : { kind: vt.kind },
  }));
  const reason = ex === null ? `vmap key not modelled` : ex.reason;
  // exact-string keys (interface names) → Map for speed
  const exact = new Map<string, CVerdict>();
  let allExact = true;
  for (const [k] of pairs) if (!(k.kind === 'str' && !k.v.endsWith('*'))) allExact = false;
  if (allExact) for (const [i, [k]] of pairs.entries()) exact.set((k as { v: string }).v, (compiled[i] as { verdict: CVerdict }).verdict);
  const chance = s.key.kind === 'unknown' && undecidedKind(s.key.text) === 'chance';
  return {
    kind: 'vmap',
    reason,
    ...(chance ? { branches: compiled.map((c) => c.verdict), keyText: (s.key as { text: string }).text } : {}),
    lookup: (p) => {
      if (ex === null) return 'unknown';
      const x = ex.get(p);
      if (x === null) return null;
      if (x === undefined) return 'unknown';
      if (allExact) return x.t === 'str' ? (exact.get(x.s) ?? null) : null;
      for (const c of compiled) {
        if (c.test === null) return 'unknown';
        if (c.test(x)) return c.verdict;
      }
      return null;
    },
  };
}

const FAMILY_SEES: Record<4 | 6, readonly NfFamily[]> = { 4: ['ip', 'inet'], 6: ['ip6', 'inet'] };

/** Compiles a ruleset against a host. */
export function compileRuleset(ruleset: Ruleset, host: HostContext): CompiledRuleset {
  assertNoChainLoops(ruleset);
  const notes = [...ruleset.notes];
  const ctables: CTable[] = [];
  const chainsByTable = new Map<CTable, Map<string, CChain>>();
  for (const t of ruleset.tables) {
    const ct: CTable = { table: t, family: t.family, name: t.name };
    ctables.push(ct);
    const m = new Map<string, CChain>();
    for (const c of t.chains.values()) m.set(c.name, { table: ct, chain: c, name: c.name, rules: [] });
    chainsByTable.set(ct, m);
  }
  let ruleCount = 0;
  let conntrackActive = false;
  for (const t of ruleset.tables) {
    for (const c of t.chains.values()) {
      for (const r of c.rules) {
        for (const e of r.exprs) {
          if ((e.kind === 'match' && e.key.kind === 'ct') || e.kind === 'nat' || (e.kind === 'mark' && e.target === 'ct')) conntrackActive = true;
        }
      }
    }
  }
  for (const ct of ctables) {
    const m = chainsByTable.get(ct) as Map<string, CChain>;
    const resolve = (name: string): CChain => {
      const c = m.get(name);
      if (c === undefined) {
        // loaders validate targets; keep the simulator total anyway
        const empty: CChain = { table: ct, chain: { name, base: null, rules: [], handle: null, line: null }, name, rules: [] };
        m.set(name, empty);
        return empty;
      }
      return c;
    };
    for (const cc of m.values()) {
      for (const r of cc.chain.rules) {
        ruleCount++;
        const conds: CCond[] = [];
        const stmts: CStmt[] = [];
        let effective = false;
        for (const e of r.exprs) {
          if (e.kind === 'match') {
            conds.push(compileMatch(e, ct.table, host, ruleset.ipsets));
            continue;
          }
          // a match after a statement (nft allows it): keep order by treating the rest as conditions too
          switch (e.kind) {
            case 'verdict':
              stmts.push({ kind: e.verdict });
              effective = true;
              break;
            case 'jump':
            case 'goto':
              stmts.push({ kind: e.kind, target: resolve(e.target) });
              effective = true;
              break;
            case 'reject':
              stmts.push({ kind: 'reject', ...(e.with !== undefined ? { with: e.with } : {}) });
              effective = true;
              break;
            case 'vmap':
              stmts.push(compileVmap(e, ct.table, host, resolve));
              effective = true;
              break;
            case 'nat':
              stmts.push({ kind: 'nat', stmt: e });
              effective = true;
              break;
            case 'mark':
              stmts.push({ kind: 'mark', target: e.target, value: e.value, mask: e.mask });
              effective = true;
              break;
            case 'counter':
            case 'log':
            case 'nftrace':
            case 'notrack':
              stmts.push({ kind: e.kind });
              if (e.kind === 'notrack') effective = true;
              break;
            case 'unknown':
              stmts.push({ kind: 'unknown', text: e.text, terminal: e.terminal });
              if (e.terminal) effective = true;
              break;
          }
        }
        cc.rules.push({ rule: r, conds, stmts, effective });
      }
    }
  }
  // hooks
  const hooks = new Map<string, HookSlot[]>();
  const skippedFamilies = new Set<string>();
  for (const v of [4, 6] as const) {
    for (const hook of ['prerouting', 'input', 'forward', 'output', 'postrouting'] as Hook[]) {
      const plain: HookSlot[] = [];
      const nat: CChain[] = [];
      for (const ct of ctables) {
        if (!FAMILY_SEES[v].includes(ct.family)) {
          if (!['ip', 'ip6', 'inet'].includes(ct.family)) skippedFamilies.add(`${ct.family} ${ct.name}`);
          continue;
        }
        for (const cc of (chainsByTable.get(ct) as Map<string, CChain>).values()) {
          const b = cc.chain.base;
          if (b === null || b.hook !== hook) continue;
          if (b.type === 'nat') nat.push(cc);
          else plain.push({ priority: b.priority, chains: [cc], nat: false });
        }
      }
      if (nat.length > 0) {
        nat.sort((a, b) => (a.chain.base?.priority ?? 0) - (b.chain.base?.priority ?? 0));
        plain.push({ priority: NAT_PRIO[hook] ?? 0, chains: nat, nat: true });
      }
      // stable sort: equal priorities keep load order (iptables tables first, then nft)
      plain.sort((a, b) => a.priority - b.priority);
      hooks.set(`${v}:${hook}`, plain);
    }
  }
  for (const s of skippedFamilies) notes.push(`table ${s} is not simulated (only ip, ip6 and inet families are)`);
  if (!conntrackActive && ruleCount > 0)
    notes.push(
      'no rule needs connection tracking, so the kernel does not track connections here: NAT chains are not evaluated and ct state reads invalid',
    );
  return { ruleset, host, tables: ctables, hooks, notes, ruleCount, conntrackActive };
}
