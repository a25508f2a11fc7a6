/** Docker names of a flow's endpoints: destination first, then source, then the reply side (after NAT). */
import type { EndpointName } from '../model/events.js';
import type { NameResolver } from './correlator.js';
import type { FlowState } from './flow-state.js';

export function flowNames(f: FlowState, names: NameResolver): EndpointName[] {
  const out: EndpointName[] = [];
  const seen = new Set<string>();
  const add = (addr: string, port: number | undefined): void => {
    if (seen.has(addr)) return;
    const n = names(addr, port, f.orig.proto);
    if (n) {
      seen.add(addr);
      out.push(n);
    }
  };
  const icmp = f.orig.proto === 'icmp' || f.orig.proto === 'icmpv6';
  add(f.orig.dst, icmp ? undefined : f.orig.dport);
  add(f.orig.src, icmp ? undefined : f.orig.sport);
  if (f.reply) {
    add(f.reply.src, icmp ? undefined : f.reply.sport);
    add(f.reply.dst, icmp ? undefined : f.reply.dport);
  }
  // a copy exactly as long as it is: a live flow keeps it (a pushed-to array keeps room for 17)
  return out.slice();
}
