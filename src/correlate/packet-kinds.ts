/** What kind of packet an observation is, as far as joining it to a flow goes. */
import type { Observation } from '../model/observation.js';
import { reverseTuple, type Tuple } from '../model/tuple.js';

/** The tuple a packet is looked up by: for ICMP errors, the connection of the embedded packet. */
export function probeTuple(obs: Observation): Tuple {
  return obs.inner !== undefined && obs.tuple.proto !== 'tcp' && obs.tuple.proto !== 'udp' ? reverseTuple(obs.inner) : obs.tuple;
}

/** Neighbour discovery, MLD, IGMP, DHCP: link plumbing that conntrack does not track. */
export function isLinkControl(o: Observation): boolean {
  const t = o.tuple;
  if (t.proto === 'icmpv6') return t.icmpType !== undefined && ((t.icmpType >= 130 && t.icmpType <= 137) || t.icmpType === 143);
  if (t.protoNum === 2) return true; // IGMP
  // DHCP and DHCPv6, requests and replies alike (client 68/546, server 67/547)
  if (
    t.proto === 'udp' &&
    ((t.sport === 68 && t.dport === 67) ||
      (t.sport === 67 && t.dport === 68) ||
      (t.sport === 546 && t.dport === 547) ||
      (t.sport === 547 && t.dport === 546))
  )
    return true;
  return false;
}
