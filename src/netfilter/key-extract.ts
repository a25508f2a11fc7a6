/**
 * Key extractors of the compiled ruleset: what a match's left-hand side (payload field, meta, ct,
 * fib, socket…) reads from the simulated packet, or why it cannot be read.
 */
import type { NfFamily } from '../model/explanation.js';
import type { Key } from '../ruleset/model.js';
import { type HostContext, addrType, lookupRoute } from '../ruleset/host-context.js';
import { PROTO_BY_NAME } from '../model/tuple.js';
import type { SimPacket } from './packet.js';
import type { Scalar } from './value-match.js';

export interface KeyExtractor {
  /** Returns the scalar, null when the expression "breaks" (the rule does not match), or undefined if unknown. */
  readonly get: (p: SimPacket) => Scalar | null | undefined;
  readonly reason: string;
}

const TH = new Set([6, 17, 132, 136, 33]);

export function extractor(key: Key, host: HostContext, tableFamily: NfFamily): KeyExtractor | null {
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
