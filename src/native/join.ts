/**
 * Joins the kernel's events with the rest of journey:
 *  - joinDropRule(drop, explain): a NETFILTER_DROP gets the rule that dropped it, from the
 *    explainer (src/explain) asked about the packet as it entered the host — its conntrack original
 *    tuple when it has one (the pre-NAT packet), else the dropped packet itself;
 *  - HookProof: a bounded index of hook events by conntrack original tuple, giving a flow its
 *    FlowInfo.hookTuples (the in-kernel proof of its DNAT/SNAT: the first packet of each direction
 *    at each hook point).
 * The explainer is passed in (a function), so this module does not load the ruleset itself.
 */
import type { PacketSpec } from '../explain/explain.js';
import type { Explanation } from '../model/explanation.js';
import type { FlowInfo } from '../model/events.js';
import { tupleKey, type Tuple } from '../model/tuple.js';
import type { HookEvent } from './hook-points.js';
import type { KernelDrop } from './kernel-events.js';

/** The explainer's question for a dropped packet, or null when it cannot be asked. */
export function dropPacketSpec(drop: KernelDrop): PacketSpec | null {
  const t = drop.tuple;
  if (t === null) return null;
  // the packet as it came in: conntrack's original tuple when the drop is in the original
  // direction (ctinfo < 3), so DNAT is replayed by the simulator as the kernel did it
  const fromCt = drop.ct !== null && drop.ct.ctinfo < 3 && drop.ct.orig !== null;
  const tuple: Tuple = fromCt && drop.ct?.orig ? drop.ct.orig : t;
  if (drop.iface === null) return { tuple, local: true };
  if (fromCt && drop.ct?.status.includes('CONFIRMED')) {
    return {
      tuple,
      iif: drop.iface,
      ctState: 'established',
      conntrack: { orig: drop.ct.orig ?? tuple, reply: drop.ct.reply ?? tuple, status: [...drop.ct.status] },
    };
  }
  return { tuple, iif: drop.iface };
}

/** The deciding drop/reject step of an explanation. */
function droppingStep(ex: Explanation): Explanation['steps'][number] | null {
  for (let i = ex.steps.length - 1; i >= 0; i--) {
    const s = ex.steps[i];
    if (s && (s.verdict === 'drop' || s.verdict === 'reject' || s.verdict === 'policy-drop')) return s;
  }
  return null;
}

/**
 * A NETFILTER_DROP with the rule that dropped it (table, chain, raw rule text; null rule text for a
 * chain policy). Other drops, or a drop the explainer cannot place, come back unchanged.
 */
export function joinDropRule(drop: KernelDrop, explain: (spec: PacketSpec) => Explanation | null): KernelDrop {
  if (drop.reason !== 'NETFILTER_DROP' || drop.rule !== null) return drop;
  const spec = dropPacketSpec(drop);
  if (spec === null) return drop;
  let ex: Explanation | null;
  try {
    ex = explain(spec);
  } catch {
    return drop;
  }
  const step = ex ? droppingStep(ex) : null;
  if (step === null) return drop;
  return { ...drop, rule: { table: step.table, chain: step.chain, rule: step.rule } };
}

/** One entry of FlowInfo.hookTuples: exactly the event schema's fields (it allows no others). */
export type HookTuple = NonNullable<FlowInfo['hookTuples']>[number];
/** With the detail the schema leaves out: direction, time, interface. */
export type HookTupleDetail = HookTuple & { readonly direction: 'orig' | 'reply'; readonly timeUs: number; readonly iface: string | null };

/**
 * Hook events indexed by their connection (conntrack original tuple key, tupleKey()): for each hook
 * point and direction, the first packet seen. Bounded: the least recently added connections go first.
 */
export class HookProof {
  private readonly flows = new Map<string, Map<string, HookTupleDetail>>();
  evicted = 0;

  constructor(readonly capacity = 50_000) {}

  add(events: readonly HookEvent[]): void {
    for (const h of events) {
      const orig = h.ct?.orig;
      if (!orig) continue;
      const key = tupleKey(orig);
      let points = this.flows.get(key);
      if (points === undefined) {
        if (this.flows.size >= this.capacity) {
          const oldest = this.flows.keys().next().value;
          if (oldest !== undefined) this.flows.delete(oldest);
          this.evicted++;
        }
        points = new Map();
        this.flows.set(key, points);
      }
      const direction = (h.ct?.ctinfo ?? 0) >= 3 ? 'reply' : 'orig';
      const p = `${h.family}/${h.hook}/${h.priority}/${direction}`;
      if (!points.has(p)) {
        points.set(p, { hook: h.hook, priority: h.priority, tuple: h.tuple, ctStatus: h.ctStatus, direction, timeUs: h.timeUs, iface: h.iface });
      }
    }
  }

  /** FlowInfo.hookTuples for the connection whose original tuple is `orig`, in time order. */
  get(orig: Tuple): HookTuple[] {
    return this.detail(orig).map((d) => ({ hook: d.hook, priority: d.priority, tuple: d.tuple, ctStatus: d.ctStatus }));
  }

  /** The same with direction, time and interface of each first packet. */
  detail(orig: Tuple): HookTupleDetail[] {
    const points = this.flows.get(tupleKey(orig));
    return points ? [...points.values()].sort((a, b) => a.timeUs - b.timeUs) : [];
  }

  delete(orig: Tuple): void {
    this.flows.delete(tupleKey(orig));
  }

  get size(): number {
    return this.flows.size;
  }
}
