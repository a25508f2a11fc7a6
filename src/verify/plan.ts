/**
 * Which hairpin checks to run for each published port (IPv4, and IPv6 for a port bound on an IPv6
 * address): who calls, which address, and — from ./expectations.ts — what each path should do on
 * THIS host. Pure: from HostFacts + Inventory to planned checks; nothing is sent here.
 */
import type { HostFacts } from './host-facts.js';
import type { Endpoint, Inventory, PublishedPortSpec } from './endpoints.js';
import { bridgeOfAddr } from './endpoints.js';
import { familyOfAddr, addrPort, hostForFamily, isLoopback } from './family-view.js';
import { expectFor, generationOf, hostAddressOf, proxyFor } from './expectations.js';
import type { CheckKind, Expectation, HostSummary, Peer, PortRef } from './types.js';

export { dnatFor, expectFor, generationOf, hostAddressOf, proxyFor } from './expectations.js';

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
