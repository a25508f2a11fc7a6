/**
 * Compiles a Ruleset once into the simulator's fast form: every match becomes a closure returning
 * 0 (no match), 1 (match) or 2 (cannot be evaluated: indeterminate, with a reason), jump targets are
 * resolved to chain objects, and the base chains are sorted per (IP version, hook) in the order the
 * kernel runs them (priority; NAT chains grouped at the NAT core's slot, as nf_nat registers them).
 */
import type { Hook, NfFamily } from '../model/explanation.js';
import type { Chain, Key, MatchExpr, NamedSet, Rule, Ruleset, Stmt, Table, Value, VerdictTarget } from '../ruleset/model.js';
import { type Ip, cidrContains, parseCidr, parseIp } from '../ruleset/ip.js';
import { type HostContext, addrType, lookupRoute } from '../ruleset/host-context.js';
import { PROTO_BY_NAME } from '../model/tuple.js';
import { ICMP_TYPES, ICMPV6_TYPES, type SimPacket } from './packet.js';
import type { IpSet } from '../ruleset/ipset.js';
import { assertNoChainLoops } from '../ruleset/loops.js';
import { type UndecidedKind, alwaysMatches, undecidedKind } from './undecided.js';

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

const T = (b: boolean): Tri => (b ? 1 : 0);

// ---------- value matchers ----------

type Scalar = { t: 'ip'; ip: Ip } | { t: 'num'; n: number } | { t: 'str'; s: string };

function ifaceMatcher(pattern: string): (s: string) => boolean {
  if (pattern.endsWith('\\*')) {
    const lit = `${pattern.slice(0, -2)}*`;
    return (s) => s === lit;
  }
  if (pattern.endsWith('*')) {
    const pre = pattern.slice(0, -1);
    return (s) => s.startsWith(pre);
  }
  return (s) => s === pattern;
}

function symNumber(key: Key, v: string): number | null {
  if (/^\d+$/.test(v)) return Number(v);
  if (/^0x[0-9a-f]+$/i.test(v)) return parseInt(v, 16);
  if (key.kind === 'meta' && (key.key === 'l4proto' || key.key === 'protocol')) return PROTO_BY_NAME[v] ?? null;
  if (key.kind === 'payload' && (key.field === 'protocol' || key.field === 'nexthdr')) return PROTO_BY_NAME[v] ?? null;
  if (key.kind === 'payload' && key.proto === 'icmp' && key.field === 'type') return ICMP_TYPES[v] ?? null;
  if (key.kind === 'payload' && key.proto === 'icmpv6' && key.field === 'type') return ICMPV6_TYPES[v] ?? null;
  const services: Record<string, number> = {
    ssh: 22,
    http: 80,
    https: 443,
    domain: 53,
    smtp: 25,
    ftp: 21,
    telnet: 23,
    ntp: 123,
    bootps: 67,
    bootpc: 68,
  };
  if (key.kind === 'payload' && /port$/.test(key.field)) return services[v] ?? null;
  return null;
}

/** Builds "is the scalar in this value" for one value; returns null when the value cannot be interpreted. */
function valueTest(key: Key, v: Value, sets: ReadonlyMap<string, NamedSet>): ((x: Scalar) => boolean) | null {
  switch (v.kind) {
    case 'addr': {
      const ip = parseIp(v.v);
      if (ip === null) return null;
      return (x) => x.t === 'ip' && x.ip.v === ip.v && x.ip.n === ip.n;
    }
    case 'prefix': {
      const c = parseCidr(`${v.addr}/${v.len}`);
      if (c === null) return null;
      return (x) => x.t === 'ip' && cidrContains(c, x.ip);
    }
    case 'num':
      return (x) => (x.t === 'num' && x.n === v.v) || (x.t === 'str' && x.s === String(v.v));
    case 'str': {
      const m = ifaceMatcher(v.v);
      return (x) => x.t === 'str' && m(x.s);
    }
    case 'sym': {
      const n = symNumber(key, v.v);
      if (n !== null) return (x) => x.t === 'num' && x.n === n;
      const ip = parseIp(v.v);
      if (ip !== null) return (x) => x.t === 'ip' && x.ip.v === ip.v && x.ip.n === ip.n;
      if (v.v.startsWith('?')) return null;
      const s = v.v.toLowerCase();
      return (x) => x.t === 'str' && x.s === s;
    }
    case 'range': {
      const lo = v.lo;
      const hi = v.hi;
      if ((lo.kind === 'addr' || lo.kind === 'sym') && (hi.kind === 'addr' || hi.kind === 'sym') && parseIp(lo.v) && parseIp(hi.v)) {
        const a = parseIp(lo.v) as Ip;
        const b = parseIp(hi.v) as Ip;
        return (x) => x.t === 'ip' && x.ip.v === a.v && x.ip.n >= a.n && x.ip.n <= b.n;
      }
      const a = lo.kind === 'num' ? lo.v : lo.kind === 'sym' ? symNumber(key, lo.v) : null;
      const b = hi.kind === 'num' ? hi.v : hi.kind === 'sym' ? symNumber(key, hi.v) : null;
      if (a === null || b === null) return null;
      return (x) => x.t === 'num' && x.n >= a && x.n <= b;
    }
    case 'set': {
      const tests = v.items.map((i) => valueTest(key, i, sets));
      if (tests.some((t) => t === null)) return null;
      const ts = tests as ((x: Scalar) => boolean)[];
      // fast path: many exact numbers/ips
      return (x) => {
        for (const t of ts) if (t(x)) return true;
        return false;
      };
    }
    case 'named': {
      const set = sets.get(v.name);
      if (set === undefined) return null;
      return valueTest(key, { kind: 'set', items: set.elements }, sets);
    }
    case 'flags':
      return null;
  }
}

// ---------- key extractors ----------

interface KeyExtractor {
  /** Returns the scalar, null when the expression "breaks" (the rule does not match), or undefined if unknown. */
  readonly get: (p: SimPacket) => Scalar | null | undefined;
  readonly reason: string;
}

const TH = new Set([6, 17, 132, 136, 33]);

function extractor(key: Key, host: HostContext, tableFamily: NfFamily): KeyExtractor | null {
  switch (key.kind) {
    case 'payload': {
      const { proto, field } = key;
      if (proto === 'ip' || proto === 'ip6') {
        const want = proto === 'ip' ? 4 : 6;
        if (field === 'saddr') return { get: (p) => (p.v === want ? { t: 'ip', ip: p.src } : null), reason: '' };
        if (field === 'daddr') return { get: (p) => (p.v === want ? { t: 'ip', ip: p.dst } : null), reason: '' };
        if (field === 'protocol' || field === 'nexthdr') return { get: (p) => (p.v === want ? { t: 'num', n: p.l4 } : null), reason: '' };
        return null;
      }
      if (field === 'sport' || field === 'dport' || field === 'port') {
        const want = PROTO_BY_NAME[proto];
        const ok = proto === 'th' ? (p: SimPacket) => TH.has(p.l4) : (p: SimPacket) => p.l4 === want;
        if (field === 'sport') return { get: (p) => (ok(p) ? { t: 'num', n: p.sport } : null), reason: '' };
        if (field === 'dport') return { get: (p) => (ok(p) ? { t: 'num', n: p.dport } : null), reason: '' };
        return null; // 'port' (either) handled by the caller
      }
      if ((proto === 'icmp' || proto === 'icmpv6') && (field === 'type' || field === 'code')) {
        const want = proto === 'icmp' ? 1 : 58;
        return {
          get: (p) => {
            if (p.l4 !== want) return null;
            const n = field === 'type' ? p.icmpType : p.icmpCode;
            return n === null ? undefined : { t: 'num', n };
          },
          reason: `the packet has no ICMP ${field}`,
        };
      }
      return null;
    }
    case 'meta': {
      switch (key.key) {
        case 'iifname':
        case 'iif':
          return { get: (p) => ({ t: 'str', s: p.iif ?? '' }), reason: '' };
        case 'oifname':
        case 'oif':
          return {
            get: (p) => (p.oif === null && p.hook !== 'prerouting' && p.hook !== 'input' ? undefined : { t: 'str', s: p.oif ?? '' }),
            reason: 'the output interface is not known (no route)',
          };
        case 'l4proto':
          return { get: (p) => ({ t: 'num', n: p.l4 }), reason: '' };
        case 'nfproto':
          return { get: (p) => ({ t: 'str', s: p.v === 4 ? 'ipv4' : 'ipv6' }), reason: '' };
        case 'protocol':
          return { get: (p) => ({ t: 'str', s: p.v === 4 ? 'ip' : 'ip6' }), reason: '' };
        case 'mark':
          return { get: (p) => ({ t: 'num', n: p.mark }), reason: '' };
        case 'pkttype':
          return {
            get: (p) => {
              if (p.hook === 'output' || p.hook === 'postrouting') return undefined;
              const t = addrType(host, p.dst);
              if (t === null) return undefined;
              return { t: 'str', s: t === 'broadcast' ? 'broadcast' : t === 'multicast' ? 'multicast' : 'host' };
            },
            reason: 'pkttype is not known for this packet/hook',
          };
        default:
          return null;
      }
    }
    case 'ct': {
      const k = key.key;
      if (k === 'mark') return { get: (p) => (p.ctAttached ? { t: 'num', n: p.ctMark } : null), reason: '' };
      if (k === 'direction') return { get: (p) => (p.ctAttached ? { t: 'str', s: p.ctDirection } : null), reason: '' };
      if (k === 'saddr' || k === 'daddr') {
        const dir = key.dir ?? 'original';
        return {
          get: (p) => {
            if (!p.ctAttached) return null;
            const t = dir === 'original' ? p.ctOrig : p.ctReply;
            if (t === null) return undefined;
            return { t: 'ip', ip: k === 'saddr' ? t.src : t.dst };
          },
          reason: 'conntrack tuple not known',
        };
      }
      return null;
    }
    case 'fib': {
      const flags = new Set(key.flags);
      const useS = flags.has('saddr');
      if (key.result === 'type' && !flags.has('iif') && !flags.has('oif') && !flags.has('mark')) {
        return {
          get: (p) => {
            const t = addrType(host, useS ? p.src : p.dst);
            return t === null ? undefined : { t: 'str', s: t };
          },
          reason: 'address types are not known (give the host addresses: --addrs)',
        };
      }
      if ((key.result === 'oif' || key.result === 'oifname') && flags.has('iif') && !flags.has('mark')) {
        // rpfilter-style: does the route to the address go out of the packet's input interface?
        return {
          get: (p) => {
            if (host.routesKnown === null) return undefined;
            const r = lookupRoute(host, useS ? p.src : p.dst);
            if (r === null) return { t: 'str', s: '' };
            const dev = r.local ? 'lo' : r.route.dev;
            if (r.local && useS) return { t: 'str', s: p.iif ?? '' };
            return { t: 'str', s: dev === p.iif ? (dev ?? '') : '' };
          },
          reason: 'routes are not known (give --routes)',
        };
      }
      return null;
    }
    case 'ipset':
    case 'unknown':
      return null;
  }
  void tableFamily;
}

const CT_STATE_FLAGS = new Set(['new', 'established', 'related', 'invalid', 'untracked']);

function compileMatch(m: MatchExpr, table: Table, host: HostContext, ipsets?: ReadonlyMap<string, IpSet>): CCond {
  const text = m.text;
  const kind = undecidedKind(text);
  const unknown = (reason: string): CCond => ({ test: () => 2, text, reason, ...(kind !== null ? { undecided: kind } : {}) });
  const key = m.key;
  if (key.kind === 'unknown' && alwaysMatches(text)) return { test: () => 1, text, reason: '' };
  if (key.kind === 'unknown') return unknown(`not modelled: ${key.text}`);
  if (key.kind === 'ipset') {
    const set = ipsets?.get(key.name);
    if (set === undefined) return unknown(`ipset ${key.name}: its members are not known (live: ipset save; offline: --ipset FILE)`);
    if (!/^(hash:ip|hash:net|bitmap:ip)$/.test(set.type) || key.fields.length !== 1)
      return unknown(`ipset ${key.name} of type ${set.type}: not modelled`);
    const v = set.family === 'inet6' ? 6 : 4;
    const members = set.members;
    const useSrc = key.fields[0] === 'src';
    const neg = m.op === '!=';
    return {
      test: (p) => {
        if (p.v !== v) return T(neg);
        const ip = useSrc ? p.src : p.dst;
        let found = false;
        for (const c of members)
          if (cidrContains(c, ip)) {
            found = true;
            break;
          }
        return T(found !== neg);
      },
      text,
      reason: '',
    };
  }
  // bitmask flags: ct state / ct status
  if (key.kind === 'ct' && (key.key === 'state' || key.key === 'status')) {
    const flags =
      m.value.kind === 'flags'
        ? m.value.v
        : m.value.kind === 'sym'
          ? [m.value.v]
          : m.value.kind === 'set'
            ? m.value.items.map((i) => (i.kind === 'sym' ? i.v : '?'))
            : null;
    if (flags === null) return unknown(`ct ${key.key}: unsupported value`);
    const neg = m.op === '!=';
    if (key.key === 'state') {
      const fs = flags.map((f) => f.toLowerCase());
      if (fs.some((f) => !CT_STATE_FLAGS.has(f))) return unknown(`ct state ${fs.join(',')}: unknown state`);
      const set = new Set(fs);
      return { test: (p) => T(set.has(p.ctState) !== neg), text, reason: '' };
    }
    const st = new Set(flags.map((f) => f.toLowerCase().replace('_', '-')));
    const KNOWN = new Set(['dnat', 'snat', 'confirmed', 'seen-reply', 'assured', 'expected', 'dying']);
    if ([...st].some((f) => !KNOWN.has(f))) return unknown(`ct status ${[...st].join(',')}: not modelled`);
    return {
      test: (p) => {
        if (!p.ctAttached) return 0;
        let any = false;
        for (const f of st) if (p.ctStatus.has(f)) any = true;
        return T(any !== neg);
      },
      text,
      reason: '',
    };
  }
  // multiport --ports: either port
  if (key.kind === 'payload' && key.field === 'port') {
    const s = extractor({ ...key, field: 'sport' }, host, table.family);
    const d = extractor({ ...key, field: 'dport' }, host, table.family);
    const vt = valueTest(key, m.value, table.sets);
    if (!s || !d || !vt) return unknown('unsupported port match');
    const neg = m.op === '!=';
    return {
      test: (p) => {
        const a = s.get(p);
        const b = d.get(p);
        if (a === null || b === null) return 0;
        if (a === undefined || b === undefined) return 2;
        return T((vt(a) || vt(b)) !== neg);
      },
      text,
      reason: '',
    };
  }
  const fast = fastMatch(m);
  if (fast !== null) return { test: fast, text, reason: '' };
  const ex = extractor(key, host, table.family);
  if (ex === null) return unknown(`not modelled: ${text}`);
  if (m.op === '<' || m.op === '>' || m.op === '<=' || m.op === '>=') {
    const n = m.value.kind === 'num' ? m.value.v : m.value.kind === 'sym' ? symNumber(key, m.value.v) : null;
    if (n === null) return unknown(`unsupported comparison: ${text}`);
    const op = m.op;
    return {
      test: (p) => {
        const x = ex.get(p);
        if (x === null) return 0;
        if (x === undefined || x.t !== 'num') return 2;
        const r = op === '<' ? x.n < n : op === '>' ? x.n > n : op === '<=' ? x.n <= n : x.n >= n;
        return T(r);
      },
      text,
      reason: ex.reason,
    };
  }
  let value = m.value;
  // fib type values are symbolic names compared as strings
  if (key.kind === 'fib' && key.result === 'type') {
    value = lowerSyms(value);
  }
  if (
    key.kind === 'fib' &&
    (key.result === 'oif' || key.result === 'oifname') &&
    value.kind === 'sym' &&
    (value.v === 'false' || value.v === 'missing' || value.v === 'true' || value.v === 'exists')
  ) {
    const wantExists = value.v === 'true' || value.v === 'exists';
    const neg = m.op === '!=';
    return {
      test: (p) => {
        const x = ex.get(p);
        if (x === null) return 0;
        if (x === undefined) return 2;
        const exists = x.t === 'str' && x.s !== '';
        return T((exists === wantExists) !== neg);
      },
      text,
      reason: ex.reason,
    };
  }
  const vt = valueTest(key, value, table.sets);
  if (vt === null) return unknown(`unsupported value in: ${text}`);
  const neg = m.op === '!=';
  const mask = m.mask;
  if (mask !== undefined) {
    const want = value.kind === 'num' ? value.v >>> 0 : null;
    if (want === null) return unknown(`unsupported masked match: ${text}`);
    return {
      test: (p) => {
        const x = ex.get(p);
        if (x === null) return 0;
        if (x === undefined || x.t !== 'num') return 2;
        return T(((x.n & mask) >>> 0 === want) !== neg);
      },
      text,
      reason: ex.reason,
    };
  }
  return {
    test: (p) => {
      const x = ex.get(p);
      if (x === null) return 0;
      if (x === undefined) return 2;
      return T(vt(x) !== neg);
    },
    text,
    reason: ex.reason,
  };
}

/**
 * Allocation-free closures for the commonest matches (IPv4 addresses and prefixes, protocol numbers,
 * ports and port ranges, interface names): most rules of a large ruleset are made of these.
 */
function fastMatch(m: MatchExpr): ((p: SimPacket) => Tri) | null {
  if (m.mask !== undefined || (m.op !== '==' && m.op !== '!=' && m.op !== 'in')) return null;
  const neg = m.op === '!=';
  const key = m.key;
  const v = m.value;
  if (
    key.kind === 'payload' &&
    key.proto === 'ip' &&
    (key.field === 'saddr' || key.field === 'daddr') &&
    (v.kind === 'addr' || v.kind === 'prefix')
  ) {
    const c = parseCidr(v.kind === 'addr' ? v.v : `${v.addr}/${v.len}`);
    if (c === null || c.v !== 4) return null;
    const net = Number(c.net);
    const mask = Number(c.mask);
    if (key.field === 'saddr') return (p) => (p.v !== 4 ? 0 : ((p.src.n4 & mask) >>> 0 === net) !== neg ? 1 : 0);
    return (p) => (p.v !== 4 ? 0 : ((p.dst.n4 & mask) >>> 0 === net) !== neg ? 1 : 0);
  }
  if (key.kind === 'meta' && key.key === 'l4proto' && v.kind === 'num') {
    const n = v.v;
    return (p) => ((p.l4 === n) !== neg ? 1 : 0);
  }
  if (
    key.kind === 'payload' &&
    (key.proto === 'tcp' || key.proto === 'udp' || key.proto === 'sctp') &&
    (key.field === 'dport' || key.field === 'sport')
  ) {
    const want = PROTO_BY_NAME[key.proto] as number;
    let lo: number;
    let hi: number;
    if (v.kind === 'num') lo = hi = v.v;
    else if (v.kind === 'range' && v.lo.kind === 'num' && v.hi.kind === 'num') {
      lo = v.lo.v;
      hi = v.hi.v;
    } else return null;
    if (key.field === 'dport') return (p) => (p.l4 !== want ? 0 : (p.dport >= lo && p.dport <= hi) !== neg ? 1 : 0);
    return (p) => (p.l4 !== want ? 0 : (p.sport >= lo && p.sport <= hi) !== neg ? 1 : 0);
  }
  if (key.kind === 'meta' && (key.key === 'iifname' || key.key === 'iif') && v.kind === 'str') {
    const f = ifaceMatcher(v.v);
    return (p) => (f(p.iif ?? '') !== neg ? 1 : 0);
  }
  return null;
}

function lowerSyms(v: Value): Value {
  if (v.kind === 'sym') return { kind: 'sym', v: v.v.toLowerCase() };
  if (v.kind === 'set') return { kind: 'set', items: v.items.map(lowerSyms) };
  return v;
}

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
