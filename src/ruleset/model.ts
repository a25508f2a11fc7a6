/**
 * The one ruleset model every loader produces (iptables-save text, `nft -j` JSON, nft text read back
 * through a scratch namespace, or the live host). Rules keep their raw text and where they came from
 * (iptables-save line or nft handle); matches and statements are parsed into a small expression
 * language shared by both front ends, that src/netfilter/compile.ts turns into closures.
 */
import type { Hook, NfFamily } from '../model/explanation.js';
import type { IpSet } from './ipset.js';

export type ChainType = 'filter' | 'nat' | 'route';

/** What a match looks at. iptables options are translated into the same keys as nft expressions. */
export type Key =
  /** ip/ip6 header fields (saddr, daddr, protocol, nexthdr) and transport fields (sport, dport, type, code).
   *  proto: 'ip' | 'ip6' | 'tcp' | 'udp' | 'sctp' | 'th' (any transport) | 'icmp' | 'icmpv6'. */
  | { readonly kind: 'payload'; readonly proto: string; readonly field: string }
  /** iifname, oifname, iif, oif, l4proto, nfproto, protocol, mark, pkttype, iiftype, oiftype. */
  | { readonly kind: 'meta'; readonly key: string }
  /** ct state, status, mark, direction, original/reply addresses. */
  | { readonly kind: 'ct'; readonly key: string; readonly dir?: 'original' | 'reply' }
  /** fib daddr|saddr [. iif|oif] type|oif. */
  | { readonly kind: 'fib'; readonly result: string; readonly flags: readonly string[] }
  /** An ipset (iptables `-m set`): membership of the listed packet fields. */
  | { readonly kind: 'ipset'; readonly name: string; readonly fields: readonly ('src' | 'dst')[] }
  /** Something the simulator does not model; `text` says what. */
  | { readonly kind: 'unknown'; readonly text: string };

export type Value =
  | { readonly kind: 'str'; readonly v: string } // interface names: a trailing '*' is a wildcard
  | { readonly kind: 'num'; readonly v: number }
  | { readonly kind: 'addr'; readonly v: string }
  | { readonly kind: 'prefix'; readonly addr: string; readonly len: number }
  | { readonly kind: 'range'; readonly lo: Value; readonly hi: Value }
  | { readonly kind: 'set'; readonly items: readonly Value[] }
  | { readonly kind: 'named'; readonly name: string }
  /** Symbolic names: fib types (local), ct states (established), protocols (tcp), icmp types. */
  | { readonly kind: 'sym'; readonly v: string }
  /** A list of flags matched as a bitmask (`ct state established,related`). */
  | { readonly kind: 'flags'; readonly v: readonly string[] };

export type MatchOp = '==' | '!=' | '<' | '>' | '<=' | '>=' | 'in';

export interface MatchExpr {
  readonly kind: 'match';
  readonly key: Key;
  readonly op: MatchOp;
  readonly value: Value;
  /** `key & mask` before comparing (marks). */
  readonly mask?: number;
  /** Human text of this match (for indeterminate reasons). */
  readonly text: string;
}

export type NatType = 'dnat' | 'snat' | 'masquerade' | 'redirect';

/** NAT flags that change how the kernel picks the port or address (iptables --random…, nft `random`…). */
export const NAT_FLAGS = ['random', 'fully-random', 'persistent'] as const;
export type NatFlag = (typeof NAT_FLAGS)[number];

export type Stmt =
  | { readonly kind: 'verdict'; readonly verdict: 'accept' | 'drop' | 'return' | 'continue' | 'queue'; readonly text?: string }
  | { readonly kind: 'jump' | 'goto'; readonly target: string }
  | { readonly kind: 'reject'; readonly with?: string }
  /** Verdict map: key → verdict; `map` is a named map or an anonymous set of [key, verdict] pairs. */
  | { readonly kind: 'vmap'; readonly key: Key; readonly map: string | readonly (readonly [Value, VerdictTarget])[] }
  | {
      readonly kind: 'nat';
      readonly type: NatType;
      /** Address (or range start) to translate to; absent for masquerade / redirect / port-only. */
      readonly addr?: string;
      readonly addrHi?: string;
      readonly port?: number;
      readonly portHi?: number;
      /** random / fully-random / persistent, when given. */
      readonly flags?: readonly NatFlag[];
      readonly text: string;
    }
  | { readonly kind: 'mark'; readonly target: 'meta' | 'ct'; readonly value: number; readonly mask: number; readonly text: string }
  | { readonly kind: 'nftrace' }
  | { readonly kind: 'notrack' }
  | { readonly kind: 'counter' }
  | { readonly kind: 'log' }
  /** Not modelled. `terminal` false means it only observes (safe to ignore); otherwise indeterminate. */
  | { readonly kind: 'unknown'; readonly text: string; readonly terminal: boolean };

export type VerdictTarget =
  | { readonly kind: 'accept' | 'drop' | 'return' | 'continue' }
  | { readonly kind: 'jump' | 'goto'; readonly target: string };

export type Expr = MatchExpr | Stmt;

export interface Rule {
  /** The rule as its tool prints it: the iptables-save line (`-A CHAIN ...`) or the nft rule text. */
  readonly raw: string;
  /** 1-based position in its chain (= iptables rule number). */
  readonly position: number;
  /** Line in the source file (iptables-save, nft text) when known. */
  readonly line: number | null;
  /** nft handle when the rule came from nftables. */
  readonly handle: number | null;
  readonly counters: { readonly packets: number; readonly bytes: number } | null;
  readonly comment: string | null;
  /** Matches then statements, in order (nft evaluates them left to right). */
  readonly exprs: readonly Expr[];
}

export interface BaseChainInfo {
  readonly type: ChainType;
  readonly hook: Hook;
  readonly priority: number;
  readonly policy: 'accept' | 'drop';
  /** Ingress/netdev device, when any. */
  readonly device?: string;
}

export interface Chain {
  readonly name: string;
  /** Present for base chains. */
  readonly base: BaseChainInfo | null;
  readonly rules: Rule[];
  readonly handle: number | null;
  /** Line of the chain's declaration in its source, when known. */
  readonly line: number | null;
}

export interface NamedSet {
  readonly name: string;
  /** 'set' or 'map' (verdict maps have mapTo 'verdict'). */
  readonly kind: 'set' | 'map';
  readonly type: string;
  readonly mapTo?: string;
  readonly elements: readonly Value[];
  /** For maps: the element keys' targets, same order as `elements`. */
  readonly targets?: readonly (VerdictTarget | Value)[];
  readonly flags?: readonly string[];
}

export interface Table {
  readonly family: NfFamily;
  readonly name: string;
  /** Which tool made it: iptables (read from iptables-save) or native nftables. */
  readonly origin: 'iptables' | 'nft';
  readonly chains: Map<string, Chain>;
  readonly sets: Map<string, NamedSet>;
  readonly handle: number | null;
  /** Where it was read from (file path or "live:iptables-save", "live:nft"). */
  readonly source: string;
  /**
   * For iptables tables read live through iptables-nft: the chains that exist in the kernel (from
   * `nft -j list ruleset`). iptables-save also prints built-in chains that were never created.
   */
  kernelChains?: ReadonlySet<string>;
}

export interface Ruleset {
  readonly tables: Table[];
  /** Notes from the loaders (skipped tables, what was rewritten). */
  readonly notes: string[];
  /** ipsets (from `ipset save`) that iptables rules match with `-m set`, by name. */
  readonly ipsets?: ReadonlyMap<string, IpSet>;
}

export function emptyRuleset(): Ruleset {
  return { tables: [], notes: [] };
}

/** Puts several loaded rulesets together (e.g. iptables-save + nft -j). */
export function mergeRulesets(...parts: readonly Ruleset[]): Ruleset {
  const sets = new Map<string, IpSet>();
  for (const p of parts) for (const [k, v] of p.ipsets ?? []) sets.set(k, v);
  return { tables: parts.flatMap((p) => p.tables), notes: parts.flatMap((p) => p.notes), ...(sets.size ? { ipsets: sets } : {}) };
}

/**
 * The table `journey watch --verify` adds to arm the kernel's trace (`inet journey_trace_<pid>`,
 * src/netfilter/trace-arm.ts): journey's own instrument, never part of the ruleset it explains.
 */
export const isTraceTableName = (name: string): boolean => /^journey_trace_\d+$/.test(name);

/** The ruleset without journey's own trace tables. */
export function withoutTraceTables(rs: Ruleset): Ruleset {
  return rs.tables.some((t) => isTraceTableName(t.name)) ? { ...rs, tables: rs.tables.filter((t) => !isTraceTableName(t.name)) } : rs;
}

export function tableKey(t: { family: string; name: string }): string {
  return `${t.family} ${t.name}`;
}
