/**
 * What `journey verify hairpin` needs to know about a Docker host, read inside its network
 * namespace (src/host/exec.ts runs each tool through `nsenter --net=...`; /sys would show the
 * caller's namespace, so nothing here reads /sys directly):
 *   - bridges, their addresses and ports with `hairpin_mode` (`bridge -j -d link`, `ip -j -d link`),
 *     the per-bridge `nf_call_iptables` switch;
 *   - sysctls `net.bridge.bridge-nf-call-iptables`, `net.ipv4.conf.<br>.route_localnet`, ip_forward
 *     (read from /proc/sys inside the namespace);
 *   - the host's own addresses (uplink) and routes (the simulator's host context);
 *   - the ruleset, read once with src/ruleset's live loader (`loadLiveRuleset`: iptables-save,
 *     ip6tables-save, `nft -j`), and Docker's facts in it (./docker-rules.ts);
 *   - docker-proxy processes whose network namespace is the target's (/proc/PID/ns/net).
 * `collectHostFacts` never throws for a missing tool or file: it records a notice instead.
 */
import { readlinkSync, statSync } from 'node:fs';
import { run, netnsPath } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import { findDockerProxiesInNetns, parseDockerProxyArgv, type DockerProxyProcess } from '../docker/daemon.js';
import { dockerFacts, type RulesetFacts } from './docker-rules.js';
import { hostFromDumps, loadLiveRuleset, readHostDumps } from '../ruleset/load.js';
import { emptyHostContext, type HostContext } from '../ruleset/host-context.js';
import type { Ruleset } from '../ruleset/model.js';

export interface BridgePort {
  readonly ifname: string;
  readonly ifindex: number;
  readonly bridge: string;
  /** hairpin_mode: the bridge may send a frame back out the port it came in. */
  readonly hairpin: boolean;
  readonly state: string;
  /** The peer's interface index in the other namespace (veth "link": "if5"). */
  readonly peerIfindex: number | null;
}

export interface BridgeInfo {
  readonly name: string;
  readonly ifindex: number;
  readonly addrs: readonly { readonly addr: string; readonly prefixlen: number }[];
  /** Global IPv6 addresses of the bridge (its IPv6 gateway first); link-local ones left out. */
  readonly addrs6?: readonly { readonly addr: string; readonly prefixlen: number }[];
  /** Per-bridge netfilter switch (`ip link set BR type bridge nf_call_iptables 1`). */
  readonly nfCallIptables: boolean | null;
  /** The same for IPv6 (`nf_call_ip6tables`). */
  readonly nfCallIp6tables?: boolean | null;
  readonly routeLocalnet: boolean | null;
  readonly ports: readonly BridgePort[];
}

export type DockerProxyInfo = DockerProxyProcess;

export interface HostFacts {
  /** The IP family these facts describe (./family-view.ts makes the IPv6 view of a host). */
  readonly family?: 4 | 6;
  readonly netns: string | null;
  /** nsfs inode of the target namespace (to match processes), or null when unknown. */
  readonly netnsInode: number | null;
  readonly bridges: readonly BridgeInfo[];
  /** Global IPv4 addresses of the host that are not on a bridge (the uplink...), with their interface. */
  readonly hostAddrs: readonly { readonly addr: string; readonly iface: string }[];
  /** Every local IPv4 address (for "is this source the host?"). */
  readonly localAddrs: readonly string[];
  /** net.bridge.bridge-nf-call-iptables; null when br_netfilter is not loaded (same as off). */
  readonly bridgeNfCallIptables: boolean | null;
  readonly routeLocalnetAll: boolean | null;
  readonly ipForward: boolean | null;
  readonly dockerProxies: readonly DockerProxyInfo[];
  /** The host's ruleset (src/ruleset's model), read once: what the simulator and the facts come from. */
  readonly rules: Ruleset;
  /** Interfaces, addresses and routes for the simulator (empty when not read). */
  readonly context: HostContext;
  /** Docker's facts in `rules` (IPv4 tables). */
  readonly ruleset: RulesetFacts;
  /** IPv6: Docker's facts in the ip6 tables, the global IPv6 addresses, the sysctls (./family-view.ts). */
  readonly v6?: {
    readonly ruleset: RulesetFacts;
    readonly hostAddrs: readonly { readonly addr: string; readonly iface: string }[];
    readonly localAddrs: readonly string[];
    readonly bridgeNfCallIp6tables: boolean | null;
    readonly forwarding: boolean | null;
  };
  readonly notices: readonly string[];
}

interface IpLink {
  ifindex: number;
  ifname: string;
  link?: string;
  master?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string; info_slave_data?: Record<string, unknown> };
}
interface IpAddr {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}
interface BridgeLink {
  ifindex: number;
  ifname: string;
  master?: string;
  hairpin?: boolean;
  state?: string;
  link?: string;
}

function parseJson<T>(what: string, text: string): T {
  try {
    return JSON.parse(text === '' ? '[]' : text) as T;
  } catch (e) {
    throw new JourneyError('E_PARSE', `${what}: malformed JSON (${(e as Error).message})`);
  }
}

/** nsfs inode of a namespace path or pid ("/proc/PID/ns/net"). */
export function netnsInodeOf(ns: string | number | undefined): number | null {
  try {
    return statSync(ns === undefined ? '/proc/self/ns/net' : netnsPath(ns)).ino;
  } catch {
    return null;
  }
}

/** The nsfs inode of a process's network namespace, or null. */
export function processNetnsInode(pid: number, procRoot = '/proc'): number | null {
  try {
    const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`${procRoot}/${pid}/ns/net`));
    return m?.[1] !== undefined ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** docker-proxy processes living in the namespace with inode `ino` (all of them when ino is null). */
export function dockerProxiesIn(ino: number | null, procRoot = '/proc'): DockerProxyInfo[] {
  return findDockerProxiesInNetns(ino === null ? null : `net:[${ino}]`, procRoot);
}

/** The arguments of a docker-proxy command line (src/docker/daemon.ts). */
export const parseDockerProxyArgs = parseDockerProxyArgv;

/** Reads many small files in one nsenter: "path:value" lines (files that do not exist are absent). */
async function readProcSys(paths: readonly string[], netns: string | undefined): Promise<Map<string, string>> {
  const res = await run(['grep', '-H', '', ...paths], { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 10_000 });
  const out = new Map<string, string>();
  for (const line of res.stdout.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

function bool01(v: string | undefined): boolean | null {
  return v === undefined ? null : v.trim() !== '0';
}

/** Parses the host-inspection outputs (pure: used by collectHostFacts and by unit tests). */
export function buildHostFacts(input: {
  netns: string | null;
  netnsInode: number | null;
  ipLinkJson: string;
  ipAddrJson: string;
  bridgeLinkJson: string;
  sysctl: ReadonlyMap<string, string>;
  rules: Ruleset;
  context?: HostContext;
  dockerProxies: readonly DockerProxyInfo[];
  notices?: readonly string[];
}): HostFacts {
  const links = parseJson<IpLink[]>('ip -j -d link', input.ipLinkJson);
  const addrs = parseJson<IpAddr[]>('ip -j addr', input.ipAddrJson);
  const blinks = parseJson<BridgeLink[]>('bridge -j -d link', input.bridgeLinkJson);
  const v4 = new Map<string, { addr: string; prefixlen: number; scope: string }[]>();
  const v6 = new Map<string, { addr: string; prefixlen: number; scope: string }[]>();
  for (const a of addrs) {
    const of = (fam: string) =>
      (a.addr_info ?? []).filter((i) => i.family === fam).map((i) => ({ addr: i.local, prefixlen: i.prefixlen, scope: i.scope ?? 'global' }));
    v4.set(a.ifname, of('inet'));
    v6.set(a.ifname, of('inet6'));
  }
  const bridgeNames = links.filter((l) => l.linkinfo?.info_kind === 'bridge').map((l) => l.ifname);
  const bridges: BridgeInfo[] = bridgeNames.map((name) => {
    const l = links.find((x) => x.ifname === name);
    const nf = l?.linkinfo?.info_data?.['nf_call_iptables'];
    const nf6 = l?.linkinfo?.info_data?.['nf_call_ip6tables'];
    // Ports: `bridge -j -d link` when it answered, else the bridge slaves of `ip -j -d link`
    // (whose info_slave_data carries hairpin too, so a missing `bridge` tool loses nothing).
    const slaves = links.filter((x) => x.master === name && x.linkinfo?.info_slave_kind === 'bridge');
    const fromBridge = blinks.filter((b) => b.master === name);
    const ports: BridgePort[] = (
      fromBridge.length > 0
        ? fromBridge
        : slaves.map((x) => ({ ifindex: x.ifindex, ifname: x.ifname, master: name, ...(x.link !== undefined ? { link: x.link } : {}) }) as BridgeLink)
    ).map((b) => {
      const slave = slaves.find((x) => x.ifname === b.ifname)?.linkinfo?.info_slave_data;
      const hp = b.hairpin ?? (typeof slave?.['hairpin'] === 'boolean' ? slave['hairpin'] : false);
      return {
        ifname: b.ifname,
        ifindex: b.ifindex,
        bridge: name,
        hairpin: hp === true,
        state: b.state ?? (typeof slave?.['state'] === 'string' ? slave['state'] : 'unknown'),
        peerIfindex: b.link !== undefined && /^if\d+$/.test(b.link) ? Number(b.link.slice(2)) : null,
      };
    });
    return {
      name,
      ifindex: l?.ifindex ?? 0,
      addrs: (v4.get(name) ?? []).map(({ addr, prefixlen }) => ({ addr, prefixlen })),
      addrs6: (v6.get(name) ?? []).filter((a) => a.scope === 'global').map(({ addr, prefixlen }) => ({ addr, prefixlen })),
      nfCallIptables: typeof nf === 'number' ? nf !== 0 : null,
      nfCallIp6tables: typeof nf6 === 'number' ? nf6 !== 0 : null,
      routeLocalnet: bool01(input.sysctl.get(`/proc/sys/net/ipv4/conf/${name}/route_localnet`)),
      ports,
    };
  });
  const bridgeSet = new Set(bridgeNames);
  const portSet = new Set(bridges.flatMap((b) => b.ports.map((p) => p.ifname)));
  const hostAddrs: { addr: string; iface: string }[] = [];
  const localAddrs: string[] = [];
  for (const [ifname, list] of v4) {
    for (const a of list) {
      localAddrs.push(a.addr);
      if (a.scope === 'host' || ifname === 'lo' || bridgeSet.has(ifname) || portSet.has(ifname)) continue;
      hostAddrs.push({ addr: a.addr, iface: ifname });
    }
  }
  const hostAddrs6: { addr: string; iface: string }[] = [];
  const localAddrs6: string[] = [];
  for (const [ifname, list] of v6) {
    for (const a of list) {
      localAddrs6.push(a.addr);
      if (a.scope !== 'global' || ifname === 'lo' || bridgeSet.has(ifname) || portSet.has(ifname)) continue;
      hostAddrs6.push({ addr: a.addr, iface: ifname });
    }
  }
  const ruleset = dockerFacts(input.rules, 4);
  return {
    netns: input.netns,
    netnsInode: input.netnsInode,
    bridges,
    hostAddrs,
    localAddrs,
    bridgeNfCallIptables: bool01(input.sysctl.get('/proc/sys/net/bridge/bridge-nf-call-iptables')),
    routeLocalnetAll: bool01(input.sysctl.get('/proc/sys/net/ipv4/conf/all/route_localnet')),
    ipForward: bool01(input.sysctl.get('/proc/sys/net/ipv4/ip_forward')),
    dockerProxies: input.dockerProxies,
    rules: input.rules,
    context: input.context ?? emptyHostContext(),
    ruleset,
    v6: {
      ruleset: dockerFacts(input.rules, 6),
      hostAddrs: hostAddrs6,
      localAddrs: localAddrs6,
      bridgeNfCallIp6tables: bool01(input.sysctl.get('/proc/sys/net/bridge/bridge-nf-call-ip6tables')),
      forwarding: bool01(input.sysctl.get('/proc/sys/net/ipv6/conf/all/forwarding')),
    },
    notices: input.notices ?? [],
  };
}

/** Inspects the host (or the network namespace `netns`) for the hairpin checks. */
export async function collectHostFacts(netns?: string): Promise<HostFacts> {
  if (netns !== undefined) {
    try {
      statSync(netnsPath(netns));
    } catch {
      throw new JourneyError('E_NO_NETNS', `network namespace ${netns} does not exist (${netnsPath(netns)})`);
    }
  }
  const ns = netns !== undefined ? { netns } : {};
  const notices: string[] = [];
  const [link, blink, rules, dumps] = await Promise.all([
    run(['ip', '-j', '-d', 'link', 'show'], ns),
    run(['bridge', '-j', '-d', 'link', 'show'], { ...ns, allowFailure: true }),
    loadLiveRuleset(ns),
    readHostDumps(ns),
  ]);
  for (const n of rules.notes) if (/^(iptables-save|nft -j list ruleset) could not be read/.test(n)) notices.push(n);
  const links = parseJson<IpLink[]>('ip -j -d link', link.stdout);
  const bridgeNames = links.filter((l) => l.linkinfo?.info_kind === 'bridge').map((l) => l.ifname);
  const sysctl = await readProcSys(
    [
      '/proc/sys/net/bridge/bridge-nf-call-iptables',
      '/proc/sys/net/bridge/bridge-nf-call-ip6tables',
      '/proc/sys/net/ipv4/ip_forward',
      '/proc/sys/net/ipv6/conf/all/forwarding',
      '/proc/sys/net/ipv4/conf/all/route_localnet',
      ...bridgeNames.map((b) => `/proc/sys/net/ipv4/conf/${b}/route_localnet`),
    ],
    netns,
  );
  if (!sysctl.has('/proc/sys/net/bridge/bridge-nf-call-iptables')) {
    notices.push('br_netfilter is not loaded: bridged frames do not traverse iptables (bridge-nf-call-iptables is off)');
  }
  const ino = netnsInodeOf(netns);
  return buildHostFacts({
    netns: netns ?? null,
    netnsInode: ino,
    ipLinkJson: link.stdout,
    ipAddrJson: dumps.addrs,
    bridgeLinkJson: blink.code === 0 ? blink.stdout : '[]',
    sysctl,
    rules,
    context: hostFromDumps(dumps, netns !== undefined ? `netns ${netns}` : 'live'),
    dockerProxies: dockerProxiesIn(ino),
    notices,
  });
}
