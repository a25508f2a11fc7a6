/**
 * A flow while it lives in the correlator (one conntrack entry, or a packet tuple without one), its
 * legs, and the FlowInfo view of it that events carry.
 */
import { natOf } from '../conntrack/nat.js';
import type { ConntrackEntry, NatMapping } from '../model/conntrack.js';
import type { DropInfo, EndpointName, FlowInfo, FlowLeg, ProxiedBy } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import type { Tuple } from '../model/tuple.js';
import { LegStore, NO_LEG } from './leg-store.js';
import { legTuple } from './legs.js';
import { wireLegs } from './wire-legs.js';

export interface FlowState {
  id: string;
  entry: ConntrackEntry | null;
  orig: Tuple;
  reply: Tuple | null;
  /** Where its legs are kept, and its first leg (NO_LEG: none yet); leg-store.ts. */
  legStore: LegStore;
  firstLeg: number;
  names: EndpointName[] | null;
  tcpState: string | undefined;
  createdMs: number;
  lastActivityMs: number;
  started: boolean;
  /** Something a reader should see changed since the last event. */
  changed: boolean;
  /** Only counters changed since the last event. */
  countersChanged: boolean;
  lastEmitMs: number;
  explanation: Explanation | null;
  explainedGen: number;
  /** The interface of the earliest original leg when it was explained (the packet asked about comes in there). */
  explainedFrom: string | undefined;
  proxiedBy: ProxiedBy | undefined;
  tcpFlagsSeen: number;
  drops: DropInfo[];
  /** It left the table (flow.end): a conntrack slot that still points at it is stale. */
  gone: boolean;
}

/**
 * A new flow shares this empty list: drops are added by making a new array (drop-stash.ts), never
 * by pushing, so each live flow keeps an array exactly as long as it is.
 */
const NO_DROPS = Object.freeze([]) as unknown as DropInfo[];

/** Where the legs of flows made without a store of their own are kept (a FlowTable has its own). */
const SHARED_LEGS = new LegStore();

/** A flow just seen: from its conntrack entry, or made from a packet (entry null). */
export function newFlowState(
  id: string,
  entry: ConntrackEntry | null,
  orig: Tuple,
  reply: Tuple | null,
  tcpState: string | undefined,
  atMs: number,
  legStore: LegStore = SHARED_LEGS,
): FlowState {
  return {
    id,
    entry,
    orig,
    reply,
    legStore,
    firstLeg: NO_LEG,
    names: null,
    tcpState,
    createdMs: atMs,
    lastActivityMs: atMs,
    started: false,
    changed: true,
    countersChanged: false,
    lastEmitMs: 0,
    explanation: null,
    explainedGen: -1,
    explainedFrom: undefined,
    proxiedBy: undefined,
    tcpFlagsSeen: 0,
    drops: NO_DROPS,
    gone: false,
  };
}

const EMPTY_NAT: NatMapping = { dnat: null, snat: null };

export type HookTuples = (orig: Tuple) => readonly { hook: string; priority: number; tuple: Tuple; ctStatus: readonly string[] }[];

/** The flow's NAT, from its conntrack entry. */
export function flowNat(f: FlowState): NatMapping {
  return f.entry ? natOf(f.entry.orig, f.entry.reply) : EMPTY_NAT;
}

/** The FlowInfo of a flow as events carry it (a copy: later changes do not reach it). */
export function flowInfo(f: FlowState, hookTuples?: HookTuples): FlowInfo {
  const captured = legsOf(f);
  // bridge legs as they were on the wire (br_netfilter rewrites before the bridge's packet socket)
  const legs = wireLegs(captured, f.orig, f.reply, f.explanation);
  const info: { -readonly [K in keyof FlowInfo]: FlowInfo[K] } = {
    id: f.id,
    orig: f.orig,
    reply: f.reply,
    nat: flowNat(f),
    legs,
    names: f.names ?? [],
    ctStatus: f.entry?.status ?? [],
    explanation: f.explanation,
    drops: [...f.drops],
  };
  const tcpState = f.tcpState ?? (f.entry === null && f.orig.proto === 'tcp' ? synthTcpState(f.tcpFlagsSeen) : undefined);
  if (tcpState !== undefined) info.tcpState = tcpState;
  let a: FlowLeg | undefined;
  let b: FlowLeg | undefined;
  for (const l of captured) {
    if (l.direction !== 'orig') continue;
    if (a === undefined || l.firstUs < a.firstUs) {
      b = a;
      a = l;
    } else if (b === undefined || l.firstUs < b.firstUs) b = l;
  }
  if (a && b) info.legDelayUs = b.firstUs - a.firstUs;
  if (f.proxiedBy) info.proxiedBy = f.proxiedBy;
  if (hookTuples) {
    const ht = hookTuples(f.orig);
    if (ht.length > 0) info.hookTuples = ht.map((h) => ({ hook: h.hook, priority: h.priority, tuple: h.tuple, ctStatus: [...h.ctStatus] }));
  }
  return info;
}

/** The flow's legs as events show them, in the order they were seen. */
export function legsOf(f: FlowState): FlowLeg[] {
  return f.legStore.list(f.firstLeg).map((l) => f.legStore.view(l, legTuple(f, l)));
}

/** The interface of the flow's earliest original leg (where its first packet came in). */
export function firstOrigIface(f: FlowState): string | undefined {
  const s = f.legStore;
  let first = NO_LEG;
  for (let l = f.firstLeg; l !== NO_LEG; l = s.next[l] as number) {
    if (s.direction(l) === 'orig' && (first === NO_LEG || (s.firstUs[l] as number) < (s.firstUs[first] as number))) first = l;
  }
  return first === NO_LEG ? undefined : s.iface(first);
}

/** A TCP flow without conntrack: the state its flags suggest. */
export function synthTcpState(flags: number): string {
  if (flags & 4) return 'RST';
  if (flags & 1) return 'FIN';
  if (flags & 2 && !(flags & 16)) return 'SYN_SENT';
  return 'UNTRACKED';
}

/** A conntrack entry's new state: the flow changed when its TCP state or status did. */
export function applyEntry(f: FlowState, e: ConntrackEntry): void {
  const prevState = f.tcpState;
  const prevStatus = f.entry?.status.join(',');
  f.entry = e;
  f.reply = e.reply;
  f.tcpState = e.tcpState;
  if (prevState !== e.tcpState || prevStatus !== e.status.join(',')) f.changed = true;
}
