/**
 * The tuple each leg had on the wire. A packet socket on a Linux bridge sees a frame that enters
 * the bridge from a container's port only after br_netfilter has run the IPv4 prerouting hook on
 * it: conntrack has by then rewritten its destination (the DNAT of a first packet, the de-SNAT of a
 * reply), although the container sent it to the original destination (the eBPF hook tuples show
 * it). The earliest leg of a direction whose source is that direction's conntrack source but whose
 * destination is not is such a view: it is shown with the destination it had on the wire, the
 * conntrack tuple of its direction. When that leg was also the packet's way out (a hairpin back
 * out of the same bridge, no SNAT), the captured leg stays as the egress crossing.
 * Packets the host sends itself have no ingress: their legs are left as captured.
 */
import type { FlowLeg } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import type { Tuple } from '../model/tuple.js';

const sameEnd = (a: Tuple, b: Tuple, end: 'src' | 'dst'): boolean =>
  end === 'src' ? a.src === b.src && a.sport === b.sport : a.dst === b.dst && a.dport === b.dport;

export function wireLegs(legs: readonly FlowLeg[], orig: Tuple, reply: Tuple | null, explanation: Explanation | null): FlowLeg[] {
  let out = [...legs];
  const fix = (dir: 'orig' | 'reply', want: Tuple, fromHost: boolean): void => {
    if (fromHost) return;
    const mine = out.filter((l) => l.direction === dir).sort((a, b) => a.firstUs - b.firstUs);
    const first = mine[0];
    if (!first || first.tuple.proto !== want.proto || first.tuple.proto === 'icmp' || first.tuple.proto === 'icmpv6') return;
    if (!sameEnd(first.tuple, want, 'src') || sameEnd(first.tuple, want, 'dst')) return;
    const wire: FlowLeg = { ...first, tuple: { ...first.tuple, dst: want.dst, dport: want.dport } };
    // the translated tuple also left through another leg: this one was the ingress only
    const egressElsewhere = mine.some((l) => l !== first && sameEnd(l.tuple, first.tuple, 'dst'));
    out = egressElsewhere ? out.map((l) => (l === first ? wire : l)) : out.flatMap((l) => (l === first ? [wire, l] : [l]));
  };
  if (explanation === null) return out;
  fix('orig', orig, explanation.packet_out?.delivery === 'output');
  if (reply !== null && explanation.reply !== undefined)
    fix('reply', reply, explanation.reply.packet_out?.delivery === 'output' || explanation.reply.steps.length === 0);
  return out;
}
