/**
 * A rule's match compiled into a closure returning 0 (no match), 1 (match) or 2 (cannot be
 * evaluated, with a reason): the common ones allocation-free, the rest from a key extractor and a
 * value matcher.
 */
import type { MatchExpr, Table } from '../ruleset/model.js';
import { cidrContains, parseCidr } from '../ruleset/ip.js';
import type { HostContext } from '../ruleset/host-context.js';
import { PROTO_BY_NAME } from '../model/tuple.js';
import type { SimPacket } from './packet.js';
import type { IpSet } from '../ruleset/ipset.js';
import { alwaysMatches, undecidedKind } from './undecided.js';
import type { CCond, Tri } from './compile.js';
import { extractor } from './key-extract.js';
import { ifaceMatcher, lowerSyms, symNumber, valueTest } from './value-match.js';

export const T = (b: boolean): Tri => (b ? 1 : 0);

const CT_STATE_FLAGS = new Set(['new', 'established', 'related', 'invalid', 'untracked']);

export function compileMatch(m: MatchExpr, table: Table, host: HostContext, ipsets?: ReadonlyMap<string, IpSet>): CCond {
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
