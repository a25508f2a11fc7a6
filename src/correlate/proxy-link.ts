/**
 * docker-proxy (userland proxy on): the client's connection ends at docker-proxy on the host
 * (client -> host:8000, no DNAT), and docker-proxy opens its own connection from the bridge's
 * gateway to the container (172.17.0.1:x -> 172.17.0.2:80). Those are two conntrack entries; this
 * links them as one journey. docker-proxy's command line (`-host-ip -host-port -container-ip
 * -container-port`) names both ends; the two halves are paired in order — the backend connection
 * docker-proxy opens within `windowUs` after accepting the client's (the oldest waiting client
 * half of that docker-proxy first). A gateway -> container connection with no client half waiting
 * is the host's own and is not tagged. Live, the socket tables settle it when the connection is
 * still open: held by docker-proxy (confirmed) or by another process (not the proxy's). Each half gets `proxiedBy: { pid, peerFlowId }` (the
 * client half has peerFlowId null until its backend appears). Pairing is by time, not by socket:
 * two clients of one docker-proxy within the window can be paired crosswise.
 */
import type { FlowInfo } from '../model/events.js';
import type { DockerProxyProcess } from '../docker/daemon.js';
import type { ProxyLinker } from './correlator.js';

export interface ProxyLinkerOptions {
  /** The docker-proxy processes now running (re-read when Docker changes). */
  readonly proxies: () => readonly DockerProxyProcess[];
  /** Addresses docker-proxy connects from (bridge gateways). */
  readonly gateways: () => ReadonlySet<string>;
  readonly windowUs?: number;
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
  flowId: string;
  pid: number;
  timeUs: number;
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

  onFlow(flow: FlowInfo, timeUs: number): { flowId: string; pid: number; peerFlowId: string | null }[] {
    const proxies = this.opts.proxies();
    if (proxies.length === 0 || flow.nat.dnat !== null) return [];
    const window = this.opts.windowUs ?? 1_000_000;
    this.frontends = this.frontends.filter((w) => Math.abs(timeUs - w.timeUs) <= window);
    this.backends = this.backends.filter((w) => Math.abs(timeUs - w.timeUs) <= window);
    const o = flow.orig;
    for (const p of proxies) {
      if (p.proto !== o.proto) continue;
      // backend half: gateway -> container:port
      if (o.dst === p.containerIp && o.dport === p.containerPort && this.opts.gateways().has(o.src)) {
        if (this.opts.sockets) {
          const socks = this.opts.sockets(p.pid);
          const key = `${o.proto} ${o.src}:${o.sport}>${o.dst}:${o.dport}`;
          // another process holds this connection: the host itself talks to the container.
          // (Gone from every table — a short connection already closed — proves nothing.)
          if (socks.others.has(key)) {
            this.refuted++;
            continue;
          }
          if (socks.owned.has(key)) this.confirmed++;
        }
        const i = this.frontends.findIndex((w) => w.pid === p.pid);
        if (i >= 0) {
          const front = this.frontends[i] as Waiting;
          this.frontends.splice(i, 1);
          this.linked++;
          return [
            { flowId: flow.id, pid: p.pid, peerFlowId: front.flowId },
            { flowId: front.flowId, pid: p.pid, peerFlowId: flow.id },
          ];
        }
        // no client half just before: the host itself talking to the container, not the proxy
        continue;
      }
      // frontend half: anyone -> host-ip:host-port, answered by the host itself (no DNAT)
      const anyAddr = p.hostIp === '0.0.0.0' || p.hostIp === '::' || p.hostIp === '';
      const local = anyAddr ? (this.opts.gateways().has(o.dst) ? true : (this.opts.isLocal?.(o.dst) ?? null)) : null;
      if (o.dport === p.hostPort && ((anyAddr && local !== false) || p.hostIp === o.dst)) {
        const i = this.backends.findIndex((w) => w.pid === p.pid);
        if (i >= 0) {
          const back = this.backends[i] as Waiting;
          this.backends.splice(i, 1);
          this.linked++;
          return [
            { flowId: flow.id, pid: p.pid, peerFlowId: back.flowId },
            { flowId: back.flowId, pid: p.pid, peerFlowId: flow.id },
          ];
        }
        this.frontends.push({ flowId: flow.id, pid: p.pid, timeUs });
        return [{ flowId: flow.id, pid: p.pid, peerFlowId: null }];
      }
    }
    return [];
  }
}
