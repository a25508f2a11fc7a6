/**
 * NAT of a conntrack entry, derived from its tuples (works for every source, including the
 * /proc and conntrack-tool formats, which lack the SNAT/DNAT status bits):
 *   DNAT when the reply does not come from where the original went: orig.dst != reply.src
 *   SNAT when the reply does not go back to where the original came from: orig.src != reply.dst
 * Ports count (a port-only rewrite is NAT); for ICMP the echo id plays the port.
 */
import type { NatMapping } from '../model/conntrack.js';
import { formatEndpoint, type Tuple } from '../model/tuple.js';

function ep(addr: string, port: number, t: Tuple): string {
  const icmp = t.proto === 'icmp' || t.proto === 'icmpv6' || t.proto === 'other';
  return formatEndpoint(addr, icmp ? undefined : port, t.family);
}

export function natOf(orig: Tuple, reply: Tuple): NatMapping {
  const dnatChanged = orig.dst !== reply.src || orig.dport !== reply.sport;
  const snatChanged = orig.src !== reply.dst || orig.sport !== reply.dport;
  return {
    dnat: dnatChanged ? { from: ep(orig.dst, orig.dport, orig), to: ep(reply.src, reply.sport, orig) } : null,
    snat: snatChanged ? { from: ep(orig.src, orig.sport, orig), to: ep(reply.dst, reply.dport, orig) } : null,
  };
}

/** The tuple the original direction has after NAT (as seen past POSTROUTING, e.g. on the bridge). */
export function origAfterNat(reply: Tuple): Tuple {
  return {
    ...reply,
    src: reply.dst,
    dst: reply.src,
    sport: reply.dport,
    dport: reply.sport,
    ...(reply.icmpType !== undefined ? { icmpType: reply.icmpType === 0 ? 8 : reply.icmpType === 129 ? 128 : reply.icmpType } : {}),
  };
}

export function hasNat(n: NatMapping): boolean {
  return n.dnat !== null || n.snat !== null;
}
