/**
 * docker-proxy (userland proxy on): the client's connection ends at docker-proxy on the host
 * (client -> host:8000, no DNAT), and docker-proxy opens its own connection from the bridge's
 * gateway to the container (172.17.0.1:x -> 172.17.0.2:80). Those are two conntrack entries — of
 * two families when an IPv6 client reaches an IPv4 container through the proxy on [::] — and
 * this links them as one journey. docker-proxy's command line (`-host-ip -host-port -container-ip
 * -container-port`) names both ends. A listener on 0.0.0.0 answers IPv4 clients, one on :: IPv6
 * clients (and IPv4 ones when no 0.0.0.0 listener shares its port: a dual-stack socket).
 *
 * The halves are paired in order — the backend connection docker-proxy opens within `windowUs` of
 * accepting the client's (the oldest waiting client half of that docker-proxy first). A client
 * half known to conntrack always comes first (the kernel confirms the client's SYN before
 * docker-proxy accepts it). A client half with no conntrack entry (an IPv6 client on a host where
 * no ip6 rule loads IPv6 connection tracking) becomes a flow only when its packets' hold expires,
 * after its backend: backends wait for it (`keepUs`), and only such a client half takes one.
 * A gateway -> container connection with no client half is the host's own and is not tagged.
 * Live, the socket tables settle a backend while the connection is open: held by a docker-proxy
 * (confirmed, and that proxy is its owner) or by another process (not a proxy's). Pairing is by
 * time, not by socket: two clients of one docker-proxy within the window can be paired crosswise.
 *
 * Each half gets `proxiedBy` (model/events.ts): the pid, the other half's flow id and tuple, and
 * the source the container sees — docker-proxy's end of its own connection, never the client.
 */
import type { DockerProxyProcess } from '../docker/daemon.js';
import type { ProxiedBy } from '../model/events.js';
import type { ProxyLinkFlow } from './correlator-options.js';
import type { Tuple } from '../model/tuple.js';
import type { ProxyLinker } from './correlator-options.js';

export interface ProxyLinkerOptions {
  /** The docker-proxy processes now running (re-read when Docker changes). */
  readonly proxies: () => readonly DockerProxyProcess[];
  /** Addresses docker-proxy connects from (bridge gateways). */
  readonly gateways: () => ReadonlySet<string>;
  readonly windowUs?: number;
  /** How long a half waits for its peer at most (default 5 s: above the correlator's 2 s packet hold). */
  readonly keepUs?: number;
  /**
   * Live only: the sockets a docker-proxy holds ("tcp 172.17.0.1:36322>172.17.0.2:80"), to
   * confirm that a gateway -> container connection is the proxy's own (its connect() is in
   * progress when conntrack reports the connection). Omitted in replays (time alone then).
   */
  readonly sockets?: (pid: number) => { readonly owned: ReadonlySet<string>; readonly others: ReadonlySet<string> };
  /**
   * Whether an address is one of the host's own (null: not known). docker-proxy listening on
   * 0.0.0.0 only answers connections to the host's addresses: a flow to another address on the
   * published port (a container's outbound HTTP, direct access to a container) is not its.
   */
  readonly isLocal?: (addr: string) => boolean | null;
}

interface Waiting {
  readonly flowId: string;
  /** The docker-proxy processes this half can belong to (one once known). */
  readonly pids: readonly number[];
  readonly timeUs: number;
  readonly orig: Tuple;
}

type Link = { flowId: string; proxiedBy: ProxiedBy };

const WILDCARD4 = new Set(['0.0.0.0', '']);

/** "addr:port", IPv6 in brackets. */
export function endpointText(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** One sentence: what docker-proxy does to the journey, who the container sees, what it loses. */
export function proxyNote(pid: number, client: Tuple | null, container: Tuple | null, target: string): string {
  const lost = client ? `the client's ${client.family === 6 ? 'IPv6 ' : ''}address ${client.src}` : "the client's address";
  const head = client
    ? `docker-proxy (pid ${pid}) ends ${endpointText(client.src, client.sport)} -> ${endpointText(client.dst, client.dport)}`
    : `docker-proxy (pid ${pid}) ends the client's connection`;
  if (container === null)
    return `${head} and opens its own connection to ${target}: the container sees docker-proxy's end (a bridge gateway), not ${lost}`;
  const sees = endpointText(container.src, container.sport);
  const cross = client && client.family !== container.family ? ` (IPv${client.family} in, IPv${container.family} out)` : '';
  return `${head} and opens ${sees} -> ${endpointText(container.dst, container.dport)}${cross}: the container sees ${sees}, never the client; ${lost} is lost to it`;
}

export class DockerProxyLinker implements ProxyLinker {
  private readonly opts: ProxyLinkerOptions;
  private frontends: Waiting[] = [];
  private backends: Waiting[] = [];
  linked = 0;
  /** Backend halves confirmed / refuted by docker-proxy's sockets (live). */
  confirmed = 0;
  refuted = 0;

  constructor(opts: ProxyLinkerOptions) {
    this.opts = opts;
  }

  onFlow(flow: ProxyLinkFlow, timeUs: number): Link[] {
    const proxies = this.opts.proxies();
    if (proxies.length === 0 || flow.nat.dnat !== null) return [];
    const keep = Math.max(this.opts.keepUs ?? 5_000_000, this.opts.windowUs ?? 1_000_000);
    this.frontends = this.frontends.filter((w) => timeUs - w.timeUs <= keep);
    this.backends = this.backends.filter((w) => timeUs - w.timeUs <= keep);
    const o = flow.orig;
    const same = proxies.filter((p) => p.proto === o.proto);
    // backend half: gateway -> container:port
    const backs = same.filter((p) => o.dst === p.containerIp && o.dport === p.containerPort);
    if (backs.length > 0 && this.opts.gateways().has(o.src)) return this.onBackend(flow, timeUs, backs);
    // frontend half: anyone -> host-ip:host-port, answered by the host itself (no DNAT)
    const fronts = same.filter((p) => this.answers(p, o, same));
    return fronts.length > 0 ? this.onFrontend(flow, timeUs, fronts) : [];
  }

  /** Whether docker-proxy `p` is the listener a connection to `o` reaches. */
  private answers(p: DockerProxyProcess, o: Tuple, same: readonly DockerProxyProcess[]): boolean {
    if (o.dport !== p.hostPort) return false;
    const v4 = WILDCARD4.has(p.hostIp);
    if (!v4 && p.hostIp !== '::') return p.hostIp === o.dst;
    if (v4 && o.family !== 4) return false;
    // [::] answers IPv4 only as a dual-stack socket: when no 0.0.0.0 listener holds the port
    if (!v4 && o.family === 4 && same.some((q) => q.hostPort === p.hostPort && WILDCARD4.has(q.hostIp))) return false;
    const local = this.opts.gateways().has(o.dst) ? true : (this.opts.isLocal?.(o.dst) ?? null);
    return local !== false;
  }

  private onBackend(flow: ProxyLinkFlow, timeUs: number, cands: readonly DockerProxyProcess[]): Link[] {
    const o = flow.orig;
    let owner: number | null = null;
    if (this.opts.sockets) {
      const key = `${o.proto} ${o.src}:${o.sport}>${o.dst}:${o.dport}`;
      let other = false;
      for (const p of cands) {
        const socks = this.opts.sockets(p.pid);
        if (socks.owned.has(key)) {
          owner = p.pid;
          break;
        }
        // held by another process (maybe another docker-proxy: the loop goes on)
        if (socks.others.has(key)) other = true;
      }
      // held, by no docker-proxy: the host itself talks to the container.
      // (Gone from every table — a short connection already closed — proves nothing.)
      if (owner === null && other) {
        this.refuted++;
        return [];
      }
      if (owner !== null) this.confirmed++;
    }
    const pids = owner !== null ? [owner] : cands.map((p) => p.pid);
    const window = this.opts.windowUs ?? 1_000_000;
    const i = this.frontends.findIndex((w) => w.pids.some((p) => pids.includes(p)) && Math.abs(timeUs - w.timeUs) <= window);
    const front = this.frontends[i];
    if (front !== undefined) {
      this.frontends.splice(i, 1);
      const pid = owner ?? (front.pids.find((p) => pids.includes(p)) as number);
      return this.link(pid, front, { flowId: flow.id, pids, timeUs, orig: o }, cands);
    }
    // no client half yet: the host itself talking to the container, or a client half known only
    // from its packets, which comes later
    this.backends.push({ flowId: flow.id, pids, timeUs, orig: o });
    return [];
  }

  private onFrontend(flow: ProxyLinkFlow, timeUs: number, cands: readonly DockerProxyProcess[]): Link[] {
    const pids = cands.map((p) => p.pid);
    const me: Waiting = { flowId: flow.id, pids, timeUs, orig: flow.orig };
    // no conntrack entry (reply unknown): its backend may already be here, opened after its first packet
    if (flow.reply === null) {
      const window = this.opts.windowUs ?? 1_000_000;
      const i = this.backends.findIndex((w) => w.pids.some((p) => pids.includes(p)) && w.timeUs >= timeUs && w.timeUs - timeUs <= window);
      const back = this.backends[i];
      if (back !== undefined) {
        this.backends.splice(i, 1);
        return this.link(back.pids.find((p) => pids.includes(p)) as number, me, back, cands);
      }
    }
    this.frontends.push(me);
    const pid = pids[0] as number;
    const p = cands[0] as DockerProxyProcess;
    const target = endpointText(p.containerIp, p.containerPort);
    return [{ flowId: flow.id, proxiedBy: this.proxied(pid, 'client', me, null, target) }];
  }

  private link(pid: number, front: Waiting, back: Waiting, cands: readonly DockerProxyProcess[]): Link[] {
    this.linked++;
    const p = cands.find((c) => c.pid === pid);
    const target = p ? endpointText(p.containerIp, p.containerPort) : endpointText(back.orig.dst, back.orig.dport);
    return [
      { flowId: front.flowId, proxiedBy: this.proxied(pid, 'client', front, back, target) },
      { flowId: back.flowId, proxiedBy: this.proxied(pid, 'container', front, back, target) },
    ];
  }

  private proxied(pid: number, half: 'client' | 'container', front: Waiting, back: Waiting | null, target: string): ProxiedBy {
    const peer = half === 'client' ? back : front;
    return {
      pid,
      peerFlowId: peer?.flowId ?? null,
      half,
      client: front.orig,
      container: back?.orig ?? null,
      containerSees: back ? { addr: back.orig.src, port: back.orig.sport } : null,
      note: proxyNote(pid, front.orig, back?.orig ?? null, target),
    };
  }
}
