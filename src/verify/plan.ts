/**
 * Which hairpin checks to run for each published port, and what each should do on THIS host:
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
 * Pure: from HostFacts + Inventory to planned checks; nothing is sent here.
 */
import type { HostFacts } from './host-facts.js';
import type { Endpoint, Inventory, PublishedPortSpec } from './endpoints.js';
import { bridgeOfAddr } from './endpoints.js';
import { masqFor, type DnatRule } from './docker-rules.js';
import { HAIRPIN_PATHS, type PathFacts } from './hairpin-paths.js';
import { addrPort, familyOfAddr, gatewayOfFamily, hostForFamily, isLoopback } from './family-view.js';
import type { CheckKind, Expectation, HostSummary, Peer, PortRef } from './types.js';

export interface PlannedCheck {
  readonly id: string;
  readonly kind: CheckKind;
  readonly port: PortRef;
  readonly from: Peer;
  /** Namespace the probe runs in: a pid, a netns path, or undefined for the host namespace itself. */
  readonly fromNs: string | number | null;
  /** The bridge port of the caller (host side of its veth), when it is a container. */
  readonly fromPort: string | null;
  readonly dstIp: string;
  readonly dstPort: number;
  readonly expected: Expectation | null;
  readonly skipReason: string | null;
}

export interface PlanOptions {
  /** The host address containers and the host call (default: the first global address not on a bridge). */
  readonly hostAddr?: string;
  /** Only these published ports ("8000", "8000/tcp"). */
  readonly ports?: readonly string[];
  /** Only these kinds of checks. */
  readonly kinds?: readonly CheckKind[];
}

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

function portRef(p: PublishedPortSpec, bridge: string | null): PortRef {
  return {
    proto: p.proto,
    hostIp: p.hostIp,
    hostPort: p.hostPort,
    container: p.container,
    containerIp: p.containerIp,
    containerPort: p.containerPort,
    bridge,
    source: p.source,
  };
}

function peerOf(e: Endpoint): Peer {
  return { kind: 'container', name: e.name, ip: e.ip, bridge: e.bridge, pid: e.pid };
}

function portSelected(p: PublishedPortSpec, sel: readonly string[] | undefined): boolean {
  if (sel === undefined || sel.length === 0) return true;
  return sel.some((s) => s === String(p.hostPort) || s === `${p.hostPort}/${p.proto}`);
}

/** The checks for every published port (pure). */
export function planChecks(host: HostFacts, inv: Inventory, opts: PlanOptions = {}): PlannedCheck[] {
  const out: PlannedCheck[] = [];
  const want = (k: CheckKind): boolean => opts.kinds === undefined || opts.kinds.length === 0 || opts.kinds.includes(k);
  const hostPeer = (ip: string): Peer => ({ kind: 'host', name: 'host', ip, bridge: null, pid: null });
  for (const p of inv.ports) {
    if (!portSelected(p, opts.ports)) continue;
    // a port bound on an IPv6 address is called over IPv6, by callers with an IPv6 address
    const fam = familyOfAddr(p.hostIp);
    const hv = hostForFamily(host, fam);
    const hostAddr = hostAddressOf(hv, opts.hostAddr);
    const endpoints = inv.endpoints.filter((e) => familyOfAddr(e.ip) === fam);
    const lo = fam === 6 ? '::1' : '127.0.0.1';
    const tb = bridgeOfAddr(host.bridges, p.containerIp);
    const ref = portRef(p, tb?.name ?? null);
    const target = endpoints.find((e) => e.ip === p.containerIp) ?? endpoints.find((e) => p.container !== null && e.name === p.container) ?? null;
    const loopOnly = isLoopback(p.hostIp);
    const anyAddr = p.hostIp === '0.0.0.0' || p.hostIp === '' || p.hostIp === '::';
    const dst = anyAddr ? hostAddr : loopOnly ? null : p.hostIp;
    const mk = (
      kind: CheckKind,
      from: Peer,
      fromNs: string | number | null,
      fromPort: string | null,
      dstIp: string | null,
      skip: string | null,
    ): void => {
      if (!want(kind)) return;
      const d = dstIp ?? (loopOnly ? lo : (hostAddr ?? '?'));
      const id = `${kind}:${from.name}->${addrPort(d, p.hostPort)}/${p.proto}`;
      let skipReason = skip;
      if (skipReason === null && p.proto !== 'tcp' && p.proto !== 'udp')
        skipReason = `${p.proto.toUpperCase()} ports are not probed: only TCP and UDP are checked`;
      if (skipReason === null && dstIp === null)
        skipReason = loopOnly
          ? `published on ${p.hostIp} only: not reachable from containers, by design`
          : 'the host has no address to call (give --host-addr)';
      out.push({
        id,
        kind,
        port: ref,
        from,
        fromNs,
        fromPort,
        dstIp: d,
        dstPort: p.hostPort,
        expected: skipReason === null ? expectFor(host, inv, p, kind, from, d) : null,
        skipReason,
      });
    };
    // same bridge: another container on the target's bridge
    const same = endpoints.filter((e) => e.bridge === tb?.name && e.ip !== p.containerIp && e.name !== p.container);
    const sameFirst = same[0];
    if (sameFirst) mk('same-bridge', peerOf(sameFirst), sameFirst.ns, sameFirst.port, dst, null);
    else
      mk(
        'same-bridge',
        { kind: 'container', name: '(none)', ip: '', bridge: tb?.name ?? null, pid: null },
        null,
        null,
        dst,
        `no other container on ${tb?.name ?? 'the target bridge'}`,
      );
    // self-hairpin
    if (target) mk('self', peerOf(target), target.ns, target.port, dst, null);
    else
      mk(
        'self',
        { kind: 'container', name: p.container ?? p.containerIp, ip: p.containerIp, bridge: tb?.name ?? null, pid: null },
        null,
        null,
        dst,
        fam === 6 && !p.containerIp.includes(':')
          ? `${p.container ?? p.containerIp} has no IPv6 address to call from`
          : `the namespace of ${p.containerIp} was not found`,
      );
    // other bridges: one container each
    const others = new Map<string, Endpoint>();
    for (const e of endpoints) if (e.bridge !== tb?.name && !others.has(e.bridge)) others.set(e.bridge, e);
    for (const e of others.values()) mk('cross-bridge', peerOf(e), e.ns, e.port, dst, null);
    // the host itself
    if (anyAddr || loopOnly)
      mk(
        'host-loopback',
        hostPeer(lo),
        null,
        null,
        lo,
        fam === 6 && !proxyFor(hv, inv, p).on
          ? '[::1] is never DNATed to a container (IPv6 has no route_localnet) and no docker-proxy answers it: not reachable, by design'
          : null,
      );
    if (!loopOnly) mk('host-address', hostPeer(dst ?? '?'), null, null, dst, null);
  }
  return out;
}

/** The host part of the report. */
export function summarizeHost(host: HostFacts, inv: Inventory, opts: PlanOptions = {}): HostSummary {
  const anyPort = inv.ports[0];
  const proxy = anyPort
    ? proxyFor(host, inv, anyPort)
    : { on: host.dockerProxies.length > 0, why: host.dockerProxies.length > 0 ? 'docker-proxy processes run' : 'no published port' };
  const endpointOfPort = (ifname: string): string | null => inv.endpoints.find((e) => e.port === ifname)?.name ?? null;
  return {
    netns: host.netns,
    userlandProxy: anyPort || host.dockerProxies.length > 0 ? proxy.on : inv.docker.userlandProxy,
    userlandProxyWhy: proxy.why,
    backends: host.ruleset.backends,
    generation: generationOf(host),
    bridgeNfCallIptables: host.bridgeNfCallIptables,
    hostAddress: hostAddressOf(host, opts.hostAddr),
    bridges: host.bridges.map((b) => ({
      name: b.name,
      addr: b.addrs[0] ? `${b.addrs[0].addr}/${b.addrs[0].prefixlen}` : null,
      routeLocalnet: b.routeLocalnet,
      nfCallIptables: b.nfCallIptables,
      ports: b.ports.map((p) => ({ ifname: p.ifname, hairpin: p.hairpin, endpoint: endpointOfPort(p.ifname) })),
    })),
    dockerProxies: host.dockerProxies.map((d) => ({
      pid: d.pid,
      listen: `${d.hostIp}:${d.hostPort}/${d.proto}`,
      to: `${d.containerIp}:${d.containerPort}`,
    })),
    docker: { reachable: inv.docker.reachable, endpoint: inv.docker.endpoint, reason: inv.docker.reason },
  };
}
