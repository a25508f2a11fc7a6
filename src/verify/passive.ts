/**
 * Passive hairpin verification: sends nothing. Reads the host's conntrack table, then its events for
 * `durationMs` (or until the signal aborts), and classifies each connection to a published port
 * that starts inside the host (a container on a bridge, or the host itself): same-bridge, self,
 * cross-bridge, host-loopback, host-address; DNATed or answered by docker-proxy; answered or not.
 * A connection that was never answered fails, with the host settings its path depends on named.
 */
import { run } from '../host/exec.js';
import { natOf } from '../conntrack/nat.js';
import { parseConntrackLine } from '../conntrack/parse.js';
import type { ConntrackEntry } from '../model/conntrack.js';
import type { HostFacts } from './host-facts.js';
import type { Endpoint, Inventory, PublishedPortSpec } from './endpoints.js';
import { bridgeOfAddr } from './endpoints.js';
import { expectFor, type PlannedCheck } from './plan.js';
import { settingCauses } from './diagnose.js';
import { watchConntrack, type TimedEntry } from './collectors.js';
import type { CheckKind, PassiveFlow, Peer } from './types.js';

export interface PassiveOptions {
  readonly netns?: string;
  readonly durationMs?: number;
  readonly signal?: AbortSignal;
  readonly log?: (msg: string) => void;
}

function answered(e: ConntrackEntry): boolean {
  return e.status.includes('SEEN_REPLY') || e.status.includes('ASSURED');
}

/** Classifies one conntrack entry as a hairpin flow (or null when it is not one). Pure. */
export function classifyFlow(e: ConntrackEntry, host: HostFacts, inv: Inventory, related: readonly TimedEntry[] = [], final = true, seen: PassiveFlow['seen'] = 'event'): PassiveFlow | null {
  const o = e.orig;
  if (o.family !== 4) return null;
  const isLocal = (ip: string): boolean => ip.startsWith('127.') || host.localAddrs.includes(ip);
  if (!isLocal(o.dst)) return null;
  const port: PublishedPortSpec | undefined = inv.ports.find(
    (p) => p.proto === o.proto && p.hostPort === o.dport && (p.hostIp === '0.0.0.0' || p.hostIp === o.dst),
  );
  if (port === undefined) return null;
  const src: Endpoint | undefined = inv.endpoints.find((x) => x.ip === o.src);
  const srcLocal = isLocal(o.src);
  if (src === undefined && !srcLocal) return null; // from outside: not hairpin
  const nat = natOf(o, e.reply);
  const tb = bridgeOfAddr(host.bridges, port.containerIp);
  let kind: CheckKind;
  if (src === undefined) kind = o.dst.startsWith('127.') ? 'host-loopback' : 'host-address';
  else if (src.ip === port.containerIp) kind = 'self';
  else if (src.bridge === tb?.name) kind = 'same-bridge';
  else kind = 'cross-bridge';
  const from: Peer = src
    ? { kind: 'container', name: src.name, ip: src.ip, bridge: src.bridge, pid: src.pid }
    : { kind: 'host', name: 'host', ip: o.src, bridge: null, pid: null };
  const via = nat.dnat ? 'dnat' : 'docker-proxy';
  let targetSaw: string | null = nat.dnat ? e.reply.dst : null;
  if (!nat.dnat) {
    const gw = tb?.addrs[0]?.addr;
    const leg = related.find((r) => r.entry.orig.dst === port.containerIp && r.entry.orig.dport === port.containerPort && r.entry.orig.src === gw);
    if (leg) targetSaw = leg.entry.orig.src;
  }
  const ok = answered(e);
  const expected = expectFor(host, inv, port, kind, from, o.dst);
  let status: PassiveFlow['status'] = ok ? 'pass' : 'fail';
  const causes: string[] = [];
  if (!ok) {
    if (expected.outcome === 'blocked') {
      status = 'blocked';
      causes.push(expected.blockedBy ?? 'blocked by design');
    } else {
      const check: PlannedCheck = {
        id: '',
        kind,
        port: { ...port, bridge: tb?.name ?? null },
        from,
        fromNs: null,
        fromPort: src?.port ?? null,
        dstIp: o.dst,
        dstPort: o.dport,
        expected,
        skipReason: null,
      };
      const target = inv.endpoints.find((x) => x.ip === port.containerIp)?.port ?? null;
      causes.push(...settingCauses(check, host, target));
      causes.push(`no reply seen${e.tcpState ? ` (state ${e.tcpState})` : ''}${final ? '' : ' yet'}`);
    }
  }
  return {
    kind,
    from: `${from.name} ${o.src}:${o.sport}`,
    to: `${o.dst}:${o.dport}`,
    dnatTo: nat.dnat?.to ?? null,
    targetSaw,
    answered: ok,
    via,
    status,
    causes,
    conntrack: e,
    seen,
  };
}

/** Watches conntrack in the host namespace and returns the hairpin flows seen. */
export async function passiveHairpin(host: HostFacts, inv: Inventory, opts: PassiveOptions): Promise<PassiveFlow[]> {
  const ns = opts.netns !== undefined ? { netns: opts.netns } : {};
  const start: ConntrackEntry[] = [];
  const dump = await run(['conntrack', '-L', '-o', 'extended,id'], { ...ns, allowFailure: true, timeoutMs: 10_000 }).catch(() => null);
  for (const line of dump?.stdout.split('\n') ?? []) {
    const p = parseConntrackLine(line, 'conntrack-tool');
    if (p) start.push(p.entry);
  }
  const w = await watchConntrack(opts.netns);
  opts.log?.(`watching hairpin flows for ${Math.round((opts.durationMs ?? 10_000) / 1000)} s (sending nothing)`);
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, opts.durationMs ?? 10_000);
    opts.signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
  await w.stop();
  const latest = new Map<string, ConntrackEntry>();
  const destroyed = new Set<string>();
  const live = new Set<string>();
  for (const e of start) latest.set(e.id, e);
  for (const ev of w.items) {
    latest.set(ev.entry.id, ev.entry);
    live.add(ev.entry.id);
    if (ev.event === 'destroy') destroyed.add(ev.entry.id);
  }
  const out: PassiveFlow[] = [];
  for (const [id, e] of latest) {
    const f = classifyFlow(e, host, inv, w.items, destroyed.has(id) || answered(e), live.has(id) ? 'event' : 'table');
    if (f) out.push(f);
  }
  return out;
}
