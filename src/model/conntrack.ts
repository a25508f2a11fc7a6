import type { Tuple } from './tuple.js';

/** Conntrack status bits as the kernel names them (IPS_*), without the prefix. */
/** IPS_* status bits in the kernel's bit order (include/uapi/linux/netfilter/nf_conntrack_common.h). */
export const CT_STATUS_BITS = [
  'EXPECTED',
  'SEEN_REPLY',
  'ASSURED',
  'CONFIRMED',
  'SRC_NAT',
  'DST_NAT',
  'SEQ_ADJUST',
  'SRC_NAT_DONE',
  'DST_NAT_DONE',
  'DYING',
  'FIXED_TIMEOUT',
  'TEMPLATE',
  'UNTRACKED',
  'HELPER',
  'OFFLOAD',
  'HW_OFFLOAD',
] as const;
export type CtStatusBit = (typeof CT_STATUS_BITS)[number];

/** Whether a word is one of the status bits. */
export function isCtStatusBit(s: string): s is CtStatusBit {
  return (CT_STATUS_BITS as readonly string[]).includes(s);
}

export interface ConntrackEntry {
  /** Kernel conntrack id when known (netlink), else a key derived from the original tuple. */
  readonly id: string;
  readonly orig: Tuple;
  readonly reply: Tuple;
  readonly status: readonly CtStatusBit[];
  /** TCP state (ESTABLISHED, SYN_SENT, TIME_WAIT...) when proto is tcp. */
  readonly tcpState?: string;
  readonly mark: number;
  readonly zone: number;
  /** Seconds left before the entry expires. */
  readonly timeout: number;
  /** Which source produced it: netlink events, a /proc poll, or a replayed snapshot. */
  readonly source: 'netlink' | 'proc' | 'snapshot' | 'conntrack-tool';
}

export type ConntrackEventType = 'new' | 'update' | 'destroy';

export interface ConntrackEvent {
  readonly type: ConntrackEventType;
  /** Milliseconds since the epoch. */
  readonly time: number;
  readonly entry: ConntrackEntry;
}

/** What NAT did to a connection, derived from its two tuples (see conntrack/nat.ts). */
export interface NatMapping {
  /** Destination rewritten: original dst -> reply src. */
  readonly dnat: { readonly from: string; readonly to: string } | null;
  /** Source rewritten: original src -> reply dst. */
  readonly snat: { readonly from: string; readonly to: string } | null;
}

/**
 * Where conntrack entries come from: netlink events (native binding), a poll of
 * /proc/net/nf_conntrack, the `conntrack` tool, or a snapshot file for replays.
 * `start` delivers events in batches; a source that polls synthesises new/update/destroy by diffing.
 */
export interface ConntrackSource {
  readonly kind: ConntrackEntry['source'];
  /** What this source cannot see (e.g. "no SNAT/DNAT status bits from /proc"), for the user. */
  readonly limitations: readonly string[];
  dump(): Promise<ConntrackEntry[]>;
  start(onEvents: (events: readonly ConntrackEvent[]) => void, onError: (err: Error) => void): Promise<void>;
  /**
   * Delivers the events already queued, before it returns, when the source can (netlink): the live
   * source calls it before each packet batch, so the batch finds the entries made before its packets
   * were captured instead of holding them until the next read.
   */
  readQueued?(): void;
  stop(): Promise<void>;
}
