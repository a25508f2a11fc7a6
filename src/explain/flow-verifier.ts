/**
 * `journey watch|serve --verify [N]`: the flow explainer with the kernel's word on each flow.
 * Wraps the pipeline's explainer (same shape): every explanation it gives carries
 * `verification` (src/explain/flow-verify.ts), looked up in the trace the TraceArm keeps. The
 * lookup is synchronous: the first packet was traced when it crossed netfilter, before conntrack
 * confirmed its connection, so by flow.start (which waits for both legs of NAT) its trace lines
 * are in. Off (no --verify) nothing of this exists.
 *
 *   const v = await startFlowVerifier({ netns, rate: 5 });   // arms the trace, or says why not
 *   explainer = v.wrap(explainer);
 *   …
 *   await v.stop();                                          // the trace table goes
 */
import type { FlowInfo } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import type { Ruleset } from '../ruleset/model.js';
import { TraceArm, traceUnavailable } from '../netfilter/trace-arm.js';
import type { TracePacket } from '../netfilter/kernel-trace.js';
import { canonicalIp } from '../ruleset/ip.js';
import { findFirstPacket, unverified, verifyWithTrace } from './flow-verify.js';

/** The explainer shape the pipeline uses (correlate/explainer.ts's ReloadableExplainer). */
export interface VerifiableExplainer {
  readonly generation: number;
  readonly unavailable: string | null;
  readonly counters: { explained: number; failed: number };
  /** The ruleset the simulator explains with (for which built-in chains exist in the kernel). */
  readonly ruleset?: Ruleset | null;
  reload(): Promise<void>;
  explain(flow: FlowInfo): Explanation | null;
  explainSpec(spec: never): Explanation | null;
}

export interface FlowVerifierOptions {
  readonly netns?: string;
  /** New flows a second whose first packet the kernel traces. */
  readonly rate: number;
}

/** Counts by result, for /metrics (journey_explanations_total{result}) and the final stats. */
export type VerifyCounts = Record<'verified' | 'contradicted' | 'unverified', number>;

export class FlowVerifier {
  readonly counts: VerifyCounts = { verified: 0, contradicted: 0, unverified: 0 };
  /** The first verification of each flow and the ruleset generation it was made under. */
  private readonly byFlow = new Map<string, { gen: number }>();
  /** Flows already counted (each flow counts once, at its first explanation). */
  private readonly counted = new Set<string>();
  /** Flows whose trace may still come (or complete): asked again until this time (ms). */
  readonly pending = new Map<string, number>();

  private constructor(
    private readonly arm: TraceArm | null,
    /** Why no flow can be verified (no nft, legacy iptables, the table refused), or null. */
    readonly unavailable: string | null,
    /** Trace tables left by a journey that was killed, removed at start. */
    readonly removedLeftovers: readonly string[],
  ) {}

  static async start(o: FlowVerifierOptions): Promise<FlowVerifier> {
    const why = await traceUnavailable(o.netns);
    if (why !== null) return new FlowVerifier(null, why, []);
    const arm = new TraceArm({ ...(o.netns !== undefined ? { netns: o.netns } : {}), rate: o.rate });
    try {
      const { removedLeftovers } = await arm.start();
      return new FlowVerifier(arm, null, removedLeftovers);
    } catch (e) {
      await arm.stop();
      return new FlowVerifier(null, `the trace table could not be added: ${(e as Error).message}`, []);
    }
  }

  get rate(): number {
    return this.arm?.rate ?? 0;
  }

  get table(): string | null {
    return this.arm?.table ?? null;
  }

  /** The explainer with verification on every explanation it gives for a flow. */
  wrap<E extends VerifiableExplainer>(inner: E): E {
    const self = this;
    return new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'explain') return (flow: FlowInfo) => self.check(target, flow);
        if (prop === 'awaits') return (id: string) => self.pending.has(id);
        if (prop === 'reload')
          return async () => {
            await target.reload();
            await self.arm?.refreshRuleset();
          };
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  }

  private check(inner: VerifiableExplainer, flow: FlowInfo): Explanation | null {
    const sim = inner.explain(flow);
    if (sim === null) return null;
    let ex = this.verify(inner, flow, sim);
    // not there yet (or not complete): the correlator asks again each tick, for a while
    const waiting = ex.verification?.result === 'unverified' && /never came to the trace|incomplete/.test(ex.verification.reason ?? '');
    if (waiting) {
      const until = this.pending.get(flow.id) ?? Date.now() + PENDING_MS;
      if (Date.now() < until) {
        this.pending.set(flow.id, until);
        ex = { ...ex, verification: { result: 'unverified', reason: `pending: waiting for the kernel's trace (${ex.verification?.reason ?? ''})` } };
        return ex;
      }
    }
    this.pending.delete(flow.id);
    const r = ex.verification?.result;
    if (r !== undefined && !this.counted.has(flow.id)) {
      this.counts[r]++;
      this.counted.add(flow.id);
    }
    this.bound();
    return ex;
  }

  private verify(inner: VerifiableExplainer, flow: FlowInfo, sim: Explanation): Explanation {
    const arm = this.arm;
    if (arm === null) return unverified(sim, this.unavailable ?? 'the kernel trace is not running');
    if (arm.failed !== null) return unverified(sim, arm.failed);
    const ruleset = inner.ruleset ?? null;
    if (ruleset === null) return unverified(sim, 'the ruleset the simulator used is not known');
    const seen = this.byFlow.get(flow.id);
    if (seen !== undefined && seen.gen !== inner.generation)
      return unverified(sim, "the ruleset changed after the flow's first packet: its trace is of the ruleset before");
    const firstMs = firstPacketMs(flow);
    const trace = arm.trace();
    const p = findFirstPacket(trace.packets, flow);
    if (p === null) {
      const icmp = flow.orig.proto === 'icmp' || flow.orig.proto === 'icmpv6';
      if (!['tcp', 'udp', 'icmp', 'icmpv6'].includes(flow.orig.proto))
        return unverified(sim, `not traced: only TCP, UDP and ICMP echo connections are armed (this is ${flow.orig.proto})`);
      if (firstMs !== null && firstMs < arm.startedAt) return unverified(sim, 'the packet never came: the flow began before the trace was armed');
      if (arm.armedAround(firstMs ?? Date.now()) >= arm.rate)
        return unverified(sim, `rate limit: ${arm.rate} new flows a second are traced (--verify ${arm.rate})`);
      return unverified(
        sim,
        icmp
          ? 'the packet never came to the trace (only echo requests open a traced ICMP flow)'
          : flow.orig.proto === 'tcp'
            ? 'the packet never came to the trace (no SYN seen: the connection began before, or its SYN was not traced)'
            : 'the packet never came to the trace',
      );
    }
    if (seen === undefined) this.byFlow.set(flow.id, { gen: inner.generation });
    // the capture saw the packet only after a NAT (br_netfilter DNATs a routed frame before the
    // bridge's packet socket sees it): explain the packet as the kernel saw it come in
    const came = arrivedAs(p, flow);
    const asCame = came === null ? null : inner.explain({ ...flow, orig: came });
    const first =
      asCame === null || came === null
        ? sim
        : {
            ...asCame,
            notes: [
              ...(asCame.notes ?? []),
              `explained as the packet came in, ${came.src} -> ${came.dst}:${came.dport} (the kernel's trace): the capture saw it only after its destination NAT`,
            ],
          };
    return verifyWithTrace(first, flow, trace.packets, p, ruleset, arm.table);
  }

  /** Keeps the per-flow memory bounded (oldest first). */
  private bound(): void {
    const max = 200_000;
    const now = Date.now();
    for (const [id, until] of this.pending) if (until < now - 10_000) this.pending.delete(id); // flows that ended while waiting
    for (const m of [this.byFlow, this.counted]) {
      let n = m.size - max;
      for (const k of m.keys()) {
        if (n-- <= 0) break;
        m.delete(k);
      }
    }
  }

  /** Stops the trace and removes its table. Idempotent. */
  async stop(): Promise<void> {
    await this.arm?.stop();
  }
}

/** The original tuple the traced packet came in with, when the flow knows it only after a NAT; else null. */
function arrivedAs(p: TracePacket, flow: FlowInfo): FlowInfo['orig'] | null {
  const h = p.first;
  if (h === null || h.saddr === undefined || h.daddr === undefined || h.proto !== flow.orig.proto) return null;
  if (flow.orig.proto === 'icmp' || flow.orig.proto === 'icmpv6') return null; // an echo's id is not rewritten by DNAT
  if (h.sport === undefined || h.dport === undefined) return null;
  const o = flow.orig;
  if (canonicalIp(h.saddr) === canonicalIp(o.src) && canonicalIp(h.daddr) === canonicalIp(o.dst) && h.sport === o.sport && h.dport === o.dport)
    return null;
  return { ...o, src: h.saddr, dst: h.daddr, sport: h.sport, dport: h.dport };
}

/** When the flow's first packet was captured (ms since the epoch), if it was. */
function firstPacketMs(flow: FlowInfo): number | null {
  let us: number | null = null;
  for (const l of flow.legs) if (us === null || l.firstUs < us) us = l.firstUs;
  return us === null ? null : us / 1000;
}

/** What `--verify` does on this host, in one notice. */
export function verifierNotice(v: FlowVerifier): string {
  if (v.unavailable !== null) return `--verify: no flow can be verified: ${v.unavailable}`;
  const left = v.removedLeftovers.length > 0 ? `; removed ${v.removedLeftovers.join(', ')} left by a journey that was killed` : '';
  return `--verify: the kernel traces the first packet of up to ${v.rate} new flows a second (table inet ${v.table})${left}`;
}

/**
 * How long flow.start waits with --verify (at least): the kernel's trace of the first packet
 * comes through `nft monitor trace`, a process of its own, a little after the packet.
 */
export const VERIFY_START_DELAY_MS = 150;

/** How long a flow waits for its trace (to come, or to complete) before it is unverified for good. */
const PENDING_MS = 3_000;
