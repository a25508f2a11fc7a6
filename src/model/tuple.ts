/** The layer-3/4 identity of a packet or of one direction of a conntrack entry. */
export type IpFamily = 4 | 6;
export type L4Proto = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | 'other';

export interface Tuple {
  readonly family: IpFamily;
  readonly proto: L4Proto;
  /** IP protocol number (6, 17, 1, 58, ...). */
  readonly protoNum: number;
  readonly src: string;
  readonly dst: string;
  /** TCP/UDP/SCTP ports; for ICMP echo, sport = dport = the echo id (as conntrack keys it). */
  readonly sport: number;
  readonly dport: number;
  /** ICMP type and code when proto is icmp/icmpv6. */
  readonly icmpType?: number;
  readonly icmpCode?: number;
}

/** A stable string key: "tcp 10.0.10.5:40000>10.0.10.26:8000". */
export function tupleKey(t: Tuple): string {
  return `${t.proto} ${t.src}:${t.sport}>${t.dst}:${t.dport}`;
}

export function reverseTuple(t: Tuple): Tuple {
  return { ...t, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport };
}

export function formatEndpoint(addr: string, port: number | undefined, family: IpFamily): string {
  if (port === undefined) return addr;
  return family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** IP protocol numbers by the names iptables, nft and conntrack print. */
export const PROTO_BY_NAME: Readonly<Record<string, number>> = {
  icmp: 1,
  igmp: 2,
  tcp: 6,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  icmpv6: 58,
  'ipv6-icmp': 58,
  icmp6: 58,
  sctp: 132,
  udplite: 136,
  dccp: 33,
};
