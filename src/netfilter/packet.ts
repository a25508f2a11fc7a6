/** The packet as the simulator carries it through the hooks (mutable: NAT and marks rewrite it). */
import type { Hook } from '../model/explanation.js';
import type { Ip } from '../ruleset/ip.js';

export type CtState = 'new' | 'established' | 'related' | 'invalid' | 'untracked';

export interface SimPacket {
  v: 4 | 6;
  /** IP protocol number. */
  l4: number;
  src: Ip;
  dst: Ip;
  sport: number;
  dport: number;
  icmpType: number | null;
  icmpCode: number | null;
  /** Interface names; null when the hook has none (no iif in output, no oif before routing). */
  iif: string | null;
  oif: string | null;
  mark: number;
  ctMark: number;
  /** State as the packet's conntrack entry says (invalid before the conntrack hook has run). */
  ctState: CtState;
  ctDirection: 'original' | 'reply';
  /** Conntrack status flags: dnat, snat, confirmed, seen-reply, assured, expected. */
  ctStatus: Set<string>;
  /** Whether a conntrack entry is attached (false before priority -200 and for untracked). */
  ctAttached: boolean;
  /** Original and reply tuples of the connection (as the simulator maintains them). */
  ctOrig: { src: Ip; dst: Ip; sport: number; dport: number } | null;
  ctReply: { src: Ip; dst: Ip; sport: number; dport: number } | null;
  hook: Hook;
  nftrace: boolean;
}

export const ICMP_TYPES: Record<string, number> = {
  'echo-reply': 0,
  'destination-unreachable': 3,
  'source-quench': 4,
  redirect: 5,
  'echo-request': 8,
  'router-advertisement': 9,
  'router-solicitation': 10,
  'time-exceeded': 11,
  'parameter-problem': 12,
  'timestamp-request': 13,
  'timestamp-reply': 14,
  'info-request': 15,
  'info-reply': 16,
  'address-mask-request': 17,
  'address-mask-reply': 18,
};

export const ICMPV6_TYPES: Record<string, number> = {
  'destination-unreachable': 1,
  'packet-too-big': 2,
  'time-exceeded': 3,
  'parameter-problem': 4,
  'echo-request': 128,
  'echo-reply': 129,
  'mld-listener-query': 130,
  'mld-listener-report': 131,
  'mld-listener-done': 132,
  'mld-listener-reduction': 132,
  'nd-router-solicit': 133,
  'nd-router-advert': 134,
  'nd-neighbor-solicit': 135,
  'nd-neighbor-advert': 136,
  'nd-redirect': 137,
  'router-renumbering': 138,
  'ind-neighbor-solicit': 141,
  'ind-neighbor-advert': 142,
  'mld2-listener-report': 143,
};
