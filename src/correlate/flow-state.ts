/**
 * A flow while it lives in the correlator (one conntrack entry, or a packet tuple without one), its
 * legs, and the FlowInfo view of it that events carry.
 */
import { natOf } from '../conntrack/nat.js';
import type { ConntrackEntry, NatMapping } from '../model/conntrack.js';
import type { DropInfo, EndpointName, FlowInfo, FlowLeg, ProxiedBy } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import type { Tuple } from '../model/tuple.js';
import { legTuple } from './legs.js';
import { wireLegs } from './wire-legs.js';

/** One interface, direction and tuple of a flow: where its packets were seen. */
export interface LegState {
  iface: string;
  direction: 'orig' | 'reply';
  /** null when it is the entry's tuple of form `form` (legs.ts legTuple makes it). */
  tuple: Tuple | null;
  form: number;
  firstUs: number;
  lastUs: number;
  packets: number;
  bytes: number;
  /** Fingerprint of the leg's latest packet (-1: none; legs.ts isCopyOf): a true copy of it is not counted again. */
  lastFp: number;
  /**
   * The tuple as int32s, so a packet read from the decode view finds its leg without strings: the
   * IPv4 addresses and the ports as (sport << 16 | dport). An IPv6 leg has 0, 0 and its ports: a
   * flow's legs are of its entry's family, and only IPv4 flows are looked up by number.
   */
  src4: number;
  dst4: number;
  ports4: number;
}

export interface FlowState {
  id: string;
  entry: ConntrackEntry | null;
  orig: Tuple;
  reply: Tuple | null;
  legs: LegState[];
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
 * A new flow shares these empty lists: legs and drops are added by making a new array (legs.ts,
 * drop-stash.ts), never by pushing, so each live flow keeps arrays exactly as long as they are.
 */
const NO_LEGS = Object.freeze([]) as unknown as LegState[];
const NO_DROPS = Object.freeze([]) as unknown as DropInfo[];

/** A flow just seen: from its conntrack entry, or made from a packet (entry null). */
export function newFlowState(
  id: string,
  entry: ConntrackEntry | null,
  orig: Tuple,
  reply: Tuple | null,
  tcpState: string | undefined,
  atMs: number,
): FlowState {
  return {
    id,
    entry,
    orig,
    reply,
    legs: NO_LEGS,
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

/** The FlowInfo of a flow as events carry it (a copy: later changes do not reach it). */
export function flowInfo(f: FlowState, hookTuples?: HookTuples): FlowInfo {
  const captured: FlowLeg[] = f.legs.map((l) => ({
    iface: l.iface,
    direction: l.direction,
    tuple: legTuple(f, l),
    firstUs: l.firstUs,
    lastUs: l.lastUs,
    packets: l.packets,
    bytes: l.bytes,
  }));
  // bridge legs as they were on the wire (br_netfilter rewrites before the bridge's packet socket)
  const legs = wireLegs(captured, f.orig, f.reply, f.explanation);
  const info: { -readonly [K in keyof FlowInfo]: FlowInfo[K] } = {
    id: f.id,
    orig: f.orig,
    reply: f.reply,
    nat: f.entry ? natOf(f.entry.orig, f.entry.reply) : EMPTY_NAT,
    legs,
    names: f.names ?? [],
    ctStatus: f.entry?.status ?? [],
    explanation: f.explanation,
    drops: [...f.drops],
  };
  const tcpState = f.tcpState ?? (f.entry === null && f.orig.proto === 'tcp' ? synthTcpState(f.tcpFlagsSeen) : undefined);
  if (tcpState !== undefined) info.tcpState = tcpState;
  let a: LegState | undefined;
  let b: LegState | undefined;
  for (const l of f.legs) {
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

/** The interface of the flow's earliest original leg (where its first packet came in). */
export function firstOrigIface(f: FlowState): string | undefined {
  let first: LegState | undefined;
  for (const l of f.legs) if (l.direction === 'orig' && (first === undefined || l.firstUs < first.firstUs)) first = l;
  return first?.iface;
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
