/**
 * The hairpin paths, one entry each: what the path needs from the host (to be expected to work),
 * what Docker's design blocks on it, and which wrong host settings explain its failure. plan.ts
 * (expectations), diagnose.ts (causes) and passive.ts (classified flows) read this table instead of
 * branching on the path's kind; a new path is one entry here plus its name in HAIRPIN_PATH_KINDS.
 */
import { masqFor } from './docker-rules.js';
import type { HostFacts } from './host-facts.js';
import type { CheckKind } from './types.js';
import { addrPort, nfCallName } from './family-view.js';

/** What a path's rules look at: the host, the target (published port behind it) and the caller's bridge. */
export interface PathFacts {
  readonly host: HostFacts;
  readonly proto: string;
  readonly containerIp: string;
  readonly containerPort: number;
  /** The target's bridge. */
  readonly bridge: string | null;
  /** The target's name (container, or its address). */
  readonly name: string;
  /** The caller's bridge (null: the host). */
  readonly fromBridge: string | null;
  /** The target's bridge port (host side of its veth), when known. */
  readonly targetPort: string | null;
}

export interface HairpinPath {
  readonly kind: CheckKind;
  /** Why the target sees the caller's own address when no rule rewrites the source. */
  readonly noSnatWhy: string;
  /** Docker's source NAT this path cannot work without (expected even when missing, and named), or null. */
  readonly needsMasq: string | null;
  /** How the report names the source NAT of this path ("MASQUERADE for self-hairpin"). */
  readonly masqLabel: string;
  /** Docker's reason for refusing this path by design, or null. */
  blockedBy(f: PathFacts): string | null;
  /** The host settings this path depends on, in plain words. */
  requires(f: PathFacts): string[];
  /** The settings this path depends on that are wrong on this host, in plain words. */
  settingCauses(f: PathFacts): string[];
}

const target = (f: PathFacts): string => addrPort(f.containerIp, f.containerPort);

function nfOn(f: PathFacts): boolean {
  const b = f.host.bridges.find((x) => x.name === f.bridge);
  return f.host.bridgeNfCallIptables === true || b?.nfCallIptables === true;
}

function iccBlocked(f: PathFacts): string | null {
  return f.bridge !== null && f.host.ruleset.iccDisabledBridges.includes(f.bridge)
    ? `inter-container communication is disabled on ${f.bridge} (icc=false): DNATed traffic between its containers is dropped`
    : null;
}

function masqOf(f: PathFacts, src: string, srcIsLocal: boolean) {
  return masqFor(f.host.ruleset, { src, dst: f.containerIp, proto: f.proto, dport: f.containerPort, oif: f.bridge ?? '', srcIsLocal });
}

const sameBridge: HairpinPath = {
  kind: 'same-bridge',
  noSnatWhy: 'no SNAT between two containers of one bridge',
  needsMasq: null,
  masqLabel: '',
  blockedBy: iccBlocked,
  requires: (f) => [`${nfCallName(f.host)} on: the reply is bridged and must meet conntrack to be un-DNATed`],
  settingCauses: (f) =>
    nfOn(f) ? [] : [f.host.bridgeNfCallIptables === null ? `${nfCallName(f.host)} is off (br_netfilter not loaded)` : `${nfCallName(f.host)} is off`],
};

const self: HairpinPath = {
  kind: 'self',
  noSnatWhy: 'no source NAT on this path',
  needsMasq: "MASQUERADE for self-hairpin (Docker's rule is MISSING)",
  masqLabel: ' for self-hairpin',
  blockedBy: iccBlocked,
  requires: (f) => [
    ...(nfOn(f) ? [`hairpin_mode on ${f.targetPort ?? 'the bridge port'} (port of ${f.name}): the frame goes back out the port it came in`] : []),
    `a MASQUERADE rule for self-hairpin to ${target(f)}`,
  ],
  settingCauses: (f) => {
    const out: string[] = [];
    const p = f.host.bridges.flatMap((b) => b.ports).find((x) => f.targetPort !== null && x.ifname === f.targetPort);
    if (p !== undefined && !p.hairpin) out.push(`hairpin_mode is 0 on ${p.ifname} (port of ${f.name})`);
    if (masqOf(f, f.containerIp, false) === null) out.push(`no MASQUERADE for self-hairpin to ${target(f)}`);
    return out;
  },
};

const crossBridge: HairpinPath = {
  kind: 'cross-bridge',
  noSnatWhy: 'no source NAT on this path',
  needsMasq: null,
  masqLabel: '',
  blockedBy: (f) => {
    const internal = [f.fromBridge, f.bridge].find((b): b is string => b !== null && f.host.ruleset.internalBridges.includes(b));
    if (internal !== undefined) return `${internal} is an internal network: nothing crosses its bridge, published ports included`;
    if (f.bridge !== null && f.host.ruleset.isolatedBridges.includes(f.bridge))
      return `Docker network isolation: DOCKER-ISOLATION-STAGE-2 drops traffic from ${f.fromBridge ?? 'another bridge'} to ${f.bridge}, published port or not (Docker < 28)`;
    return null;
  },
  requires: (f) => (crossBridge.blockedBy(f) === null ? [`filter FORWARD accepts ${f.fromBridge ?? '?'} -> ${f.bridge ?? '?'} to ${target(f)}`] : []),
  settingCauses: (f) => (f.host.ipForward === false ? [f.host.family === 6 ? 'net.ipv6.conf.all.forwarding is 0' : 'net.ipv4.ip_forward is 0'] : []),
};

const hostLoopback: HairpinPath = {
  kind: 'host-loopback',
  noSnatWhy: 'no source NAT on this path',
  needsMasq: "MASQUERADE of packets from the host (Docker's rule is MISSING)",
  masqLabel: ' of packets from the host',
  blockedBy: () => null,
  requires: (f) => [
    `route_localnet=1 on ${f.bridge ?? 'the bridge'}: 127.0.0.1 may be routed out of it`,
    `a MASQUERADE rule for packets from the host to ${f.bridge ?? 'the bridge'}`,
  ],
  settingCauses: (f) => {
    const out: string[] = [];
    const b = f.host.bridges.find((x) => x.name === f.bridge);
    if (b?.routeLocalnet !== true && f.host.routeLocalnetAll !== true)
      out.push(`route_localnet is 0 on ${f.bridge ?? 'the bridge'} so 127.0.0.1 is not NATed`);
    if (masqOf(f, '127.0.0.1', true) === null)
      out.push(`no MASQUERADE for packets from the host to ${f.bridge ?? 'the bridge'} (127.0.0.1 cannot leave the host)`);
    return out;
  },
};

const hostAddress: HairpinPath = {
  kind: 'host-address',
  noSnatWhy: 'no source NAT on this path',
  needsMasq: null,
  masqLabel: ' of packets from the host',
  blockedBy: () => null,
  requires: () => [],
  settingCauses: () => [],
};

/** Every hairpin path, by kind. */
export const HAIRPIN_PATHS: { readonly [K in CheckKind]: HairpinPath } = {
  'same-bridge': sameBridge,
  self,
  'cross-bridge': crossBridge,
  'host-loopback': hostLoopback,
  'host-address': hostAddress,
};
