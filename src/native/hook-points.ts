/**
 * Where journey's netfilter programs are linked (the named hook plans), and what one of them saw
 * (HookEvent): the points of each plan, which side of NAT a point is on, and the tuple conntrack
 * recorded for a packet before any NAT, read from the entry a program found on it.
 */
import type { CtStatusBit } from '../model/conntrack.js';
import type { Tuple } from '../model/tuple.js';
import type { CtView } from './decode.js';
import type { HookName } from './layout.js';

export interface HookPoint {
  readonly family: 4 | 6;
  readonly hook: HookName;
  readonly priority: number;
}

/**
 * A packet seen by a netfilter program: one of FlowInfo.hookTuples, plus detail. `from: 'conntrack'`
 * marks the tuple conntrack recorded for the packet at its own priority (CONNTRACK_PRIORITY, before
 * any NAT), read from the entry the program found on the packet: what a before-NAT point would see.
 */
export interface HookEvent {
  readonly kind: 'hook';
  readonly timeUs: number;
  readonly hook: HookName;
  readonly family: 4 | 6;
  readonly priority: number;
  /** Where it sits relative to the NAT of this hook: 'before-nat' / 'after-nat' / null (no NAT here). */
  readonly phase: 'before-nat' | 'after-nat' | null;
  readonly tuple: Tuple;
  readonly ctStatus: readonly CtStatusBit[];
  readonly ct: CtView | null;
  readonly iface: string | null;
  readonly ifindex: number;
  readonly netns: number;
  readonly len: number;
  readonly from?: 'conntrack';
}

/** NAT priorities: nat prerouting/output at -100 (DNAT), postrouting/input at 100 (SNAT). */
export const NAT_PRIORITY: Readonly<Record<HookName, number | null>> = {
  prerouting: -100,
  output: -100,
  postrouting: 100,
  input: 100,
  forward: null,
};

/** Where conntrack takes a packet's tuple at prerouting and output (NF_IP_PRI_CONNTRACK), before NAT. */
export const CONNTRACK_PRIORITY = -200;

/**
 * The named hook plans. 'after-nat' (the default): a point right after each NAT priority, so a
 * forwarded packet passes two links (prerouting -99, postrouting 101) and a local one two
 * (prerouting -99 and input 101, or output -99 and postrouting 101); the tuple before DNAT is the
 * one conntrack recorded on the packet (CONNTRACK_PRIORITY, reported from the same event), and the
 * tuple before SNAT is the one after DNAT, no NAT being in between. 'nat': both sides of each NAT
 * priority and after the filter at forward: five links a forwarded packet, each side seen by a
 * program (a link costs ~0.016 of the forwarding rate: README "Measured").
 */
export const HOOK_PLANS = ['after-nat', 'nat'] as const;
export type HookPlanName = (typeof HOOK_PLANS)[number];

export function isHookPlanName(s: string): s is HookPlanName {
  return (HOOK_PLANS as readonly string[]).includes(s);
}

/** Each plan's points, in linking order (the same for each family). */
const PLAN_POINTS: Readonly<Record<HookPlanName, readonly { readonly hook: HookName; readonly priority: number }[]>> = {
  // one point after each NAT priority
  'after-nat': [
    { hook: 'prerouting', priority: -99 },
    { hook: 'output', priority: -99 },
    { hook: 'input', priority: 101 },
    { hook: 'postrouting', priority: 101 },
  ],
  // both sides of each NAT priority, after the filter at forward and input
  nat: [
    { hook: 'prerouting', priority: -101 },
    { hook: 'prerouting', priority: -99 },
    { hook: 'output', priority: -101 },
    { hook: 'output', priority: -99 },
    { hook: 'forward', priority: 1 },
    { hook: 'input', priority: 101 },
    { hook: 'postrouting', priority: 99 },
    { hook: 'postrouting', priority: 101 },
  ],
};

/** The points of a named plan, family by family. */
export function hookPlan(name: HookPlanName, families: readonly (4 | 6)[] = [4, 6]): HookPoint[] {
  return families.flatMap((family) => PLAN_POINTS[name].map((p) => ({ family, ...p })));
}

export function phaseOf(hook: HookName, priority: number): HookEvent['phase'] {
  const nat = NAT_PRIORITY[hook];
  if (nat === null) return null;
  return priority < nat ? 'before-nat' : 'after-nat';
}

/**
 * The tuple conntrack recorded for a packet at prerouting or output (CONNTRACK_PRIORITY, before any
 * NAT), from the entry a later program found on it: the entry's tuple for the packet's direction,
 * which conntrack matched the packet against. Null where a before-NAT point is linked (it reports
 * that side itself), for a packet without an entry, and for a related one (an ICMP error carries
 * another connection's tuple).
 */
export function conntrackTuple(ev: HookEvent, beforeNatLinked: ReadonlySet<string>): HookEvent | null {
  if (ev.hook !== 'prerouting' && ev.hook !== 'output') return null;
  if (ev.priority <= CONNTRACK_PRIORITY || beforeNatLinked.has(`${ev.family}/${ev.hook}`)) return null;
  const ct = ev.ct;
  if (ct === null || ct.ctinfo === 1 || ct.ctinfo === 4) return null;
  const tuple = ct.ctinfo >= 3 ? ct.reply : ct.orig;
  if (tuple === null) return null;
  return { ...ev, priority: CONNTRACK_PRIORITY, phase: 'before-nat', tuple, from: 'conntrack' };
}
