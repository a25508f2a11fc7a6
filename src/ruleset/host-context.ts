/**
 * The host a ruleset runs on: interfaces with their addresses (`ip -j addr`) and routes
 * (`ip -j route show table all`, IPv4 and IPv6). The simulator needs it for `addrtype`/`fib` matches,
 * the routing decision (input or forward, and out of which interface) and MASQUERADE's address.
 * Routes missing from the input are derived from the addresses the way the kernel makes them
 * (local and connected prefixes); nothing else is assumed.
 */
import { JourneyError } from '../model/errors.js';
import { type J, isObj, jsonText as str } from './json-text.js';
import { type Cidr, type Ip, parseCidr, parseIp, cidrContains } from './ip.js';

export interface HostAddr {
  readonly family: 4 | 6;
  readonly local: string;
  readonly ip: Ip;
  readonly prefixlen: number;
  readonly scope: string;
}

export interface HostInterface {
  readonly name: string;
  readonly index: number;
  readonly up: boolean;
  readonly addrs: HostAddr[];
  /** Link kind from `ip -d -j addr` (bridge, veth, …); undefined when the dump has no details. */
  readonly kind?: string;
}

export type RouteType = 'unicast' | 'local' | 'broadcast' | 'multicast' | 'blackhole' | 'unreachable' | 'prohibit' | 'throw' | 'anycast' | 'nat';

export interface HostRoute {
  readonly table: string;
  readonly type: RouteType;
  readonly dst: Cidr;
  readonly dev: string | null;
  readonly gateway: string | null;
  readonly prefsrc: string | null;
  readonly metric: number;
  /** True when derived from an address rather than read from the route dump. */
  readonly derived: boolean;
}

export interface HostContext {
  readonly interfaces: Map<string, HostInterface>;
  readonly routes: HostRoute[];
  /** Whether routes came from a dump (true) or only from addresses (false), or nothing at all (null). */
  readonly routesKnown: boolean | null;
  readonly addrsKnown: boolean;
  readonly source: string;
}

function parseJsonArray(text: string, source: string): J[] {
  let doc: J;
  try {
    doc = JSON.parse(text === '' ? '[]' : text) as J;
  } catch (e) {
    throw new JourneyError('E_PARSE', `${source}: not JSON: ${e instanceof Error ? e.message : str(e)}`, { file: source });
  }
  if (!Array.isArray(doc)) throw new JourneyError('E_PARSE', `${source}: at $: expected an array`, { file: source, path: '$' });
  return doc;
}

/** Parses `ip -j addr` output. */
export function parseIpAddr(text: string, source = '<ip -j addr>'): Map<string, HostInterface> {
  const doc = parseJsonArray(text, source);
  const out = new Map<string, HostInterface>();
  doc.forEach((it, i) => {
    const p = `$[${i}]`;
    if (!isObj(it) || typeof it['ifname'] !== 'string')
      throw new JourneyError('E_PARSE', `${source}: at ${p}: expected {ifname, addr_info}`, { file: source, path: p });
    const name = it['ifname'];
    const flags = Array.isArray(it['flags']) ? (it['flags'] as J[]).map(str) : [];
    const addrs: HostAddr[] = [];
    const ai = it['addr_info'];
    if (ai !== undefined && !Array.isArray(ai))
      throw new JourneyError('E_PARSE', `${source}: at ${p}.addr_info: expected an array`, { file: source, path: `${p}.addr_info` });
    (ai ?? []).forEach((a: J, j: number) => {
      const ap = `${p}.addr_info[${j}]`;
      if (!isObj(a)) throw new JourneyError('E_PARSE', `${source}: at ${ap}: expected an object`, { file: source, path: ap });
      if (a['family'] !== 'inet' && a['family'] !== 'inet6') return;
      const local = a['local'];
      const ip = typeof local === 'string' ? parseIp(local) : null;
      if (ip === null || typeof a['prefixlen'] !== 'number')
        throw new JourneyError('E_PARSE', `${source}: at ${ap}: bad address`, { file: source, path: ap });
      addrs.push({ family: ip.v, local: local as string, ip, prefixlen: a['prefixlen'], scope: str(a['scope'] ?? 'global') });
    });
    const li = it['linkinfo'];
    // `ip -d` adds details (promiscuity, linkinfo…): without them the kind is unknown
    const detailed = 'promiscuity' in it || 'linkinfo' in it;
    const kind = isObj(li) && typeof li['info_kind'] === 'string' ? li['info_kind'] : detailed ? 'device' : undefined;
    out.set(name, {
      name,
      index: typeof it['ifindex'] === 'number' ? it['ifindex'] : 0,
      up: flags.includes('UP') || it['operstate'] === 'UP',
      addrs,
      ...(kind !== undefined ? { kind } : {}),
    });
  });
  return out;
}

const ROUTE_TYPES = new Set(['unicast', 'local', 'broadcast', 'multicast', 'blackhole', 'unreachable', 'prohibit', 'throw', 'anycast', 'nat']);

/** Parses `ip -j route show table all` (and `ip -6 -j route show table all`) output. */
export function parseIpRoute(text: string, source = '<ip -j route>'): HostRoute[] {
  const doc = parseJsonArray(text, source);
  const out: HostRoute[] = [];
  doc.forEach((it, i) => {
    const p = `$[${i}]`;
    if (!isObj(it) || typeof it['dst'] !== 'string')
      throw new JourneyError('E_PARSE', `${source}: at ${p}: expected {dst, dev}`, { file: source, path: p });
    const type = str(it['type'] ?? 'unicast');
    if (!ROUTE_TYPES.has(type))
      throw new JourneyError('E_PARSE', `${source}: at ${p}.type: unknown route type ${type}`, { file: source, path: `${p}.type` });
    const dstText = it['dst'];
    let dst: Cidr | null;
    if (dstText === 'default') {
      const gw = typeof it['gateway'] === 'string' ? it['gateway'] : '';
      const v6 = gw.includes(':') || it['family'] === 'inet6';
      dst = parseCidr(v6 ? '::/0' : '0.0.0.0/0');
    } else dst = parseCidr(dstText);
    if (dst === null) throw new JourneyError('E_PARSE', `${source}: at ${p}.dst: bad destination "${dstText}"`, { file: source, path: `${p}.dst` });
    out.push({
      table: str(it['table'] ?? 'main'),
      type: type as RouteType,
      dst,
      dev: typeof it['dev'] === 'string' ? it['dev'] : null,
      gateway: typeof it['gateway'] === 'string' ? it['gateway'] : null,
      prefsrc: typeof it['prefsrc'] === 'string' ? it['prefsrc'] : null,
      metric: typeof it['metric'] === 'number' ? it['metric'] : 0,
      derived: false,
    });
  });
  return out;
}

/**
 * Builds a host context. Local and connected routes are derived from the addresses when the route
 * dump lacks them (a dump of `ip route` without `table all` has no local table).
 */
export function makeHostContext(interfaces: Map<string, HostInterface> | null, routes: HostRoute[] | null, source = ''): HostContext {
  const ifs = interfaces ?? new Map<string, HostInterface>();
  const rs = [...(routes ?? [])];
  const hasLocal = rs.some((r) => r.table === 'local' && r.type === 'local');
  for (const itf of ifs.values()) {
    for (const a of itf.addrs) {
      if (!hasLocal) {
        const c = parseCidr(`${a.local}/${a.family === 4 ? 32 : 128}`);
        if (c) rs.push({ table: 'local', type: 'local', dst: c, dev: itf.name, gateway: null, prefsrc: a.local, metric: 0, derived: true });
        if (a.family === 4 && itf.name === 'lo') {
          const lo = parseCidr(`${a.local}/${a.prefixlen}`);
          if (lo) rs.push({ table: 'local', type: 'local', dst: lo, dev: 'lo', gateway: null, prefsrc: a.local, metric: 0, derived: true });
        }
      }
      const net = parseCidr(`${a.local}/${a.prefixlen}`);
      if (
        net &&
        a.scope !== 'host' &&
        a.scope !== 'link' &&
        !rs.some((r) => r.table === 'main' && r.dst.v === net.v && r.dst.len === net.len && r.dst.net === net.net)
      ) {
        rs.push({ table: 'main', type: 'unicast', dst: net, dev: itf.name, gateway: null, prefsrc: a.local, metric: 0, derived: true });
      }
    }
  }
  return {
    interfaces: ifs,
    routes: rs,
    routesKnown: routes !== null ? true : interfaces !== null ? false : null,
    addrsKnown: interfaces !== null,
    source,
  };
}

export function emptyHostContext(): HostContext {
  return makeHostContext(null, null, '');
}

export interface RouteResult {
  readonly route: HostRoute;
  /** local delivery (input) or forwarding/output out of `dev`. */
  readonly local: boolean;
}

/** Route lookup: local table first, then main and default tables, longest prefix, lowest metric. */
export function lookupRoute(ctx: HostContext, dst: Ip): RouteResult | null {
  for (const table of ['local', 'main', 'default']) {
    let best: HostRoute | null = null;
    for (const r of ctx.routes) {
      if (r.table !== table || !cidrContains(r.dst, dst)) continue;
      if (best === null || r.dst.len > best.dst.len || (r.dst.len === best.dst.len && r.metric < best.metric)) best = r;
    }
    if (best !== null) {
      if (best.type === 'throw') continue;
      return { route: best, local: best.type === 'local' };
    }
  }
  return null;
}

/** The kernel's address type of `ip` (for addrtype / fib type): local, broadcast, multicast, unicast... */
export function addrType(ctx: HostContext, ip: Ip): string | null {
  if (ip.v === 4) {
    if (ip.n >> 28n === 0xen) return 'multicast';
    if (ip.n === 0xffffffffn) return 'broadcast';
  } else if (ip.n >> 120n === 0xffn) return 'multicast';
  for (const r of ctx.routes) {
    if (r.table === 'local' && cidrContains(r.dst, ip) && (r.type === 'local' || r.type === 'broadcast' || r.type === 'anycast')) return r.type;
  }
  if (!ctx.addrsKnown && ctx.routesKnown !== true) return null;
  const rr = lookupRoute(ctx, ip);
  if (rr === null) return ctx.routesKnown === true ? 'unreachable' : null;
  return rr.route.type === 'local' ? 'local' : rr.route.type;
}

/** The address MASQUERADE picks on `dev` towards `dst`: the route's prefsrc, else an address of the device on the same prefix, else its first global one. */
export function sourceAddressFor(ctx: HostContext, dev: string, dst: Ip, route: HostRoute | null): string | null {
  if (route?.prefsrc) {
    const p = parseIp(route.prefsrc);
    if (p && p.v === dst.v) return route.prefsrc;
  }
  const itf = ctx.interfaces.get(dev);
  if (!itf) return null;
  const same = itf.addrs.filter((a) => a.family === dst.v && a.scope !== 'host');
  const gw = route?.gateway ? parseIp(route.gateway) : null;
  for (const a of same) {
    const net = parseCidr(`${a.local}/${a.prefixlen}`);
    if (net && ((gw && cidrContains(net, gw)) || cidrContains(net, dst))) return a.local;
  }
  const global = same.find((a) => a.scope === 'global') ?? same[0];
  return global?.local ?? null;
}
