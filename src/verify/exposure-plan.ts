/**
 * What `journey verify exposure` asks: the host as the simulator sees it (interfaces, addresses,
 * bridges), the targets (every published host address:port and every container address:port
 * behind one) and, per target, source class and IP family, the first packet such a source sends.
 * Pure: from the ruleset model, the host context and (when given) a Docker snapshot. Family-aware
 * throughout: IPv6 rows appear where the host and the ruleset have IPv6.
 */
import type { DockerSnapshot } from '../docker/inventory.js';
import { cidrContains, formatIp, parseCidr, parseIp, type Cidr } from '../ruleset/ip.js';
import type { HostContext } from '../ruleset/host-context.js';
import type { Ruleset } from '../ruleset/model.js';
import { dockerFacts } from './docker-rules.js';
import { IP_FAMILIES, SOURCE_CLASSES, type ExposureTarget, type IpFamilyNumber, type SourceClass } from './exposure-types.js';

export interface ExposureInputs {
  readonly rules: Ruleset;
  readonly context: HostContext;
  /** Containers, networks, published ports and docker-proxy processes; null without Docker. */
  readonly docker: DockerSnapshot | null;
  readonly netns: string | null;
}

export interface HostBridge {
  readonly name: string;
  readonly nets: readonly { readonly cidr: Cidr; readonly gateway: string }[];
}

export interface ExposureHost {
  /** The uplink: the interface of the default route (IPv4 first), else the first interface with a global address. */
  readonly uplink: string | null;
  /** Global addresses on the uplink, per family, with their subnet. */
  readonly uplinkNets: readonly { readonly family: IpFamilyNumber; readonly addr: string; readonly cidr: Cidr }[];
  /** Every address of the host (any interface), for "is this address the host's?". */
  readonly localAddrs: readonly string[];
  readonly bridges: readonly HostBridge[];
}

/** A planned row: the target, who sends, and the first packet. */
export interface RowPlan {
  readonly target: ExposureTarget;
  readonly source: SourceClass;
  readonly family: IpFamilyNumber;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly iif: string | null;
  readonly local: boolean;
}

const LOOPBACK: Record<IpFamilyNumber, string> = { 4: '127.0.0.1', 6: '::1' };
/** A remote address per family (TEST-NET-3 / documentation prefix): "the internet". */
const REMOTE: Record<IpFamilyNumber, string> = { 4: '203.0.113.7', 6: '2001:db8:7::7' };
const SPORT = 40_000;

function isBridgeName(name: string, docker: DockerSnapshot | null, kind: string | undefined): boolean {
  if (docker?.networks.some((n) => n.bridge === name)) return true;
  return kind === 'bridge' || name === 'docker0' || /^br-[0-9a-f]{12}$/.test(name);
}

export function exposureHost(inp: ExposureInputs): ExposureHost {
  const ifs = [...inp.context.interfaces.values()];
  // containers' addresses (Docker, else the DNAT rules): an interface whose subnet holds one is a bridge
  const containerAddrs = (
    inp.docker !== null
      ? inp.docker.containers.flatMap((c) => c.endpoints.flatMap((e) => [e.ipv4, e.ipv6]))
      : [...dockerFacts(inp.rules, 4).dnat, ...dockerFacts(inp.rules, 6).dnat].map((d) => d.containerIp)
  )
    .map((a) => (a === null ? null : parseIp(a)))
    .filter((a): a is NonNullable<ReturnType<typeof parseIp>> => a !== null);
  const holdsContainer = (itf: (typeof ifs)[number]): boolean =>
    itf.name !== 'lo' &&
    itf.addrs.some((a) => {
      const c = parseCidr(`${a.local}/${a.prefixlen}`);
      return a.scope === 'global' && c !== null && containerAddrs.some((x) => cidrContains(c, x));
    });
  const bridges: HostBridge[] = [];
  const localAddrs: string[] = [];
  for (const itf of ifs) {
    for (const a of itf.addrs) localAddrs.push(a.local);
    if (!isBridgeName(itf.name, inp.docker, itf.kind) && !holdsContainer(itf)) continue;
    const nets = itf.addrs
      .filter((a) => a.scope !== 'link' && a.scope !== 'host')
      .map((a) => ({ cidr: parseCidr(`${a.local}/${a.prefixlen}`), gateway: a.local }))
      .filter((n): n is { cidr: Cidr; gateway: string } => n.cidr !== null);
    bridges.push({ name: itf.name, nets });
  }
  const bridgeNames = new Set(bridges.map((b) => b.name));
  const def =
    inp.context.routes.find((r) => r.table === 'main' && r.dst.len === 0 && r.dev !== null && r.dst.v === 4) ??
    inp.context.routes.find((r) => r.table === 'main' && r.dst.len === 0 && r.dev !== null);
  const candidates = ifs.filter((i) => i.name !== 'lo' && !bridgeNames.has(i.name) && i.kind !== 'veth' && i.addrs.some((a) => a.scope === 'global'));
  const uplink = def?.dev ?? candidates[0]?.name ?? null;
  const up = uplink !== null ? inp.context.interfaces.get(uplink) : undefined;
  const uplinkNets = (up?.addrs ?? [])
    .filter((a) => a.scope === 'global')
    .map((a) => ({ family: a.family, addr: a.local, cidr: parseCidr(`${a.local}/${a.prefixlen}`) }))
    .filter((n): n is { family: IpFamilyNumber; addr: string; cidr: Cidr } => n.cidr !== null);
  return { uplink, uplinkNets, localAddrs, bridges };
}

function familyOf(addr: string): IpFamilyNumber | null {
  return parseIp(addr)?.v ?? null;
}

export function bridgeOf(host: ExposureHost, addr: string): HostBridge | null {
  const ip = parseIp(addr);
  if (ip === null) return null;
  return host.bridges.find((b) => b.nets.some((n) => cidrContains(n.cidr, ip))) ?? null;
}

/** An address of `cidr` other than the ones given: counting down from the top of the subnet. */
export function otherAddress(cidr: Cidr, avoid: readonly string[]): string | null {
  const size = cidr.v === 4 ? 32 : 128;
  const hostBits = BigInt(size - cidr.len);
  if (hostBits < 2n) return null;
  const top = cidr.net + (1n << hostBits) - (cidr.v === 4 ? 2n : 1n);
  for (let i = 0n; i < 16n; i++) {
    const s = formatIp({ v: cidr.v, n: top - i } as Parameters<typeof formatIp>[0]);
    if (!avoid.includes(s)) return s;
  }
  return null;
}

/** The targets: published ports (Docker snapshot, else the ruleset's DNAT rules) and the container addresses behind them. */
export function exposureTargets(inp: ExposureInputs, host: ExposureHost): ExposureTarget[] {
  const out: ExposureTarget[] = [];
  const seen = new Set<string>();
  const add = (t: ExposureTarget): void => {
    const k = `${t.kind}|${t.proto}|${t.addr}|${t.port}`;
    if (seen.has(k)) return;
    seen.add(k);
    out.push(t);
  };
  const hostAddrsOf = (family: IpFamilyNumber, bound: string): string[] => {
    const any = bound === '' || bound === '0.0.0.0' || bound === '::';
    if (!any) return familyOf(bound) === family ? [bound] : [];
    if (bound === '0.0.0.0' && family === 6) return [];
    return [...host.uplinkNets.filter((n) => n.family === family).map((n) => n.addr), LOOPBACK[family]];
  };
  const containerTarget = (
    family: IpFamilyNumber,
    proto: string,
    cip: string,
    cport: number,
    name: string | null,
    source: ExposureTarget['source'],
  ): ExposureTarget => ({
    kind: 'container',
    family,
    proto,
    addr: cip,
    port: cport,
    container: name,
    containerIp: cip,
    containerPort: cport,
    bridge: bridgeOf(host, cip)?.name ?? null,
    source,
  });
  const published: ExposureTarget[] = [];
  const containers: ExposureTarget[] = [];
  if (inp.docker !== null) {
    for (const c of inp.docker.containers) {
      for (const p of c.published) {
        for (const family of IP_FAMILIES) {
          const ep = c.endpoints.find((e) => (family === 4 ? e.ipv4 : e.ipv6) !== null);
          const cip = ep ? (family === 4 ? ep.ipv4 : ep.ipv6) : null;
          const bound = p.hostIp;
          for (const addr of hostAddrsOf(family, bound)) {
            // IPv6 published without a container IPv6 address: only docker-proxy can answer it
            const target = cip ?? (family === 6 ? (c.endpoints[0]?.ipv4 ?? null) : null);
            if (target === null) continue;
            published.push({
              kind: 'published',
              family,
              proto: p.proto,
              addr,
              port: p.hostPort,
              container: c.name,
              containerIp: target,
              containerPort: p.containerPort,
              bridge: bridgeOf(host, target)?.name ?? null,
              source: 'docker',
            });
          }
          if (cip !== null) containers.push(containerTarget(family, p.proto, cip, p.containerPort, c.name, 'docker'));
        }
      }
    }
  } else {
    for (const family of IP_FAMILIES) {
      for (const d of dockerFacts(inp.rules, family).dnat) {
        for (const addr of hostAddrsOf(family, d.hostIp ?? '')) {
          published.push({
            kind: 'published',
            family,
            proto: d.proto,
            addr,
            port: d.hostPort,
            container: null,
            containerIp: d.containerIp,
            containerPort: d.containerPort,
            bridge: bridgeOf(host, d.containerIp)?.name ?? null,
            source: 'dnat-rule',
          });
        }
        containers.push(containerTarget(family, d.proto, d.containerIp, d.containerPort, null, 'dnat-rule'));
      }
    }
  }
  for (const t of [...published, ...containers]) add(t);
  return out;
}

/** The rows: every target against every source class that can send to it, per the target's family. */
export function planRows(inp: ExposureInputs, host: ExposureHost, targets: readonly ExposureTarget[], only?: readonly SourceClass[]): RowPlan[] {
  const rows: RowPlan[] = [];
  const want = (s: SourceClass): boolean => only === undefined || only.length === 0 || only.includes(s);
  const knownContainerAddrs =
    inp.docker?.containers.flatMap((c) => c.endpoints.flatMap((e) => [e.ipv4, e.ipv6])).filter((x): x is string => x !== null) ?? [];
  for (const t of targets) {
    const f = t.family;
    const loop = t.addr === LOOPBACK[f] || (f === 4 && t.addr.startsWith('127.'));
    const up = host.uplinkNets.find((n) => n.family === f);
    for (const source of SOURCE_CLASSES) {
      if (!want(source)) continue;
      const mk = (src: string, iif: string | null, local = false): void => {
        rows.push({ target: t, source, family: f, src, dst: t.addr, sport: SPORT, iif, local });
      };
      switch (source) {
        case 'internet':
          // the internet reaches the host's own addresses only
          if (t.kind === 'published' && !loop && host.uplink !== null && up !== undefined) mk(REMOTE[f], host.uplink);
          break;
        case 'lan': {
          if (host.uplink === null || up === undefined) break;
          const src = otherAddress(up.cidr, [up.addr, ...host.localAddrs]);
          if (src !== null) mk(src, host.uplink);
          break;
        }
        case 'host':
          mk(loop ? LOOPBACK[f] : '', null, true);
          break;
        case 'same-bridge': {
          if (loop) break; // a container's 127.0.0.1 is its own
          const b = host.bridges.find((x) => x.name === t.bridge);
          const net = b?.nets.find((n) => n.cidr.v === f);
          if (b === undefined || net === undefined) break;
          const peer = knownContainerAddrs.find((a) => a !== t.containerIp && bridgeOf(host, a)?.name === b.name && familyOf(a) === f);
          const src = peer ?? otherAddress(net.cidr, [net.gateway, t.containerIp, ...knownContainerAddrs]);
          if (src !== null) mk(src, b.name);
          break;
        }
        case 'other-bridge': {
          if (loop) break;
          const b = host.bridges.find((x) => x.name !== t.bridge && x.nets.some((n) => n.cidr.v === f));
          const net = b?.nets.find((n) => n.cidr.v === f);
          if (b === undefined || net === undefined) break;
          const peer = knownContainerAddrs.find((a) => bridgeOf(host, a)?.name === b.name && familyOf(a) === f);
          const src = peer ?? otherAddress(net.cidr, [net.gateway, ...knownContainerAddrs]);
          if (src !== null) mk(src, b.name);
          break;
        }
      }
    }
  }
  return rows;
}
