/**
 * DockerInventory: the always-current view of one Docker daemon that journey needs —
 * containers (names, addresses per network, published ports), networks (their bridge interface:
 * `docker0`, `br-<id12>` or `com.docker.network.bridge.name`), the daemon's userland-proxy setting
 * and its docker-proxy processes. Kept current with the /events stream (reconnects after a daemon
 * restart). Without Docker, `connectDocker` returns null and a reason: addresses are shown as they are.
 *
 *   const inv = await DockerInventory.connect({ dockerHost });   // throws E_DOCKER if unreachable
 *   inv.nameFor('172.17.0.2', 80, 'tcp') // { addr, container: 'web', network: 'bridge', published: '0.0.0.0:8000/tcp -> 80' }
 *   inv.bridges()                        // ['docker0', 'br-5c0e...']
 *   inv.on('change', snap => ...); inv.on('notice', msg => ...); inv.close();
 *
 * `buildSnapshot` is the pure part (API documents -> DockerSnapshot), unit-tested on fixtures.
 */
import { EventEmitter } from 'node:events';
import type { EndpointName } from '../model/events.js';
import { JourneyError } from '../model/errors.js';
import { DockerClient, resolveDockerHost, type ApiContainerSummary, type ApiNetwork, type ApiEvent } from './client.js';
import { daemonForSocket, findDaemons, findDockerProxies, type DockerProxyProcess } from './daemon.js';

export interface PublishedPort {
  readonly proto: string;
  /** Host address the port is bound to ("0.0.0.0", "::" or a specific address). */
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerPort: number;
  readonly container: string;
}

export interface ContainerEndpoint {
  readonly network: string;
  readonly networkId: string;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  readonly mac: string | null;
}

export interface ContainerInfo {
  readonly id: string;
  readonly name: string;
  readonly image: string | null;
  readonly endpoints: readonly ContainerEndpoint[];
  readonly published: readonly PublishedPort[];
}

export interface NetworkInfo {
  readonly id: string;
  readonly name: string;
  readonly driver: string;
  /** Linux bridge interface of a bridge network; null for other drivers (host, none, macvlan...). */
  readonly bridge: string | null;
  readonly subnets: readonly string[];
  readonly gateways: readonly string[];
  readonly internal: boolean;
}

export interface DockerSnapshot {
  readonly containers: readonly ContainerInfo[];
  readonly networks: readonly NetworkInfo[];
  /** true/false when known; null = unknown (the daemon default is on). */
  readonly userlandProxy: boolean | null;
  readonly userlandProxySource: string;
  readonly daemonPid: number | null;
  readonly proxies: readonly DockerProxyProcess[];
}

/** The Linux bridge a Docker network uses. */
export function bridgeNameOf(n: ApiNetwork): string | null {
  if ((n.Driver ?? 'bridge') !== 'bridge') return null;
  const opt = n.Options?.['com.docker.network.bridge.name'];
  if (opt !== undefined && opt !== '') return opt;
  if (n.Name === 'bridge') return 'docker0';
  return `br-${n.Id.slice(0, 12)}`;
}

export function buildSnapshot(
  containers: readonly ApiContainerSummary[],
  networks: readonly ApiNetwork[],
  daemon: { userlandProxy: boolean | null; userlandProxySource: string; pid: number | null; proxies: readonly DockerProxyProcess[] } = {
    userlandProxy: null,
    userlandProxySource: 'unknown',
    pid: null,
    proxies: [],
  },
): DockerSnapshot {
  const nets: NetworkInfo[] = networks.map((n) => {
    const cfg = n.IPAM?.Config ?? [];
    return {
      id: n.Id,
      name: n.Name,
      driver: n.Driver ?? 'bridge',
      bridge: bridgeNameOf(n),
      subnets: cfg.map((c) => c.Subnet).filter((s): s is string => typeof s === 'string' && s !== ''),
      gateways: cfg.map((c) => c.Gateway).filter((s): s is string => typeof s === 'string' && s !== ''),
      internal: n.Internal === true,
    };
  });
  // Docker 20.10 leaves the default bridge's gateway out of /networks: learn it from the
  // containers' endpoints, else take the subnet's first address (Docker's default choice)
  for (const c of containers) {
    for (const [net, ep] of Object.entries(c.NetworkSettings?.Networks ?? {})) {
      const n = nets.find((x) => x.name === net || (ep.NetworkID !== undefined && x.id === ep.NetworkID));
      if (n && ep.Gateway !== undefined && ep.Gateway !== '' && !n.gateways.includes(ep.Gateway)) (n.gateways as string[]).push(ep.Gateway);
    }
  }
  for (const n of nets) {
    if (n.gateways.length > 0 || n.bridge === null) continue;
    for (const sub of n.subnets) {
      const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(sub);
      if (m && Number(m[5]) < 31) (n.gateways as string[]).push(`${m[1]}.${m[2]}.${m[3]}.${Number(m[4]) + 1}`);
    }
  }
  const cs: ContainerInfo[] = containers.map((c) => {
    const name = (c.Names[0] ?? c.Id.slice(0, 12)).replace(/^\//, '');
    const endpoints: ContainerEndpoint[] = Object.entries(c.NetworkSettings?.Networks ?? {}).map(([net, ep]) => ({
      network: net,
      networkId: ep.NetworkID ?? '',
      ipv4: ep.IPAddress !== undefined && ep.IPAddress !== '' ? ep.IPAddress : null,
      ipv6: ep.GlobalIPv6Address !== undefined && ep.GlobalIPv6Address !== '' ? ep.GlobalIPv6Address : null,
      mac: ep.MacAddress !== undefined && ep.MacAddress !== '' ? ep.MacAddress : null,
    }));
    const published: PublishedPort[] = [];
    for (const p of c.Ports ?? []) {
      if (p.PublicPort === undefined) continue;
      published.push({ proto: p.Type, hostIp: p.IP ?? '0.0.0.0', hostPort: p.PublicPort, containerPort: p.PrivatePort, container: name });
    }
    return { id: c.Id, name, image: c.Image ?? null, endpoints, published };
  });
  return {
    containers: cs,
    networks: nets,
    userlandProxy: daemon.userlandProxy,
    userlandProxySource: daemon.userlandProxySource,
    daemonPid: daemon.pid,
    proxies: daemon.proxies,
  };
}

/** Fast lookups over a snapshot: address -> container endpoint, host port -> published port. */
export class DockerIndex {
  readonly snapshot: DockerSnapshot;
  private readonly byAddr = new Map<string, { container: ContainerInfo; ep: ContainerEndpoint }>();
  private readonly gateways = new Map<string, NetworkInfo>();
  private readonly byBridge = new Map<string, NetworkInfo>();

  constructor(snapshot: DockerSnapshot) {
    this.snapshot = snapshot;
    for (const c of snapshot.containers) {
      for (const ep of c.endpoints) {
        if (ep.ipv4 !== null) this.byAddr.set(ep.ipv4, { container: c, ep });
        if (ep.ipv6 !== null) this.byAddr.set(ep.ipv6, { container: c, ep });
      }
    }
    for (const n of snapshot.networks) {
      for (const g of n.gateways) this.gateways.set(g, n);
      if (n.bridge !== null) this.byBridge.set(n.bridge, n);
    }
  }

  container(addr: string): ContainerInfo | null {
    return this.byAddr.get(addr)?.container ?? null;
  }

  networkOfBridge(iface: string): NetworkInfo | null {
    return this.byBridge.get(iface) ?? null;
  }

  /**
   * The published port a host address:port maps to, if any — as the kernel's DNAT (`--dst-type
   * LOCAL`) and docker-proxy see it: a port published on every address (0.0.0.0, ::) is reached
   * only through the host's own addresses (`isLocal`; bridge gateways are the host's), one
   * published on an address only through that address. When `isLocal` does not know (null or
   * absent), a wildcard port matches any address of its family.
   */
  published(addr: string, port: number, proto: string, isLocal?: (addr: string) => boolean | null): PublishedPort | null {
    const v6 = addr.includes(':');
    for (const c of this.snapshot.containers) {
      for (const p of c.published) {
        if (p.hostPort !== port || p.proto !== proto) continue;
        if (p.hostIp === addr) return p;
        const wild = p.hostIp === '0.0.0.0' || p.hostIp === '::' || p.hostIp === '';
        if (!wild || (p.hostIp === '0.0.0.0' && v6)) continue;
        if (this.byAddr.has(addr)) continue; // a container's address is never the host's published port
        const local = this.gateways.has(addr) ? true : (isLocal?.(addr) ?? null);
        if (local !== false) return p;
      }
    }
    return null;
  }

  /**
   * What Docker calls an address (and port): a container and its network, a bridge gateway, or a
   * published port on the host. null when Docker knows nothing of it.
   */
  nameFor(addr: string, port?: number, proto?: string, isLocal?: (addr: string) => boolean | null): EndpointName | null {
    const hit = this.byAddr.get(addr);
    if (hit) return { addr, container: hit.container.name, network: hit.ep.network };
    const gw = this.gateways.get(addr);
    if (gw) {
      const pub = port !== undefined && proto !== undefined ? this.published(addr, port, proto, isLocal) : null;
      return pub
        ? { addr, network: gw.name, published: `${port}/${proto} -> ${pub.container}:${pub.containerPort}` }
        : { addr, network: `${gw.name} gateway` };
    }
    if (port !== undefined && proto !== undefined) {
      const pub = this.published(addr, port, proto, isLocal);
      if (pub) return { addr, published: `${port}/${proto} -> ${pub.container}:${pub.containerPort}` };
    }
    return null;
  }

  bridges(): string[] {
    return [...this.byBridge.keys()];
  }
}

export interface DockerInventoryOptions {
  readonly dockerHost?: string;
  readonly timeoutMs?: number;
  /** Read /proc for dockerd's userland-proxy flag and docker-proxy processes (default true). */
  readonly readProc?: boolean;
  readonly procRoot?: string;
}

export class DockerInventory extends EventEmitter {
  readonly client: DockerClient;
  private idx: DockerIndex;
  private stopEvents: (() => void) | null = null;
  private closed = false;
  private refreshTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly opts: DockerInventoryOptions;
  /** Number of events received and refreshes made (for tests and stats). */
  eventsSeen = 0;
  refreshes = 0;

  private constructor(client: DockerClient, snapshot: DockerSnapshot, opts: DockerInventoryOptions) {
    super();
    this.client = client;
    this.idx = new DockerIndex(snapshot);
    this.opts = opts;
  }

  /** Connects, reads a first snapshot and subscribes to /events. Throws E_DOCKER when unreachable. */
  static async connect(opts: DockerInventoryOptions = {}): Promise<DockerInventory> {
    const client = new DockerClient(resolveDockerHost(opts.dockerHost), opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {});
    const snap = await DockerInventory.load(client, opts);
    const inv = new DockerInventory(client, snap, opts);
    inv.subscribe();
    return inv;
  }

  private static async load(client: DockerClient, opts: DockerInventoryOptions): Promise<DockerSnapshot> {
    const [containers, networks] = await Promise.all([client.containers(), client.networks()]);
    let daemon = {
      userlandProxy: null as boolean | null,
      userlandProxySource: 'unknown (/proc not read)',
      pid: null as number | null,
      proxies: [] as DockerProxyProcess[],
    };
    if (opts.readProc !== false) {
      const d = daemonForSocket(client.endpoint.socketPath, findDaemons(opts.procRoot));
      const proxies = findDockerProxies(opts.procRoot, d?.pid);
      daemon = d
        ? { userlandProxy: d.userlandProxy, userlandProxySource: d.userlandProxySource, pid: d.pid, proxies }
        : {
            userlandProxy: proxies.length > 0 ? true : null,
            userlandProxySource: proxies.length > 0 ? 'docker-proxy processes running' : 'unknown (dockerd process not found)',
            pid: null,
            proxies,
          };
    }
    return buildSnapshot(containers, networks, daemon);
  }

  get index(): DockerIndex {
    return this.idx;
  }
  get snapshot(): DockerSnapshot {
    return this.idx.snapshot;
  }
  nameFor(addr: string, port?: number, proto?: string, isLocal?: (addr: string) => boolean | null): EndpointName | null {
    return this.idx.nameFor(addr, port, proto, isLocal);
  }
  bridges(): string[] {
    return this.idx.bridges();
  }

  /** Re-reads containers and networks now. */
  async refresh(): Promise<void> {
    const snap = await DockerInventory.load(this.client, this.opts);
    if (this.closed) return;
    this.idx = new DockerIndex(snap);
    this.refreshes++;
    this.emit('change', snap);
  }

  private scheduleRefresh(delayMs = 150): void {
    if (this.refreshTimer !== null || this.closed) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh().catch((e: unknown) => this.emit('notice', `docker: refresh failed: ${(e as Error).message}`));
    }, delayMs);
    this.refreshTimer.unref();
  }

  private subscribe(): void {
    if (this.closed) return;
    this.stopEvents = this.client.events(
      (ev: ApiEvent) => {
        this.eventsSeen++;
        if (ev.Type === 'network' || ['start', 'die', 'destroy', 'create', 'rename', 'connect', 'disconnect', 'stop', 'kill'].includes(ev.Action)) {
          this.scheduleRefresh();
        }
      },
      (err) => {
        this.stopEvents = null;
        if (this.closed) return;
        this.emit('notice', `docker: event stream ended${err ? `: ${err.message}` : ''}; reconnecting`);
        this.reconnect(1);
      },
    );
  }

  private reconnect(attempt: number): void {
    if (this.closed) return;
    this.reconnectTimer = setTimeout(
      () => {
        this.reconnectTimer = null;
        this.refresh()
          .then(() => {
            this.emit('notice', 'docker: reconnected to the daemon');
            this.subscribe();
          })
          .catch(() => this.reconnect(attempt + 1));
      },
      Math.min(500 * attempt, 5_000),
    );
    this.reconnectTimer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.stopEvents?.();
    this.stopEvents = null;
  }
}

/**
 * Connects when Docker is reachable; otherwise returns null and the reason (journey then shows
 * addresses as they are). Never throws.
 */
export async function connectDocker(opts: DockerInventoryOptions = {}): Promise<{ inventory: DockerInventory | null; reason: string | null }> {
  try {
    return { inventory: await DockerInventory.connect(opts), reason: null };
  } catch (e) {
    const msg = e instanceof JourneyError || e instanceof Error ? e.message : String(e);
    return { inventory: null, reason: `no Docker names: ${msg}` };
  }
}
