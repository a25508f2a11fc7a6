/**
 * The containers (endpoints) attached to the host's bridges and the published ports, from the
 * Docker Engine API when it answers, else found on the host itself:
 *   - endpoints: every network namespace on the machine (named ones under /var/run/netns and those of
 *     running processes, /proc/PID/ns/net) that has an IPv4 address inside a bridge's subnet of the
 *     target host namespace — matched to its bridge port through the veth peer index;
 *   - published ports: the DNAT rules of the ruleset (iptables and nft) and docker-proxy processes.
 * A probe runs in an endpoint's namespace by its PID (`nsenter -t PID -n`) or its netns path.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { run } from '../host/exec.js';
import { DockerClient, resolveDockerHost } from '../docker/client.js';
import { buildSnapshot, type DockerSnapshot } from '../docker/inventory.js';
import type { BridgeInfo, HostFacts } from './host-facts.js';
import { processNetnsInode, netnsInodeOf } from './host-facts.js';
import { inCidr } from './docker-rules.js';

export interface Endpoint {
  /** Container name (Docker), or the namespace's name / "pid N" without Docker. */
  readonly name: string;
  readonly ip: string;
  readonly bridge: string;
  /** The bridge port (host side of the veth), when found. */
  readonly port: string | null;
  /** Where to run a probe: a pid or a netns path. */
  readonly ns: string | number;
  readonly pid: number | null;
  readonly network: string | null;
}

export interface PublishedPortSpec {
  readonly proto: string;
  /** "0.0.0.0" for any address, else the address the port is bound to. */
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerIp: string;
  readonly containerPort: number;
  /** The endpoint behind the port, when known. */
  readonly container: string | null;
  readonly source: 'docker' | 'dnat-rule' | 'docker-proxy';
}

export interface Inventory {
  readonly endpoints: readonly Endpoint[];
  readonly ports: readonly PublishedPortSpec[];
  readonly docker: { readonly reachable: boolean; readonly endpoint: string; readonly reason: string | null; readonly userlandProxy: boolean | null };
  readonly notices: readonly string[];
}

export function bridgeOfAddr(bridges: readonly BridgeInfo[], ip: string): BridgeInfo | null {
  for (const b of bridges) for (const a of ip.includes(':') ? (b.addrs6 ?? []) : b.addrs) if (inCidr(ip, `${a.addr}/${a.prefixlen}`)) return b;
  return null;
}

interface NsAddr {
  ifname: string;
  link?: string;
  link_index?: number;
  link_netnsid?: number;
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}

/** The peer's interface index of a veth (`ip -j addr`: "link_index", or "link": "if7"). */
function peerIndex(i: NsAddr): number | null {
  if (typeof i.link_index === 'number') return i.link_index;
  if (i.link !== undefined && /^if\d+$/.test(i.link)) return Number(i.link.slice(2));
  return null;
}

/** Every other network namespace on the machine: named ones and those of processes (one pid each). */
function candidateNamespaces(targetIno: number | null): { ref: string | number; name: string; pid: number | null; ino: number | null }[] {
  const seen = new Set<number>();
  if (targetIno !== null) seen.add(targetIno);
  const self = netnsInodeOf(undefined);
  const out: { ref: string | number; name: string; pid: number | null; ino: number | null }[] = [];
  const byIno = new Map<number, { ref: string | number; name: string; pid: number | null; ino: number | null }>();
  try {
    for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      const pid = Number(p);
      const ino = processNetnsInode(pid);
      if (ino === null || seen.has(ino) || ino === self) continue;
      if (!byIno.has(ino)) byIno.set(ino, { ref: pid, name: `pid ${pid}`, pid, ino });
    }
  } catch {
    /* no /proc */
  }
  try {
    for (const n of readdirSync('/var/run/netns')) {
      const ino = netnsInodeOf(n);
      if (ino === null || seen.has(ino)) continue;
      const have = byIno.get(ino);
      byIno.set(ino, { ref: have?.pid ?? `/var/run/netns/${n}`, name: n, pid: have?.pid ?? null, ino });
    }
  } catch {
    /* no named namespaces */
  }
  for (const v of byIno.values()) out.push(v);
  return out;
}

/** A name for an endpoint found without Docker: its named netns, its bridge port when not a random veth, else pid and command. */
function endpointName(c: { name: string; pid: number | null }, port: string | null): string {
  if (!c.name.startsWith('pid ')) return c.name;
  if (port !== null && !port.startsWith('veth')) return port;
  let comm = '';
  try {
    comm = readFileSync(`/proc/${c.pid ?? 0}/comm`, 'utf8').trim();
  } catch {
    /* gone */
  }
  return comm !== '' ? `${c.name} (${comm})` : c.name;
}

/**
 * Whether a veth's peer lives in the target namespace, as far as names can tell: the peer's nsid (as
 * the candidate namespace sees it) named through /var/run/netns must be the target's name, or both
 * unnamed (e.g. the root namespace). No nsid: the peer is in the same namespace (not a veth to us).
 */
export function peerIsInTarget(linkNetnsid: number | undefined, nsidNames: ReadonlyMap<number, string>, targetName: string | null): boolean {
  if (linkNetnsid === undefined) return true;
  return (nsidNames.get(linkNetnsid) ?? null) === targetName;
}

/** The name under /var/run/netns of the namespace with this inode, if it has one. */
function namedNetnsOf(ino: number | null): string | null {
  if (ino === null) return null;
  try {
    for (const n of readdirSync('/var/run/netns')) if (netnsInodeOf(n) === ino) return n;
  } catch {
    /* none */
  }
  return null;
}

/**
 * Endpoints found without Docker: namespaces with an address on one of the host's bridges, whose
 * veth peer is a port of that bridge IN THE TARGET NAMESPACE (interface indexes repeat across
 * namespaces: another Docker host, or another lab, may have the same addresses and indexes). The
 * peer's namespace is told by its nsid as the candidate sees it, named through /var/run/netns.
 */
export async function scanEndpoints(host: HostFacts): Promise<Endpoint[]> {
  const cands = candidateNamespaces(host.netnsInode);
  const targetName = namedNetnsOf(host.netnsInode);
  const portByIndex = new Map<number, { port: string; bridge: string }>();
  for (const b of host.bridges) for (const p of b.ports) portByIndex.set(p.ifindex, { port: p.ifname, bridge: b.name });
  const results = await Promise.all(
    cands.map(async (c) => {
      const [r, ids] = await Promise.all([
        run(['ip', '-j', '-d', 'addr', 'show'], { netns: c.ref, allowFailure: true, timeoutMs: 5_000 }).catch(() => null),
        run(['ip', '-j', 'netns', 'list-id'], { netns: c.ref, allowFailure: true, timeoutMs: 5_000 }).catch(() => null),
      ]);
      if (r === null || r.code !== 0) return [];
      let list: NsAddr[] = [];
      const nsidName = new Map<number, string>();
      try {
        list = JSON.parse(r.stdout) as NsAddr[];
        for (const x of JSON.parse(ids?.stdout || '[]') as { nsid: number; name?: string }[]) if (x.name !== undefined) nsidName.set(x.nsid, x.name);
      } catch {
        return [];
      }
      const peerInTarget = (i: NsAddr): boolean => peerIsInTarget(i.link_netnsid, nsidName, targetName);
      const eps: Endpoint[] = [];
      for (const i of list) {
        for (const a of i.addr_info ?? []) {
          if (a.family !== 'inet' && !(a.family === 'inet6' && (a.scope ?? 'global') === 'global')) continue;
          const br = bridgeOfAddr(host.bridges, a.local);
          if (!br) continue;
          if ([...br.addrs, ...(br.addrs6 ?? [])].some((x) => x.addr === a.local)) continue; // the gateway itself
          if (!peerInTarget(i)) continue;
          const pi = peerIndex(i);
          const peer = pi !== null ? portByIndex.get(pi) : undefined;
          if (peer !== undefined && peer.bridge !== br.name) continue;
          if (peer === undefined && br.ports.length > 0 && pi === null) continue; // not a veth into this host
          eps.push({
            name: endpointName(c, peer?.port ?? null),
            ip: a.local,
            bridge: br.name,
            port: peer?.port ?? null,
            ns: c.ref,
            pid: c.pid,
            network: null,
          });
        }
      }
      return eps;
    }),
  );
  return results.flat();
}

/** Published ports from the ruleset's DNAT rules and from docker-proxy processes (no Docker API). */
export function portsFromHost(host: HostFacts, endpoints: readonly Endpoint[]): PublishedPortSpec[] {
  const out: PublishedPortSpec[] = [];
  const key = (p: { proto: string; hostIp: string; hostPort: number }): string => `${p.proto}/${p.hostIp}/${p.hostPort}`;
  const seen = new Set<string>();
  const nameOf = (ip: string): string | null => endpoints.find((e) => e.ip === ip)?.name ?? null;
  for (const d of [...host.ruleset.dnat, ...(host.v6?.ruleset.dnat ?? [])]) {
    const hostIp = d.hostIp ?? (d.family === 6 ? '::' : '0.0.0.0');
    const p: PublishedPortSpec = {
      proto: d.proto,
      hostIp,
      hostPort: d.hostPort,
      containerIp: d.containerIp,
      containerPort: d.containerPort,
      container: nameOf(d.containerIp),
      source: 'dnat-rule',
    };
    if (seen.has(key(p))) continue;
    seen.add(key(p));
    out.push(p);
  }
  for (const d of host.dockerProxies) {
    const hostIp = d.hostIp === '::' ? '0.0.0.0' : d.hostIp;
    const p: PublishedPortSpec = {
      proto: d.proto,
      hostIp,
      hostPort: d.hostPort,
      containerIp: d.containerIp,
      containerPort: d.containerPort,
      container: nameOf(d.containerIp),
      source: 'docker-proxy',
    };
    if (seen.has(key(p))) continue;
    seen.add(key(p));
    out.push(p);
  }
  return out;
}

/** Reads the Docker inventory with container PIDs; null and a reason when Docker does not answer. */
export async function dockerInventory(
  dockerHost: string | undefined,
  timeoutMs: number,
): Promise<{ snap: DockerSnapshot; pids: Map<string, number> } | { error: string }> {
  try {
    const client = new DockerClient(resolveDockerHost(dockerHost), { timeoutMs });
    const [containers, networks] = await Promise.all([client.containers(), client.networks()]);
    const pids = new Map<string, number>();
    await Promise.all(
      containers.map(async (c) => {
        const ins = await client.get<{ State?: { Pid?: number } }>(`/containers/${encodeURIComponent(c.Id)}/json`);
        if (typeof ins.State?.Pid === 'number' && ins.State.Pid > 0) pids.set(c.Id, ins.State.Pid);
      }),
    );
    return { snap: buildSnapshot(containers, networks), pids };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Endpoints and published ports: Docker's view when it answers, else what the host shows. */
export async function collectInventory(host: HostFacts, opts: { dockerHost?: string; timeoutMs?: number; noDocker?: boolean }): Promise<Inventory> {
  const notices: string[] = [];
  const display = (() => {
    try {
      return resolveDockerHost(opts.dockerHost).display;
    } catch {
      return opts.dockerHost ?? '';
    }
  })();
  const d = opts.noDocker === true ? { error: 'not asked (--no-docker)' } : await dockerInventory(opts.dockerHost, opts.timeoutMs ?? 3_000);
  if ('error' in d) {
    notices.push(`Docker API not used (${d.error}): endpoints found from the host's namespaces, published ports from the DNAT rules`);
    const endpoints = await scanEndpoints(host);
    return {
      endpoints,
      ports: portsFromHost(host, endpoints),
      docker: { reachable: false, endpoint: display, reason: d.error, userlandProxy: null },
      notices,
    };
  }
  const { snap, pids } = d;
  const portByIndex = new Map<number, string>();
  for (const b of host.bridges) for (const p of b.ports) portByIndex.set(p.ifindex, p.ifname);
  const endpoints: Endpoint[] = [];
  for (const c of snap.containers) {
    const id = [...pids.keys()].find((k) => k === c.id);
    const pid = id !== undefined ? (pids.get(id) ?? null) : null;
    for (const ep of c.endpoints) {
      // one endpoint per address: IPv4 and, on a network with IPv6, IPv6 (the same namespace and port)
      for (const ip of [ep.ipv4, ep.ipv6]) {
        if (ip === null) continue;
        const br = bridgeOfAddr(host.bridges, ip);
        if (!br) continue;
        let port: string | null = null;
        if (pid !== null) {
          const r = await run(['ip', '-j', 'addr', 'show'], { netns: pid, allowFailure: true, timeoutMs: 5_000 }).catch(() => null);
          try {
            const list = r !== null ? (JSON.parse(r.stdout) as NsAddr[]) : [];
            const i = list.find((x) => (x.addr_info ?? []).some((a) => a.local === ip));
            const pi = i !== undefined ? peerIndex(i) : null;
            if (pi !== null) port = portByIndex.get(pi) ?? null;
          } catch {
            /* leave unknown */
          }
        }
        endpoints.push({ name: c.name, ip, bridge: br.name, port, ns: pid ?? `container ${c.name}`, pid, network: ep.network });
      }
    }
  }
  const ports: PublishedPortSpec[] = [];
  const v6: string[] = [];
  for (const c of snap.containers) {
    const mine = endpoints.filter((e) => e.name === c.name);
    for (const p of c.published) {
      const six = p.hostIp.includes(':');
      // The DNAT rule (ip6 tables for a port bound on an IPv6 address) names the container address
      // Docker chose; without one, docker-proxy's target, else the container's address of that
      // family, else its IPv4 one (docker-proxy carries IPv6 to an IPv4 container).
      const dnat = six ? (host.v6?.ruleset.dnat ?? []) : host.ruleset.dnat;
      const rule = dnat.find((r) => r.hostPort === p.hostPort && r.proto === p.proto && mine.some((e) => e.ip === r.containerIp));
      const proxy = host.dockerProxies.find((x) => x.hostPort === p.hostPort && x.proto === p.proto);
      const ip = rule?.containerIp ?? proxy?.containerIp ?? mine.find((e) => e.ip.includes(':') === six)?.ip ?? (six ? undefined : mine[0]?.ip);
      if (ip === undefined) {
        if (six) v6.push(`[${p.hostIp}]:${p.hostPort}/${p.proto} (${c.name})`);
        continue;
      }
      ports.push({
        proto: p.proto,
        hostIp: p.hostIp === '' ? '0.0.0.0' : p.hostIp,
        hostPort: p.hostPort,
        containerIp: ip,
        containerPort: p.containerPort,
        container: c.name,
        source: 'docker',
      });
    }
  }
  if (v6.length > 0)
    notices.push(
      `${v6.length} IPv6 published port(s) not checked (no ip6 DNAT rule, no docker-proxy and no IPv6 address of the container): ${v6.join(', ')}`,
    );
  if (endpoints.length === 0 && snap.containers.length > 0) {
    notices.push(`the Docker API at ${display} shows containers, but none on this namespace's bridges: is it the right daemon?`);
  }
  return { endpoints, ports, docker: { reachable: true, endpoint: display, reason: null, userlandProxy: snap.userlandProxy }, notices };
}
