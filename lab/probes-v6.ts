/**
 * The IPv6 probes of the dual-stack scenarios: for every IPv4 probe that means something over IPv6
 * (published port, direct access, hairpin, outbound, ping6, unpublished port) the same question
 * asked over the uplink's IPv6 layer (fd00:10::/64, the outside 2001:db8:ff::10). Names end in `6`.
 * Expectations are what Docker 20.10 does: with `ip6tables` on it writes the same NAT and filter
 * rules for IPv6 as for IPv4; with it off (and no IPv6 in the engine) only docker-proxy, listening
 * on [::], carries a published port, to the container's IPv4 address.
 */
import type { ProbeDef, ProbeProto } from './probes.js';

const p6 = (
  name: string,
  from: string,
  proto: ProbeProto,
  to: string,
  port: number | undefined,
  expect: ProbeDef['expect'],
  description: string,
): ProbeDef => ({ name, from, proto, to, ...(port !== undefined ? { port } : {}), expect, description, family: 6 });

/** dockerd with IPv6, fixed-cidr-v6 and ip6tables; `web` publishes 8000 on [::] too; proxy off; ip6 DOCKER-USER drops ext2. */
export function ip6tablesProbes(): ProbeDef[] {
  return [
    p6('ext-to-published6', 'ext', 'tcp', 'host', 8000, 'answer', 'external -> [fd00:10::26]:8000 (ip6tables DNAT to web:80 over IPv6)'),
    p6(
      'ext2-to-published6',
      'ext2',
      'tcp',
      'host',
      8000,
      'no-answer',
      'second external client -> [fd00:10::26]:8000 (DNATed, then dropped by the ip6 DOCKER-USER rule -s fd00:10::6 -j DROP)',
    ),
    p6('container-to-outside6', 'client', 'tcp', 'outside', 80, 'answer', 'client -> [2001:db8:ff::10]:80 (MASQUERADE to fd00:10::26: NAT66)'),
    p6('container-udp-outside6', 'client', 'udp', 'outside', 53, 'answer', 'client -> [2001:db8:ff::10]:53/udp (MASQUERADE)'),
    p6('container-ping6-outside', 'client', 'icmp', 'outside', undefined, 'answer', 'client ping6s 2001:db8:ff::10 (MASQUERADE)'),
    p6('container-ping6-host', 'client', 'icmp', 'host', undefined, 'answer', 'client ping6s the host address fd00:10::26'),
    p6('hairpin6', 'client', 'tcp', 'host', 8000, 'answer', 'client -> [fd00:10::26]:8000 (hairpin DNAT over IPv6, no SNAT)'),
    p6('self-hairpin6', 'web', 'tcp', 'host', 8000, 'answer', 'web -> its own published port [fd00:10::26]:8000 (DNAT + MASQUERADE to the gateway)'),
    p6(
      'host-localhost6',
      'host',
      'tcp',
      'localhost',
      8000,
      'no-answer',
      'host -> [::1]:8000 (nat OUTPUT DNATs it, but IPv6 has no route_localnet: ::1 cannot leave the host, dropped by routing)',
    ),
    p6('host-to-container6', 'host', 'tcp', 'container:web', 80, 'answer', 'host -> [web]:80 directly over IPv6'),
    p6('container-to-container6', 'client', 'tcp', 'container:web', 80, 'answer', 'client -> [web]:80 on docker0 over IPv6'),
    p6('unpublished-port6', 'ext', 'tcp', 'host', 8081, 'no-answer', 'external -> [fd00:10::26]:8081 (nothing published: refused by the host)'),
    p6(
      'direct-access6',
      'ext',
      'tcp',
      'container:web',
      80,
      'answer',
      'external -> [web]:80 routed through the host (ip6tables filter DOCKER accepts the published port)',
    ),
    p6(
      'direct-unpublished6',
      'ext',
      'tcp',
      'container:web',
      81,
      'no-answer',
      'external -> [web]:81 routed through the host (ip6tables FORWARD policy DROP)',
    ),
  ];
}

/** No IPv6 in the engine, the uplink dual-stack, proxy on: docker-proxy on [::]:8000 to web's IPv4 address. */
export function proxy6Probes(): ProbeDef[] {
  return [
    p6(
      'ext-to-published6',
      'ext',
      'tcp',
      'host',
      8000,
      'answer',
      'external -> [fd00:10::26]:8000 (docker-proxy on [::]:8000 -> 172.17.0.1 -> web 172.17.0.2:80)',
    ),
    p6('ext2-to-published6', 'ext2', 'tcp', 'host', 8000, 'answer', 'second external client -> [fd00:10::26]:8000 (docker-proxy)'),
    p6('host-localhost6', 'host', 'tcp', 'localhost', 8000, 'answer', 'host -> [::1]:8000 (docker-proxy listens on [::])'),
    p6('unpublished-port6', 'ext', 'tcp', 'host', 8081, 'no-answer', 'external -> [fd00:10::26]:8081 (nothing listens: refused by the host)'),
    p6('ext-ping6-host', 'ext', 'icmp', 'host', undefined, 'answer', 'external ping6s the host address fd00:10::26'),
  ];
}
