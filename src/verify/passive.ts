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
import { isCtStatusBit, type ConntrackEntry } from '../model/conntrack.js';
import type { FlowInfo, JourneyEvent } from '../model/events.js';
import { reverseTuple } from '../model/tuple.js';
import { startPipeline } from '../pipeline/pipeline.js';
import type { HostFacts } from './host-facts.js';
import type { Endpoint, Inventory, PublishedPortSpec } from './endpoints.js';
import { bridgeOfAddr } from './endpoints.js';
import { expectFor } from './expectations.js';
import type { PlannedCheck } from './plan.js';
import { settingCauses } from './diagnose.js';
import { watchConntrack, type TimedEntry } from './collectors.js';
import type { CheckKind, PassiveFlow, Peer } from './types.js';

export interface PassiveOptions {
  readonly netns?: string;
  readonly dockerHost?: string;
  /** pipeline (default): the live pipeline (capture, conntrack, explanations, drops); conntrack: conntrack events only. */
  readonly passiveSource?: 'pipeline' | 'conntrack';
  readonly durationMs?: number;
  readonly signal?: AbortSignal;
  readonly log?: (msg: string) => void;
}

function answered(e: ConntrackEntry): boolean {
  return e.status.includes('SEEN_REPLY') || e.status.includes('ASSURED');
}

/** Classifies one conntrack entry as a hairpin flow (or null when it is not one). Pure. */
export function classifyFlow(
  e: ConntrackEntry,
  host: HostFacts,
  inv: Inventory,
  related: readonly TimedEntry[] = [],
  final = true,
  seen: PassiveFlow['seen'] = 'event',
): PassiveFlow | null {
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

function waitFor(opts: PassiveOptions): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, opts.durationMs ?? 10_000);
    opts.signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** The pipeline's flow as a conntrack entry (its tuples and state), for classification. */
export function entryOfFlow(f: FlowInfo): ConntrackEntry {
  return {
    id: f.id,
    orig: f.orig,
    reply: f.reply ?? reverseTuple(f.orig),
    status: f.ctStatus.filter(isCtStatusBit),
    ...(f.tcpState !== undefined ? { tcpState: f.tcpState } : {}),
    mark: 0,
    zone: 0,
    timeout: 0,
    source: 'conntrack-tool',
  };
}

/** Passive mode on the live pipeline: every flow it reports, classified, with its packets, drops and explanation. */
async function passiveFromPipeline(facts: Promise<HostAndInventory>, opts: PassiveOptions): Promise<PassiveFlow[]> {
  const p = await startPipeline({
    ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
    ...(opts.dockerHost !== undefined ? { dockerHost: opts.dockerHost } : {}),
  });
  const flows = new Map<string, FlowInfo>();
  const ended = new Set<string>();
  p.on('event', (ev: JourneyEvent) => {
    if (ev.type === 'flow.start' || ev.type === 'flow.update' || ev.type === 'flow.end') {
      flows.set(ev.flow.id, ev.flow);
      if (ev.type === 'flow.end') ended.add(ev.flow.id);
    } else if (ev.type === 'notice') opts.log?.(`pipeline: ${ev.message}`);
  });
  opts.log?.(`watching hairpin flows for ${Math.round((opts.durationMs ?? 10_000) / 1000)} s with the live pipeline (sending nothing)`);
  // the window is `durationMs` once both the pipeline is up and the host is read (it watches meanwhile too)
  const { host, inv } = await facts.catch(async (e: unknown) => {
    await p.stop();
    throw e;
  });
  await waitFor(opts);
  await p.stop();
  const related: TimedEntry[] = [...flows.values()].map((f) => ({ entry: entryOfFlow(f), event: 'new', timeMs: 0 }));
  const out: PassiveFlow[] = [];
  for (const f of flows.values()) {
    const e = entryOfFlow(f);
    const c = classifyFlow(e, host, inv, related, ended.has(f.id) || answered(e), 'event');
    if (!c) continue;
    const drops = f.drops.map(
      (d) =>
        `${d.reason}${d.iface !== null ? ` on ${d.iface}` : ''}${d.rule ? ` (${d.rule.table} ${d.rule.chain}${d.rule.rule ? `: ${d.rule.rule}` : ''})` : ''}`,
    );
    out.push({
      ...c,
      causes: c.status === 'fail' ? [...drops.map((d) => `dropped: ${d}`), ...c.causes] : c.causes,
      legs: f.legs.map((l) => `${l.iface} ${l.direction} ${l.tuple.src}:${l.tuple.sport} > ${l.tuple.dst}:${l.tuple.dport} (${l.packets} pkts)`),
      drops,
      explanation: f.explanation,
    });
  }
  return out;
}

/** Watches the host's hairpin flows (live pipeline, or conntrack events) and returns them classified. */
/** The host's facts and its inventory, read while the watching starts (they are needed only to classify). */
export interface HostAndInventory {
  readonly host: HostFacts;
  readonly inv: Inventory;
}

export async function passiveHairpin(facts: Promise<HostAndInventory>, opts: PassiveOptions): Promise<PassiveFlow[]> {
  if ((opts.passiveSource ?? 'pipeline') === 'pipeline') {
    try {
      return await passiveFromPipeline(facts, opts);
    } catch (e) {
      opts.log?.(`the live pipeline could not start (${(e as Error).message}): watching conntrack events only`);
    }
  }
  return passiveFromConntrack(facts, opts);
}

/** Watches conntrack in the host namespace and returns the hairpin flows seen. */
async function passiveFromConntrack(facts: Promise<HostAndInventory>, opts: PassiveOptions): Promise<PassiveFlow[]> {
  const ns = opts.netns !== undefined ? { netns: opts.netns } : {};
  const start: ConntrackEntry[] = [];
  const dump = await run(['conntrack', '-L', '-o', 'extended,id'], { ...ns, allowFailure: true, timeoutMs: 10_000 }).catch(() => null);
  for (const line of dump?.stdout.split('\n') ?? []) {
    const p = parseConntrackLine(line, 'conntrack-tool');
    if (p) start.push(p.entry);
  }
  const w = await watchConntrack(opts.netns);
  opts.log?.(`watching hairpin flows for ${Math.round((opts.durationMs ?? 10_000) / 1000)} s (sending nothing)`);
  const { host, inv } = await facts.catch(async (e: unknown) => {
    await w.stop();
    throw e;
  });
  await waitFor(opts);
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
