/**
 * What each hairpin path should do on THIS host:
 *
 *   userland-proxy on   the nat DOCKER chain skips traffic from the target's own bridge
 *                       (`-i docker0 -j RETURN`, Docker 28+: `! -i br` on the DNAT rule), so a
 *                       container calling host:port reaches docker-proxy, which opens its own
 *                       connection from the bridge gateway: the target sees the gateway.
 *                       127.0.0.1 is excluded from nat OUTPUT: docker-proxy answers it too.
 *   userland-proxy off  DNAT in PREROUTING (OUTPUT for the host, loopback included); between two
 *                       containers of one bridge there is no SNAT (the target sees the caller) and
 *                       the reply must cross netfilter on the bridge (bridge-nf-call-iptables);
 *                       a container calling its own port is DNATed back to itself: the bridge
 *                       must send the frame out the port it came in (hairpin_mode) and Docker's
 *                       MASQUERADE rule rewrites the source to the gateway; 127.0.0.1 needs
 *                       route_localnet on the bridge and the "src-type LOCAL" MASQUERADE.
 *   isolation           Docker < 28 drops traffic between bridges (DOCKER-ISOLATION-STAGE-2)
 *                       even through a published port; Docker 28+ accepts it (per-port ACCEPT in
 *                       filter DOCKER) and masquerades it when the caller's network masquerades.
 *   icc=false           traffic between containers of one bridge is dropped, DNATed or not.
 *
 * IPv6 paths read the host's IPv6 view (./family-view.ts: the ip6 tables, bridge-nf-call-ip6tables).
 * This module gives the expectation of one path (expectFor) and what it rests on (the DNAT rule that
 * applies, whether the userland proxy answers); ./plan.ts lists the paths for every published port.
 * Pure: nothing is sent here.
 */
import type { HostFacts } from './host-facts.js';
import type { Inventory, PublishedPortSpec } from './endpoints.js';
import { bridgeOfAddr } from './endpoints.js';
import { masqFor, type DnatRule } from './docker-rules.js';
import { HAIRPIN_PATHS, type PathFacts } from './hairpin-paths.js';
import { addrPort, familyOfAddr, gatewayOfFamily, hostForFamily, isLoopback } from './family-view.js';
import type { CheckKind, Expectation, Peer } from './types.js';

export function hostAddressOf(host: HostFacts, given?: string): string | null {
  if (given !== undefined && familyOfAddr(given) === (host.family ?? 4)) return given;
  return host.hostAddrs[0]?.addr ?? null;
}

export function generationOf(host: HostFacts): string {
  const r = host.ruleset;
  if (r.backends.includes('nftables') && r.dnat.some((d) => d.backend === 'nftables')) return 'docker29-nftables';
  if (r.chains.some((c) => c.endsWith('/DOCKER-ISOLATION-STAGE-1'))) return 'docker<28';
  if (r.chains.some((c) => c.endsWith('/DOCKER-FORWARD'))) return 'docker28+';
  if (r.backends.includes('nftables')) return 'docker29-nftables';
  return 'unknown';
}

/** Whether the userland proxy serves this port, and how we know. */
export function proxyFor(host: HostFacts, inv: Inventory, p: PublishedPortSpec): { on: boolean; why: string } {
  const proc = host.dockerProxies.find((x) => x.hostPort === p.hostPort && x.proto === p.proto);
  if (proc) return { on: true, why: `docker-proxy pid ${proc.pid} listens on ${proc.hostIp}:${proc.hostPort}/${proc.proto}` };
  const rule = host.ruleset.dnat.find((d) => d.hostPort === p.hostPort && d.proto === p.proto);
  if (host.ruleset.natReturnIfaces.length > 0)
    return {
      on: true,
      why: `nat DOCKER returns traffic from ${host.ruleset.natReturnIfaces.join(', ')} (userland-proxy on), but no docker-proxy process was found`,
    };
  if (rule?.notFromIface != null)
    return { on: true, why: `the DNAT rule skips traffic from ${rule.notFromIface} (userland-proxy on), but no docker-proxy process was found` };
  if (inv.docker.userlandProxy === true) return { on: true, why: 'dockerd runs with the userland proxy on, but no docker-proxy process was found' };
  if (host.ruleset.outputNatsLoopback === false) return { on: true, why: 'nat OUTPUT excludes 127.0.0.0/8 (userland-proxy on)' };
  return {
    on: false,
    why:
      inv.docker.userlandProxy === false
        ? 'dockerd runs with --userland-proxy=false'
        : 'no docker-proxy process; the DNAT rules apply to every bridge (userland-proxy off)',
  };
}

/** The DNAT rule that applies to a packet to `dst:port` arriving on `iif` (null: sent by the host, OUTPUT). */
export function dnatFor(host: HostFacts, p: PublishedPortSpec, dst: string, iif: string | null): DnatRule | null {
  const loop = isLoopback(dst);
  // ::1 is never DNATed to a container (IPv6 has no route_localnet: it may not leave the host)
  if (iif === null && loop && (host.ruleset.outputNatsLoopback !== true || dst === '::1')) return null;
  // Docker < 28 with the userland proxy: `-A DOCKER -i <bridge> -j RETURN` for every bridge, before the DNAT rules.
  if (iif !== null && host.ruleset.natReturnIfaces.includes(iif)) return null;
  for (const d of host.ruleset.dnat) {
    if (d.proto !== p.proto || d.hostPort !== p.hostPort) continue;
    if (d.hostIp !== null && d.hostIp !== dst) continue;
    if (d.notFromIface !== null && iif !== null && d.notFromIface === iif) continue;
    return d;
  }
  return null;
}

export function expectFor(given: HostFacts, inv: Inventory, p: PublishedPortSpec, kind: CheckKind, from: Peer, dst: string): Expectation {
  const host = hostForFamily(given, familyOfAddr(dst));
  const tBridgeInfo = bridgeOfAddr(host.bridges, p.containerIp);
  const tBridge = tBridgeInfo?.name ?? null;
  const gw = gatewayOfFamily(tBridgeInfo, p.containerIp);
  const target = addrPort(p.containerIp, p.containerPort);
  const tName = p.container ?? p.containerIp;
  const iif = from.kind === 'host' ? null : from.bridge;
  const rule = dnatFor(host, p, dst, iif);
  const requires: string[] = [];
  if (rule === null) {
    // docker-proxy must answer: it listens on the host and connects from the bridge gateway.
    requires.push(`docker-proxy listening on ${p.hostIp}:${p.hostPort}/${p.proto}`);
    const why =
      from.kind === 'host' && dst === '::1'
        ? '::1 is never DNATed to a container (IPv6 has no route_localnet)'
        : from.kind === 'host' && dst.startsWith('127.')
          ? 'nat OUTPUT does not DNAT 127.0.0.0/8 (userland-proxy on)'
          : rule === null && iif !== null
            ? `traffic from ${iif} is not DNATed (userland-proxy on)`
            : 'no DNAT rule applies';
    return {
      outcome: 'connect',
      via: 'docker-proxy',
      dnatTo: null,
      targetSeesSource: gw ?? 'the bridge gateway',
      sourceWhy: `docker-proxy opens its own connection from the ${tBridge ?? 'bridge'} gateway`,
      requires,
      blockedBy: null,
      masqRule: null,
      dnatRule: null,
      text: `${why}: docker-proxy answers on ${addrPort(dst, p.hostPort)} and connects to ${tName} (${target}) from ${gw ?? 'the gateway'}`,
    };
  }
  // DNAT path: what it needs and what blocks it come from its entry in HAIRPIN_PATHS.
  const path = HAIRPIN_PATHS[kind];
  const tPort = tBridgeInfo?.ports.find((x) => inv.endpoints.some((e) => e.ip === p.containerIp && e.port === x.ifname));
  const facts: PathFacts = {
    host,
    proto: p.proto,
    containerIp: p.containerIp,
    containerPort: p.containerPort,
    bridge: tBridge,
    name: tName,
    fromBridge: from.bridge,
    targetPort: tPort?.ifname ?? null,
  };
  const srcIp = from.kind === 'host' ? (isLoopback(dst) ? (dst === '::1' ? '::1' : '127.0.0.1') : dst) : from.ip;
  const srcIsLocal = from.kind === 'host';
  const masq = masqFor(host.ruleset, { src: srcIp, dst: p.containerIp, proto: p.proto, dport: p.containerPort, oif: tBridge ?? '', srcIsLocal });
  let sees = srcIp;
  let sourceWhy = path.noSnatWhy;
  if (masq) {
    sees = masq.target === 'SNAT' && masq.toSource !== null ? masq.toSource : (gw ?? 'the bridge gateway');
    sourceWhy = `${masq.target} (${masq.raw})`;
  } else if (path.needsMasq !== null) {
    // Docker always installs these (self-hairpin MASQUERADE; src-type LOCAL MASQUERADE with the
    // userland proxy off): without them the path cannot work, so expect them and name their absence.
    sees = gw ?? 'the bridge gateway';
    sourceWhy = path.needsMasq;
  }
  const blockedBy = path.blockedBy(facts);
  requires.push(...path.requires(facts));
  return {
    outcome: blockedBy === null ? 'connect' : 'blocked',
    via: 'dnat',
    dnatTo: target,
    targetSeesSource: sees,
    sourceWhy,
    requires,
    blockedBy,
    masqRule: masq?.raw ?? null,
    dnatRule: rule.raw,
    text:
      blockedBy !== null
        ? `DNAT to ${tName} (${target}), then dropped by design: ${blockedBy}`
        : `DNAT in ${from.kind === 'host' ? 'OUTPUT' : 'PREROUTING'} to ${tName} (${target}); ${tName} sees ${sees} as the source (${masq ? `${masq.target}${path.masqLabel}` : sourceWhy})`,
  };
}
