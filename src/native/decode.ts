/**
 * Turns the addon's fixed-size records into model objects: struct jn_ct_event -> ConntrackEvent /
 * ConntrackEntry, struct jn_event -> KernelRecord (a drop or a hook observation). Never throws:
 * a short or unreadable record yields null and the caller counts it.
 */
import type { ConntrackEntry, ConntrackEvent, ConntrackEventType, CtStatusBit } from '../model/conntrack.js';
import type { Tuple } from '../model/tuple.js';
import {
  CT_DESTROY,
  CT_DUMP,
  CT_EVENT,
  CT_NEW,
  CT_UPDATE,
  EVENT,
  EV_DROP,
  EV_HOOK,
  HOOK_NAMES,
  TUPLE,
  ctStatusNames,
  icmpReplyType,
  readTuple,
  tcpStateName,
  type HookName,
} from './layout.js';

const CT_TYPES: Readonly<Record<number, ConntrackEventType | 'dump'>> = {
  [CT_NEW]: 'new',
  [CT_UPDATE]: 'update',
  [CT_DESTROY]: 'destroy',
  [CT_DUMP]: 'dump',
};

/** One conntrack record: its event type ('dump' for the initial listing) and the entry. */
export function readCtRecord(buf: Buffer, off: number): { type: ConntrackEventType | 'dump'; timeMs: number; entry: ConntrackEntry } | null {
  if (off < 0 || off + CT_EVENT.size > buf.length) return null;
  const f = CT_EVENT.fields;
  const type = CT_TYPES[buf.readUInt32LE(off + f.type)];
  const orig = readTuple(buf, off + f.orig);
  let reply = readTuple(buf, off + f.reply);
  if (type === undefined || orig === null || reply === null) return null;
  if ((reply.proto === 'icmp' || reply.proto === 'icmpv6') && orig.icmpType !== undefined) {
    const rt = icmpReplyType(orig.icmpType);
    reply = rt !== undefined ? { ...reply, icmpType: rt, icmpCode: orig.icmpCode ?? 0 } : stripIcmp(reply);
  }
  const status = ctStatusNames(buf.readUInt32LE(off + f.status));
  const tcp = orig.proto === 'tcp' ? tcpStateName(buf.readUInt8(off + f.tcp_state)) : undefined;
  const base = {
    id: String(buf.readUInt32LE(off + f.id)),
    orig,
    reply,
    status,
    mark: buf.readUInt32LE(off + f.mark),
    zone: buf.readUInt16LE(off + f.zone),
    timeout: buf.readUInt32LE(off + f.timeout),
    source: 'netlink' as const,
  };
  const entry: ConntrackEntry = tcp !== undefined ? { ...base, tcpState: tcp } : base;
  const timeMs = Number(buf.readBigUInt64LE(off + f.time_ns) / 1_000_000n);
  return { type, timeMs, entry };
}

function stripIcmp(t: Tuple): Tuple {
  const { icmpType: _t, icmpCode: _c, ...rest } = t;
  return rest;
}

/** All conntrack records of a batch, as events ('dump' records become 'new'). */
export function readCtBatch(buf: Buffer, count: number): { events: ConntrackEvent[]; bad: number } {
  const events: ConntrackEvent[] = [];
  let bad = 0;
  const n = Math.min(count, Math.floor(buf.length / CT_EVENT.size));
  bad += count - n;
  for (let i = 0; i < n; i++) {
    const r = readCtRecord(buf, i * CT_EVENT.size);
    if (r === null) {
      bad++;
      continue;
    }
    events.push({ type: r.type === 'dump' ? 'new' : r.type, time: r.timeMs, entry: r.entry });
  }
  return { events, bad };
}

/** The conntrack entry a packet carried when the program saw it (skb->_nfct). */
export interface CtView {
  readonly status: readonly CtStatusBit[];
  readonly statusBits: number;
  readonly mark: number;
  readonly zone: number;
  /** enum ip_conntrack_info: 0 ESTABLISHED, 1 RELATED, 2 NEW, 3 ESTABLISHED_REPLY, 4 RELATED_REPLY. */
  readonly ctinfo: number;
  readonly orig: Tuple | null;
  readonly reply: Tuple | null;
}

export interface KernelRecordBase {
  /** Microseconds since the epoch. */
  readonly timeUs: number;
  readonly netns: number;
  readonly ifindex: number;
  readonly iface: string | null;
  readonly tuple: Tuple | null;
  readonly len: number;
  readonly ct: CtView | null;
}

export interface RawDrop extends KernelRecordBase {
  readonly kind: 'drop';
  readonly reasonCode: number;
  /** Kernel address that freed the skb. */
  readonly location: bigint;
}

export interface RawHook extends KernelRecordBase {
  readonly kind: 'hook';
  readonly hook: HookName;
  readonly hookNum: number;
  readonly pf: number;
  readonly priority: number;
  readonly program: number;
}

export type KernelRecord = RawDrop | RawHook;

/** Reads one struct jn_event. `clockOffsetNs` = CLOCK_REALTIME - CLOCK_MONOTONIC. Hot path: no spreads, no BigInt for the clock. */
export function readKernelRecord(buf: Buffer, off: number, clockOffsetNs: number): KernelRecord | null {
  if (off < 0 || off + EVENT.size > buf.length) return null;
  const f = EVENT.fields;
  const kind = buf.readUInt32LE(off + f.kind);
  if (kind !== EV_DROP && kind !== EV_HOOK) return null;
  const tsNs = buf.readUInt32LE(off + f.ts_ns) + buf.readUInt32LE(off + f.ts_ns + 4) * 4294967296;
  let end = off + f.ifname;
  while (end < off + f.ifname + 16 && buf[end] !== 0) end++;
  const iface = end === off + f.ifname ? null : buf.toString('latin1', off + f.ifname, end);
  const statusBits = buf.readUInt32LE(off + f.ct_status);
  const ct: CtView | null =
    buf.readUInt8(off + f.has_ct) === 1
      ? {
          status: ctStatusNames(statusBits),
          statusBits,
          mark: buf.readUInt32LE(off + f.ct_mark),
          zone: buf.readUInt16LE(off + f.ct_zone),
          ctinfo: buf.readUInt8(off + f.ctinfo),
          orig: readTuple(buf, off + f.ct_orig),
          reply: readTuple(buf, off + f.ct_reply),
        }
      : null;
  const timeUs = Math.round((tsNs + clockOffsetNs) / 1000);
  const netns = buf.readUInt32LE(off + f.netns);
  const ifindex = buf.readUInt32LE(off + f.ifindex);
  const tuple = readTuple(buf, off + f.pkt);
  const len = buf.readUInt32LE(off + f.pkt_len);
  if (kind === EV_DROP) {
    return {
      kind: 'drop',
      timeUs,
      netns,
      ifindex,
      iface,
      tuple,
      len,
      ct,
      reasonCode: buf.readUInt32LE(off + f.reason),
      location: buf.readBigUInt64LE(off + f.location),
    };
  }
  const hookNum = buf.readUInt8(off + f.hook);
  const hook = HOOK_NAMES[hookNum];
  if (hook === undefined) return null;
  return {
    kind: 'hook',
    timeUs,
    netns,
    ifindex,
    iface,
    tuple,
    len,
    ct,
    hook,
    hookNum,
    pf: buf.readUInt8(off + f.pf),
    priority: buf.readInt32LE(off + f.priority),
    program: buf.readUInt8(off + f.slot),
  };
}

export { TUPLE };
