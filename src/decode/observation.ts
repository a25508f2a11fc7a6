/** Turns a decoded view into an Observation (allocates: call it only for packets you keep). */
import { FOLD_VOUCHED, type Observation } from '../model/observation.js';
import type { L4Proto, Tuple } from '../model/tuple.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE } from './frame.js';
import { ipv4ToString, ipv6ToString } from './format.js';
import type { L3View, PacketView } from './view.js';

export function protoName(n: number): L4Proto {
  switch (n) {
    case IPPROTO_TCP:
      return 'tcp';
    case IPPROTO_UDP:
    case IPPROTO_UDPLITE:
      return 'udp';
    case IPPROTO_ICMP:
      return 'icmp';
    case IPPROTO_ICMPV6:
      return 'icmpv6';
    case IPPROTO_SCTP:
      return 'sctp';
    default:
      return 'other';
  }
}

/** The tuple of an IP view (outer or embedded). Ports are 0 when the transport header is absent. */
export function tupleFromView(v: L3View): Tuple | undefined {
  if (v.family === 0) return undefined;
  const proto = protoName(v.protoNum);
  const src = v.family === 4 ? ipv4ToString(v.src4) : ipv6ToString(v.data, v.src6Offset);
  const dst = v.family === 4 ? ipv4ToString(v.dst4) : ipv6ToString(v.data, v.dst6Offset);
  const t: { -readonly [K in keyof Tuple]: Tuple[K] } = {
    family: v.family,
    proto,
    protoNum: v.protoNum,
    src,
    dst,
    sport: v.l4State > 0 ? v.sport : 0,
    dport: v.l4State > 0 ? v.dport : 0,
  };
  if ((proto === 'icmp' || proto === 'icmpv6') && v.l4State > 0) {
    t.icmpType = v.icmpType;
    t.icmpCode = v.icmpCode;
  }
  return t;
}

/**
 * What tells one packet from another on the wire without comparing payloads: the IPv4 header
 * checksum (covers id, TTL, lengths, addresses), id, TTL, total length, the L4 checksum (covers the
 * payload) and the TCP sequence, as an int32 (a small integer to V8: no allocation on the hot
 * path). Undefined for IPv6 without its transport header.
 */
export function fingerprint(v: L3View): number | undefined {
  // IPv6 has no header checksum: without the transport header nothing tells two packets apart
  if (v.family === 0 || (v.family === 6 && v.l4State !== 2)) return undefined;
  const d = v.data;
  let h = (Math.imul(v.ipId, 0x9e3779b1) ^ v.ipTotalLen ^ (v.ttl << 24) ^ v.flowLabel ^ v.fragOffset) | 0;
  if (v.family === 4) h = Math.imul(h ^ ((d[v.l3Offset + 10] as number) << 8) ^ (d[v.l3Offset + 11] as number), 0x85ebca6b);
  if (v.l4State !== 2) return h | 0;
  const l4 = v.l4Offset;
  const ck = v.protoNum === IPPROTO_TCP ? l4 + 16 : v.protoNum === IPPROTO_UDP ? l4 + 6 : l4 + 2;
  if (ck + 1 < d.length) h = Math.imul(h ^ ((d[ck] as number) << 16) ^ (d[ck + 1] as number), 0xc2b2ae35);
  h = Math.imul(h ^ v.tcpSeq, 0x27d4eb2f) ^ v.tcpAck;
  return h | 0;
}

/**
 * An Observation of the IP packet in `view` (undefined for ARP and anything that is not IP).
 * `timeUs` defaults to the view's (set by decodeFrame).
 */
export function observationFromView(view: PacketView, iface: string, timeUs: number = view.timeUs): Observation | undefined {
  const tuple = tupleFromView(view);
  if (tuple === undefined) return undefined;
  const o: { -readonly [K in keyof Observation]: Observation[K] } = {
    timeUs,
    iface,
    tuple,
    wireLen: view.wireLen,
    ipId: view.ipId,
    ttl: view.ttl,
  };
  if (view.protoNum === IPPROTO_TCP && view.l4State === 2) {
    o.tcpFlags = view.tcpFlags | (view.runAux & 0xff);
    o.tcpSeq = view.tcpSeq;
    o.tcpAck = view.tcpAck;
  }
  if (view.l4State === 2) o.payloadLen = view.payloadLen;
  if (view.vlan >= 0) o.vlan = view.vlan;
  if (view.fragOffset !== 0 || view.moreFragments) o.fragment = { offset: view.fragOffset, more: view.moreFragments };
  const fp = fingerprint(view);
  if (fp !== undefined) o.fingerprint = fp;
  if (view.sllPacketType >= 0) o.direction = view.sllPacketType === 4 ? 'out' : 'in';
  if (view.hasInner) {
    const inner = tupleFromView(view.inner);
    if (inner !== undefined) o.inner = inner;
  }
  if (view.packets !== 1 || view.runAux !== 0) o.run = { packets: view.packets, firstUs: view.firstUs, vouched: (view.runAux & FOLD_VOUCHED) !== 0 };
  return o;
}
