/**
 * Value matchers of the compiled ruleset: a rule's right-hand side (an address, prefix, number,
 * range, interface name with wildcard, symbolic constant or named set) as a test of one scalar
 * read from the packet.
 */
import type { Key, NamedSet, Value } from '../ruleset/model.js';
import { type Ip, cidrContains, parseCidr, parseIp } from '../ruleset/ip.js';
import { PROTO_BY_NAME } from '../model/tuple.js';
import { ICMP_TYPES, ICMPV6_TYPES } from './packet.js';

export type Scalar = { t: 'ip'; ip: Ip } | { t: 'num'; n: number } | { t: 'str'; s: string };

export function ifaceMatcher(pattern: string): (s: string) => boolean {
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

export function symNumber(key: Key, v: string): number | null {
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
export function valueTest(key: Key, v: Value, sets: ReadonlyMap<string, NamedSet>): ((x: Scalar) => boolean) | null {
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

export function lowerSyms(v: Value): Value {
  if (v.kind === 'sym') return { kind: 'sym', v: v.v.toLowerCase() };
  if (v.kind === 'set') return { kind: 'set', items: v.items.map(lowerSyms) };
  return v;
}
