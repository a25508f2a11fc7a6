/**
 * The TypeScript mirror of native-bindings/include/journey_events.h: sizes and offsets of the
 * records the addon delivers, and the readers that turn them into model types. The addon exports
 * its own offsets (`layout()`); test/unit/native-layout.test.ts checks that they equal these.
 * Readers never throw: a record they cannot read yields null (the caller counts it).
 */
import { CT_STATUS_BITS, type CtStatusBit } from '../model/conntrack.js';
import { ip6WordsToString } from '../model/address.js';
import type { L4Proto, Tuple } from '../model/tuple.js';

export const TUPLE = {
  size: 40,
  fields: { saddr: 0, daddr: 16, sport: 32, dport: 34, family: 36, proto: 37, icmp_type: 38, icmp_code: 39 },
} as const;

export const EVENT = {
  size: 192,
  fields: {
    ts_ns: 0,
    location: 8,
    kind: 16,
    netns: 20,
    ifindex: 24,
    reason: 28,
    ct_status: 32,
    ct_mark: 36,
    priority: 40,
    pkt_len: 44,
    ct_zone: 48,
    hook: 50,
    pf: 51,
    ctinfo: 52,
    has_ct: 53,
    slot: 54,
    ifname: 56,
    pkt: 72,
    ct_orig: 112,
    ct_reply: 152,
  },
} as const;

export const CT_EVENT = {
  size: 120,
  fields: {
    time_ns: 0,
    type: 8,
    id: 12,
    status: 16,
    mark: 20,
    timeout: 24,
    zone: 28,
    tcp_state: 30,
    packets: 32,
    orig: 40,
    reply: 80,
  },
} as const;

export const FILTER = {
  size: 260,
  fields: { netns: 0, drops: 4, addr: 8, has_addr: 24, proto: 25, port: 26, min_reason: 28, prio: 32, hook_once: 192, ignore: 196 },
} as const;

export const NF_PROGRAMS = 4;
export const MAX_SLOTS = 32;

export const EV_DROP = 1;
export const EV_HOOK = 2;
export const CT_NEW = 1;
export const CT_UPDATE = 2;
export const CT_DESTROY = 3;
export const CT_DUMP = 4;
export const TCP_STATE_NONE = 0xff;

/** NF_INET_* hook numbers. */
export const HOOK_NAMES = ['prerouting', 'input', 'forward', 'output', 'postrouting'] as const;
export type HookName = (typeof HOOK_NAMES)[number];
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;

const statusCache = new Map<number, readonly CtStatusBit[]>();

/** IPS_* names of a status word. Shared, frozen arrays (a flow's status takes few values). */
export function ctStatusNames(bits: number): readonly CtStatusBit[] {
  const key = bits & 0xffff;
  const hit = statusCache.get(key);
  if (hit !== undefined) return hit;
  const out: CtStatusBit[] = [];
  for (let i = 0; i < CT_STATUS_BITS.length; i++) {
    const name = CT_STATUS_BITS[i];
    if (name !== undefined && (key & (1 << i)) !== 0) out.push(name);
  }
  const frozen = Object.freeze(out);
  statusCache.set(key, frozen);
  return frozen;
}

/** enum tcp_conntrack, as conntrack-tools prints it. */
const TCP_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];
export function tcpStateName(n: number): string | undefined {
  return n === TCP_STATE_NONE ? undefined : (TCP_STATES[n] ?? `STATE_${n}`);
}

const PROTO_NAMES: Readonly<Record<number, L4Proto>> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6', 132: 'sctp' };

/** ICMP request type -> the type conntrack expects in the reply direction. */
const ICMP_REPLY_TYPE: Readonly<Record<number, number>> = { 8: 0, 13: 14, 15: 16, 17: 18, 128: 129 };
export function icmpReplyType(type: number): number | undefined {
  return ICMP_REPLY_TYPE[type];
}

function ip4(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/** inet_ntop-style IPv6 text (src/model/address.ts). */
function ip6(buf: Buffer, off: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(off + i * 2));
  return ip6WordsToString(g);
}

/** Reads a struct jn_tuple at `off`; null when its family is unknown. */
export function readTuple(buf: Buffer, off: number): Tuple | null {
  if (off < 0 || off + TUPLE.size > buf.length) return null;
  const f = TUPLE.fields;
  const family = buf.readUInt8(off + f.family);
  if (family !== 4 && family !== 6) return null;
  const protoNum = buf.readUInt8(off + f.proto);
  const proto = PROTO_NAMES[protoNum] ?? 'other';
  const src = family === 4 ? ip4(buf, off + f.saddr) : ip6(buf, off + f.saddr);
  const dst = family === 4 ? ip4(buf, off + f.daddr) : ip6(buf, off + f.daddr);
  const sport = buf.readUInt16LE(off + f.sport);
  const dport = buf.readUInt16LE(off + f.dport);
  // object literals, never spreads: this runs for every event (a spread costs microseconds)
  if (proto === 'icmp' || proto === 'icmpv6') {
    return {
      family,
      proto,
      protoNum,
      src,
      dst,
      sport,
      dport,
      icmpType: buf.readUInt8(off + f.icmp_type),
      icmpCode: buf.readUInt8(off + f.icmp_code),
    };
  }
  return { family, proto, protoNum, src, dst, sport, dport };
}

/** Writes an address ("10.0.0.1", "fd00::1") as the 4 or 16 network-order bytes of a filter. */
export function addrBytes(addr: string): Buffer | null {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(addr)) {
    const parts = addr.split('.').map(Number);
    if (parts.some((p) => p > 255)) return null;
    return Buffer.from(parts);
  }
  if (!addr.includes(':')) return null;
  // an IPv4 tail ("::ffff:10.0.0.1") is two groups
  const v4tail = /^(.*:)(\d{1,3}(?:\.\d{1,3}){3})$/.exec(addr);
  if (v4tail) {
    const v4 = addrBytes(v4tail[2] ?? '');
    if (v4 === null) return null;
    return addrBytes(`${v4tail[1] ?? ''}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`);
  }
  const [head, tail] = addr.split('::', 2) as [string, string | undefined];
  if (addr.split('::').length > 2) return null;
  const parse = (s: string | undefined): number[] | null => {
    if (s === undefined || s === '') return [];
    const out: number[] = [];
    for (const p of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
      out.push(parseInt(p, 16));
    }
    return out;
  };
  const h = parse(head);
  const t = parse(tail);
  if (h === null || t === null) return null;
  const gap = 8 - h.length - t.length;
  if (tail !== undefined && gap < 1) return null;
  const groups = tail === undefined ? h : [...h, ...new Array<number>(gap).fill(0), ...t];
  if (groups.length !== 8) return null;
  const b = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) b.writeUInt16BE(g, i * 2);
  return b;
}
