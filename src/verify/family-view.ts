/**
 * The IPv6 view of a host's facts, so the hairpin plan, the judgement and the causes read IPv6
 * paths as they read IPv4 ones: Docker's facts of the ip6 tables (DNAT, MASQUERADE, icc,
 * isolation), the host's global IPv6 addresses, `bridge-nf-call-ip6tables` (per host and per
 * bridge) and `net.ipv6.conf.all.forwarding`. IPv6 has no route_localnet: ::1 is never routed out of
 * the host, so nothing DNATs it to a container (only docker-proxy answers [::1]:port).
 */
import type { BridgeInfo, HostFacts } from './host-facts.js';

export type AddrFamily = 4 | 6;

/** The family of an address (an IPv6 address has a colon). */
export function familyOfAddr(ip: string): AddrFamily {
  return ip.includes(':') ? 6 : 4;
}

/** Whether an address is a loopback address (127.0.0.0/8, ::1). */
export function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

/** An address with its port as people and tools write it: 10.0.0.1:80, [fd00::1]:80. */
export function addrPort(ip: string, port: number | string): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The bridge's gateway address in the family of `like` (an address of that family). */
export function gatewayOfFamily(b: BridgeInfo | null | undefined, like: string): string | null {
  if (b === null || b === undefined) return null;
  return (familyOfAddr(like) === 6 ? b.addrs6?.[0]?.addr : b.addrs[0]?.addr) ?? null;
}

/** The host's facts as seen by family `family` (4: the facts themselves). */
export function hostForFamily(host: HostFacts, family: AddrFamily): HostFacts {
  if (family === 4 || host.family === 6) return host;
  const v6 = host.v6;
  return {
    ...host,
    family: 6,
    bridges: host.bridges.map((b) => ({ ...b, nfCallIptables: b.nfCallIp6tables ?? null, routeLocalnet: null })),
    hostAddrs: v6?.hostAddrs ?? [],
    localAddrs: v6?.localAddrs ?? [],
    bridgeNfCallIptables: v6?.bridgeNfCallIp6tables ?? null,
    routeLocalnetAll: null,
    ipForward: v6?.forwarding ?? null,
    ruleset: v6?.ruleset ?? { ...host.ruleset, dnat: [], masq: [], natReturnIfaces: [], outputNatsLoopback: null },
  };
}

/** The name of a family's sysctl, as the causes say it. */
export function nfCallName(host: HostFacts): string {
  return host.family === 6 ? 'bridge-nf-call-ip6tables' : 'bridge-nf-call-iptables';
}
