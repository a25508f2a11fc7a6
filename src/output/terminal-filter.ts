/**
 * Display filters of `journey watch` (applied to flow events; the capture filter is libpcap's).
 * A flow passes when it matches every given criterion:
 *   container  a container name (any endpoint of the flow, either side of NAT)
 *   port       a port on either side, before or after NAT
 *   proto      tcp | udp | icmp | icmpv6 | sctp
 *   verdict    accept | drop | reject | indeterminate (needs explanations)
 *   natOnly    only flows with DNAT or SNAT
 *   addr       an address on either side, before or after NAT
 */
import type { FlowInfo, JourneyEvent } from '../model/events.js';

export interface FlowFilter {
  readonly container?: readonly string[];
  readonly port?: readonly number[];
  readonly proto?: readonly string[];
  readonly verdict?: readonly string[];
  readonly natOnly?: boolean;
  readonly addr?: readonly string[];
}

export function flowMatches(f: FlowInfo, flt: FlowFilter): boolean {
  const tuples = [f.orig, ...(f.reply ? [f.reply] : []), ...f.legs.map((l) => l.tuple)];
  if (flt.container?.length) {
    const names = new Set(f.names.map((n) => n.container).filter((c): c is string => c !== undefined));
    if (!flt.container.some((c) => names.has(c))) return false;
  }
  if (flt.port?.length) {
    const icmp = f.orig.proto === 'icmp' || f.orig.proto === 'icmpv6';
    if (icmp) return false;
    const ports = new Set(tuples.flatMap((t) => [t.sport, t.dport]));
    if (!flt.port.some((p) => ports.has(p))) return false;
  }
  if (flt.proto?.length && !flt.proto.includes(f.orig.proto)) return false;
  if (flt.verdict?.length) {
    const v = f.explanation?.verdict;
    if (v === undefined || !flt.verdict.includes(v)) return false;
  }
  if (flt.natOnly && f.nat.dnat === null && f.nat.snat === null) return false;
  if (flt.addr?.length) {
    const addrs = new Set(tuples.flatMap((t) => [t.src, t.dst]));
    if (!flt.addr.some((a) => addrs.has(a))) return false;
  }
  return true;
}

/** Non-flow events always pass; flow events pass the filter. */
export function eventMatches(ev: JourneyEvent, flt: FlowFilter): boolean {
  if (ev.type === 'flow.start' || ev.type === 'flow.update' || ev.type === 'flow.end') return flowMatches(ev.flow, flt);
  return true;
}
