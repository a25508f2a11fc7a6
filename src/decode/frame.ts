/**
 * Frame decoder: link layer (Ethernet, 802.1Q/802.1ad, Linux cooked SLL/SLL2, raw IP, BSD
 * loopback), ARP, IPv4 (options, fragments), IPv6 (extension headers, fragments), TCP, UDP,
 * SCTP ports, ICMP and ICMPv6 with the packet embedded in errors. Reads straight from the frame
 * bytes into a reused PacketView: no allocation, never throws; what it cannot read is reported
 * through `view.skipReason` and counted in the optional SkipCounters.
 */
import type { FrameBatch } from '../model/observation.js';
import {
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_ARP,
  ETH_P_IPV4,
  ETH_P_IPV6,
  ETH_P_QINQ,
  LINKTYPE_ETHERNET,
  LINKTYPE_IPV4,
  LINKTYPE_IPV6,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_NULL,
  LINKTYPE_RAW,
  type L3View,
  type PacketView,
  type SkipCounters,
  type SkipReason,
} from './view.js';

const MAX_VLAN_TAGS = 4;
const MAX_EXT_HEADERS = 16;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_SCTP = 132;
export const IPPROTO_UDPLITE = 136;

function u16(d: Uint8Array, o: number): number {
  return ((d[o] as number) << 8) | (d[o + 1] as number);
}
function u32(d: Uint8Array, o: number): number {
  return (((d[o] as number) << 24) | ((d[o + 1] as number) << 16) | ((d[o + 2] as number) << 8) | (d[o + 3] as number)) >>> 0;
}

function skip(view: PacketView, reason: SkipReason, skips: SkipCounters | undefined): void {
  view.skipReason = reason;
  if (skips !== undefined) skips.add(reason);
}

/** Decodes frame `i` of a batch into `view`. True when the view holds an IP packet or an ARP message. */
export function decodeFrame(batch: FrameBatch, i: number, view: PacketView, skips?: SkipCounters): boolean {
  if (i < 0 || i >= batch.count) {
    view.reset();
    return false;
  }
  const ok = decodeBytes(batch.data, batch.offsets[i] ?? 0, batch.lengths[i] ?? 0, batch.linkType, view, skips);
  view.wireLen = batch.wireLengths[i] ?? view.capLen;
  view.timeUs = batch.timesUs[i] ?? 0;
  const folds = batch.folds;
  if (folds === undefined) view.firstUs = view.timeUs;
  else {
    view.packets = folds.packets[i] ?? 1;
    view.firstUs = folds.firstUs[i] ?? view.timeUs;
    view.runAux = folds.aux[i] ?? 0;
  }
  return ok;
}

/**
 * Decodes the frame `data[offset .. offset+capLen)` of link type `linkType` into `view`.
 * True when the view holds an IP packet (possibly with a truncated transport header: see
 * `view.l4State` and `view.skipReason`) or an ARP message.
 */
export function decodeBytes(data: Uint8Array, offset: number, capLen: number, linkType: number, view: PacketView, skips?: SkipCounters): boolean {
  view.reset();
  view.data = data;
  view.linkType = linkType;
  view.frameOffset = offset;
  if (capLen < 0 || offset < 0 || offset + capLen > data.length) capLen = Math.max(0, Math.min(capLen, data.length - offset));
  view.capLen = capLen;
  view.wireLen = capLen;
  const end = offset + capLen;
  let o = offset;
  let etherType: number;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      if (capLen < 14) return fail(view, 'truncated-link', skips);
      view.dstMacOffset = o;
      view.srcMacOffset = o + 6;
      etherType = u16(data, o + 12);
      o += 14;
      break;
    case LINKTYPE_LINUX_SLL:
      if (capLen < 16) return fail(view, 'truncated-link', skips);
      view.sllPacketType = u16(data, o);
      if (u16(data, o + 4) === 6) view.srcMacOffset = o + 6;
      etherType = u16(data, o + 14);
      o += 16;
      break;
    case LINKTYPE_LINUX_SLL2:
      if (capLen < 20) return fail(view, 'truncated-link', skips);
      etherType = u16(data, o);
      view.sllIfIndex = u32(data, o + 4);
      view.sllPacketType = data[o + 10] as number;
      if (data[o + 11] === 6) view.srcMacOffset = o + 12;
      o += 20;
      break;
    case LINKTYPE_RAW: {
      if (capLen < 1) return fail(view, 'truncated-ip', skips);
      const v = (data[o] as number) >> 4;
      etherType = v === 6 ? ETH_P_IPV6 : v === 4 ? ETH_P_IPV4 : 0;
      if (etherType === 0) return fail(view, 'bad-ip-version', skips);
      break;
    }
    // these link types say the version themselves; a packet that says otherwise is invalid (below)
    case LINKTYPE_IPV4:
      etherType = ETH_P_IPV4;
      break;
    case LINKTYPE_IPV6:
      etherType = ETH_P_IPV6;
      break;
    case LINKTYPE_NULL: {
      if (capLen < 4) return fail(view, 'truncated-link', skips);
      // host byte order of the capturing machine: accept both
      const a = u32(data, o);
      const fam = a > 0xffff ? (a >>> 24) | ((a >>> 8) & 0xff00) : a;
      etherType = fam === 2 ? ETH_P_IPV4 : fam === 24 || fam === 28 || fam === 30 || fam === 10 ? ETH_P_IPV6 : 0;
      o += 4;
      if (etherType === 0) return fail(view, 'non-ip', skips);
      break;
    }
    default:
      return fail(view, 'unsupported-linktype', skips);
  }
  // 802.1Q / 802.1ad / QinQ tags (SLL may carry them too)
  while (etherType === ETH_P_8021Q || etherType === ETH_P_8021AD || etherType === ETH_P_QINQ) {
    if (view.vlanCount >= MAX_VLAN_TAGS) return fail(view, 'too-many-vlan-tags', skips);
    if (end - o < 4) return fail(view, 'truncated-link', skips);
    if (view.vlanCount === 0) view.vlan = u16(data, o) & 0x0fff;
    view.vlanCount++;
    etherType = u16(data, o + 2);
    o += 4;
  }
  view.etherType = etherType;
  if (etherType === ETH_P_IPV4 || etherType === ETH_P_IPV6) {
    // an IP version that contradicts the ethertype (or link type) is invalid, as for tcpdump
    if (o < end && (data[o] as number) >> 4 !== (etherType === ETH_P_IPV4 ? 4 : 6)) return fail(view, 'bad-ip-version', skips);
    return decodeIp(data, o, end, view, view, skips, false);
  }
  if (etherType === ETH_P_ARP) return decodeArp(data, o, end, view, skips);
  return fail(view, 'non-ip', skips);
}

function fail(view: PacketView, reason: SkipReason, skips: SkipCounters | undefined): false {
  skip(view, reason, skips);
  return false;
}

function decodeArp(d: Uint8Array, o: number, end: number, view: PacketView, skips: SkipCounters | undefined): boolean {
  if (end - o < 8) return fail(view, 'truncated-arp', skips);
  const hlen = d[o + 4] as number;
  const plen = d[o + 5] as number;
  const op = u16(d, o + 6);
  if (plen !== 4 || u16(d, o + 2) !== ETH_P_IPV4) return fail(view, 'non-ip', skips);
  if (end - o < 8 + 2 * hlen + 8) return fail(view, 'truncated-arp', skips);
  view.arpOp = op === 0 ? 0xffff : op;
  view.arpShaOffset = o + 8;
  view.arpSpa = u32(d, o + 8 + hlen);
  view.arpTpa = u32(d, o + 8 + hlen + 4 + hlen);
  return true;
}

/**
 * Decodes an IP header at `o` (version from the first nibble) and its transport header into `v`.
 * `outer` receives skip reasons. `inner` is true for the packet embedded in an ICMP error (no
 * further recursion, lengths taken from what is present).
 */
function decodeIp(d: Uint8Array, o: number, end: number, v: L3View, outer: PacketView, skips: SkipCounters | undefined, inner: boolean): boolean {
  if (inner) v.reset();
  v.data = d;
  v.l3Offset = o;
  const avail = end - o;
  if (avail < 1) return fail(outer, inner ? 'truncated-icmp-inner' : 'truncated-ip', skips);
  const version = (d[o] as number) >> 4;
  let ipEnd: number;
  let next: number;
  let l4: number;
  if (version === 4) {
    if (avail < 20) return fail(outer, inner ? 'truncated-icmp-inner' : 'truncated-ip', skips);
    const ihl = ((d[o] as number) & 0x0f) * 4;
    if (ihl < 20) return fail(outer, 'bad-ip-header', skips);
    if (avail < ihl) return fail(outer, inner ? 'truncated-icmp-inner' : 'truncated-ip', skips);
    let total = u16(d, o + 2);
    // total length 0: a TSO/GSO super-packet captured before segmentation; use what we have
    if (total === 0) total = avail;
    if (total < ihl) return fail(outer, 'bad-ip-header', skips);
    v.family = 4;
    v.tos = d[o + 1] as number;
    v.ipTotalLen = total;
    v.l3HeaderLen = ihl;
    v.ipOptionsLen = ihl - 20;
    v.ipId = u16(d, o + 4);
    const ff = u16(d, o + 6);
    v.dontFragment = (ff & 0x4000) !== 0;
    v.moreFragments = (ff & 0x2000) !== 0;
    v.fragOffset = (ff & 0x1fff) * 8;
    v.ttl = d[o + 8] as number;
    next = d[o + 9] as number;
    v.src4 = u32(d, o + 12);
    v.dst4 = u32(d, o + 16);
    ipEnd = Math.min(end, o + total);
    l4 = o + ihl;
  } else if (version === 6) {
    if (avail < 40) return fail(outer, inner ? 'truncated-icmp-inner' : 'truncated-ip', skips);
    v.family = 6;
    v.tos = (u16(d, o) >> 4) & 0xff;
    v.flowLabel = u32(d, o) & 0xfffff;
    const plen = u16(d, o + 4);
    v.ipTotalLen = 40 + plen;
    v.ttl = d[o + 7] as number;
    v.src6Offset = o + 8;
    v.dst6Offset = o + 24;
    // payload length 0 is a jumbogram or a GSO packet: use what we have
    ipEnd = plen === 0 ? end : Math.min(end, o + 40 + plen);
    next = d[o + 6] as number;
    l4 = o + 40;
    // extension headers
    for (let n = 0; ; n++) {
      if (next === 0 || next === 43 || next === 60 || next === 135 || next === 139 || next === 140) {
        if (n >= MAX_EXT_HEADERS || ipEnd - l4 < 8) return extFail(v, outer, next, l4, o, skips);
        const len = ((d[l4 + 1] as number) + 1) * 8;
        next = d[l4] as number;
        l4 += len;
        v.extHeaders++;
      } else if (next === 44) {
        if (n >= MAX_EXT_HEADERS || ipEnd - l4 < 8) return extFail(v, outer, next, l4, o, skips);
        const fo = u16(d, l4 + 2);
        v.fragOffset = fo & 0xfff8;
        v.moreFragments = (fo & 1) !== 0;
        v.ipId = u32(d, l4 + 4);
        next = d[l4] as number;
        l4 += 8;
        v.extHeaders++;
      } else if (next === 51) {
        if (n >= MAX_EXT_HEADERS || ipEnd - l4 < 8) return extFail(v, outer, next, l4, o, skips);
        const len = ((d[l4 + 1] as number) + 2) * 4;
        next = d[l4] as number;
        l4 += len;
        v.extHeaders++;
      } else {
        break;
      }
    }
    if (l4 > ipEnd) return extFail(v, outer, next, ipEnd, o, skips);
    v.l3HeaderLen = l4 - o;
  } else {
    return fail(outer, 'bad-ip-version', skips);
  }
  v.protoNum = next;
  v.l4Offset = l4;
  if (v.fragOffset !== 0) {
    // a later fragment: no transport header here
    v.payloadLen = Math.max(0, o + v.ipTotalLen - l4);
    return true;
  }
  decodeL4(d, l4, ipEnd, o + v.ipTotalLen, v, outer, skips, inner);
  return true;
}

function extFail(v: L3View, outer: PacketView, next: number, at: number, o: number, skips: SkipCounters | undefined): true {
  // the IP header itself is fine: keep it, without a transport header
  v.protoNum = next;
  v.l4Offset = at;
  v.l3HeaderLen = at - o;
  skip(outer, 'truncated-ext-header', skips);
  return true;
}

function decodeL4(
  d: Uint8Array,
  o: number,
  end: number,
  claimedEnd: number,
  v: L3View,
  outer: PacketView,
  skips: SkipCounters | undefined,
  inner: boolean,
): void {
  const avail = end - o;
  const proto = v.protoNum;
  const truncated: SkipReason = inner ? 'truncated-icmp-inner' : 'truncated-l4';
  if (proto === IPPROTO_TCP) {
    if (avail < 4) return void (inner ? undefined : skip(outer, truncated, skips));
    v.sport = u16(d, o);
    v.dport = u16(d, o + 2);
    v.l4State = 1;
    if (avail >= 8) v.tcpSeq = u32(d, o + 4);
    if (avail < 20) {
      if (!inner) skip(outer, truncated, skips);
      return;
    }
    v.tcpAck = u32(d, o + 8);
    v.tcpHeaderLen = ((d[o + 12] as number) >> 4) * 4;
    v.tcpFlags = d[o + 13] as number;
    v.tcpWindow = u16(d, o + 14);
    v.l4State = 2;
    v.payloadLen = Math.max(0, claimedEnd - o - Math.max(20, v.tcpHeaderLen));
  } else if (proto === IPPROTO_UDP || proto === IPPROTO_UDPLITE) {
    if (avail < 4) return void (inner ? undefined : skip(outer, truncated, skips));
    v.sport = u16(d, o);
    v.dport = u16(d, o + 2);
    v.l4State = 1;
    if (avail < 8) {
      if (!inner) skip(outer, truncated, skips);
      return;
    }
    v.udpLen = u16(d, o + 4);
    v.l4State = 2;
    v.payloadLen = Math.max(0, claimedEnd - o - 8);
  } else if (proto === IPPROTO_SCTP) {
    if (avail < 4) return void (inner ? undefined : skip(outer, truncated, skips));
    v.sport = u16(d, o);
    v.dport = u16(d, o + 2);
    v.l4State = avail >= 12 ? 2 : 1;
    v.payloadLen = Math.max(0, claimedEnd - o - 12);
  } else if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6) {
    if (avail < 2) return void (inner ? undefined : skip(outer, truncated, skips));
    const type = d[o] as number;
    v.icmpType = type;
    v.icmpCode = d[o + 1] as number;
    v.l4State = 1;
    if (avail < 8) {
      if (!inner) skip(outer, truncated, skips);
      return;
    }
    v.l4State = 2;
    v.payloadLen = Math.max(0, claimedEnd - o - 8);
    const v4 = proto === IPPROTO_ICMP;
    const echo = v4 ? type === 0 || type === 8 || (type >= 13 && type <= 18) : type === 128 || type === 129;
    if (echo) {
      v.icmpId = u16(d, o + 4);
      v.icmpSeq = u16(d, o + 6);
      v.sport = v.dport = v.icmpId;
      return;
    }
    const error = v4 ? type === 3 || type === 4 || type === 5 || type === 11 || type === 12 : type >= 1 && type <= 4;
    if (error && !inner) {
      const pv = outer;
      // the embedded packet ends where the capture (or the ICMP message) ends
      if (decodeIp(d, o + 8, end, pv.inner, pv, skips, true)) pv.hasInner = true;
    }
  }
}
