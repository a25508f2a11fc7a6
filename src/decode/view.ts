/**
 * Reusable decode views. A decoder writes the headers of one frame into a view allocated once
 * and reused for every packet: the hot path allocates nothing. Addresses stay in the frame
 * (IPv4 as a uint32, IPv6 as an offset into `data`) until an Observation is made.
 */

/** Link types (libpcap LINKTYPE_* values) the decoder understands. */
export const LINKTYPE_NULL = 0;
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

export const ETH_P_IPV4 = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const ETH_P_QINQ = 0x9100;
export const ETH_P_IPV6 = 0x86dd;

/** Reasons a frame (or part of it) was skipped; the keys of CaptureStats.skipped. */
export type SkipReason =
  | 'truncated-link'
  | 'unsupported-linktype'
  | 'non-ip' // an ethertype we do not decode (LLDP, STP, ...): not an error, only counted
  | 'truncated-arp'
  | 'truncated-ip'
  | 'bad-ip-version'
  | 'bad-ip-header'
  | 'truncated-ext-header'
  | 'truncated-l4'
  | 'truncated-icmp-inner'
  | 'too-many-vlan-tags';

/** 0 = no L4 header decoded, 1 = only the ports/ICMP type (first bytes), 2 = the full header. */
export type L4State = 0 | 1 | 2;

/** IP and transport headers of one packet (the outer packet, or the one embedded in an ICMP error). */
export class L3View {
  /** 0 when not IP, else 4 or 6. */
  family: 0 | 4 | 6 = 0;
  /** The frame the offsets refer to. */
  data: Uint8Array = EMPTY;
  l3Offset = 0;
  /** IPv4 header length or IPv6 fixed header + extension headers. */
  l3HeaderLen = 0;
  /** Total length claimed by the IP header (IPv4 total length; IPv6 40 + payload length). */
  ipTotalLen = 0;
  ttl = 0;
  /** IPv4 identification; for IPv6 the fragment header's identification or 0. */
  ipId = 0;
  /** IPv4 DSCP/ECN byte or IPv6 traffic class. */
  tos = 0;
  /** IPv6 flow label. */
  flowLabel = 0;
  /** Fragment offset in bytes, and the more-fragments flag; DF for IPv4. */
  fragOffset = 0;
  moreFragments = false;
  dontFragment = false;
  /** IPv4 options present (header longer than 20 bytes). */
  ipOptionsLen = 0;
  /** Final (upper layer) protocol number after IPv6 extension headers. */
  protoNum = 0;
  /** IPv4 addresses as unsigned 32-bit numbers. */
  src4 = 0;
  dst4 = 0;
  /** IPv6 addresses: offsets of the 16 bytes in `data`. */
  src6Offset = 0;
  dst6Offset = 0;
  /** Number of IPv6 extension headers walked. */
  extHeaders = 0;

  l4State: L4State = 0;
  l4Offset = 0;
  sport = 0;
  dport = 0;
  tcpFlags = 0;
  tcpSeq = 0;
  tcpAck = 0;
  tcpWindow = 0;
  tcpHeaderLen = 0;
  udpLen = 0;
  icmpType = 0;
  icmpCode = 0;
  /** Echo request/reply identifier and sequence (ICMP and ICMPv6 echo). */
  icmpId = 0;
  icmpSeq = 0;
  /** Bytes after the L4 header according to the IP lengths (not what was captured). */
  payloadLen = 0;

  reset(): void {
    this.family = 0;
    this.data = EMPTY;
    this.l3Offset = this.l3HeaderLen = this.ipTotalLen = this.ttl = this.ipId = this.tos = this.flowLabel = 0;
    this.fragOffset = 0;
    this.moreFragments = this.dontFragment = false;
    this.ipOptionsLen = this.protoNum = this.src4 = this.dst4 = this.src6Offset = this.dst6Offset = this.extHeaders = 0;
    this.l4State = 0;
    this.l4Offset = this.sport = this.dport = this.tcpFlags = this.tcpSeq = this.tcpAck = this.tcpWindow = 0;
    this.tcpHeaderLen = this.udpLen = this.icmpType = this.icmpCode = this.icmpId = this.icmpSeq = this.payloadLen = 0;
  }

  /** True when this is a non-first fragment (no transport header in it). */
  get isLaterFragment(): boolean {
    return this.fragOffset !== 0;
  }
}

const EMPTY = new Uint8Array(0);

/** One decoded frame: link layer, ARP, the IP/L4 headers, and for ICMP errors the embedded packet. */
export class PacketView extends L3View {
  linkType = 0;
  /** Captured length of the frame and its length on the wire. */
  capLen = 0;
  wireLen = 0;
  timeUs = 0;
  frameOffset = 0;
  /**
   * A folded entry (FrameBatch `folds`): the packets it stands for, the first's time, and its aux
   * (TCP flags seen | FOLD_VOUCHED). 1, timeUs and 0 for a frame of its own.
   */
  packets = 1;
  firstUs = 0;
  runAux = 0;
  /** Ethernet: offsets of destination and source MAC in `data` (-1 when absent). */
  dstMacOffset = -1;
  srcMacOffset = -1;
  /** Linux cooked capture: packet type (0 host, 1 broadcast, 2 multicast, 3 other host, 4 outgoing) or -1. */
  sllPacketType = -1;
  /** SLL2: interface index, or 0. */
  sllIfIndex = 0;
  /** Ethertype of the payload after VLAN tags. */
  etherType = 0;
  /** Outer VLAN id (-1 when untagged) and the number of tags. */
  vlan = -1;
  vlanCount = 0;

  /** ARP (when etherType is ARP): operation, sender and target IPv4 (uint32). */
  arpOp = 0;
  arpSpa = 0;
  arpTpa = 0;
  arpShaOffset = -1;

  /** Set when an ICMP/ICMPv6 error embeds a packet whose header we decoded. */
  hasInner = false;
  readonly inner: L3View = new L3View();

  /** Why the last decode returned false (or what part was cut), else undefined. */
  skipReason: SkipReason | undefined = undefined;

  override reset(): void {
    super.reset();
    this.linkType = this.capLen = this.wireLen = this.timeUs = this.frameOffset = 0;
    this.packets = 1;
    this.firstUs = this.runAux = 0;
    this.dstMacOffset = this.srcMacOffset = this.sllPacketType = -1;
    this.sllIfIndex = this.etherType = 0;
    this.vlan = -1;
    this.vlanCount = 0;
    this.arpOp = this.arpSpa = this.arpTpa = 0;
    this.arpShaOffset = -1;
    this.hasInner = false;
    this.skipReason = undefined;
  }

  get isArp(): boolean {
    return this.etherType === ETH_P_ARP && this.arpOp !== 0;
  }
}

/** Counters of skipped frames by reason (feeds CaptureStats.skipped). */
export class SkipCounters {
  readonly counts: Record<string, number> = Object.create(null) as Record<string, number>;
  add(reason: SkipReason | string, n = 1): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + n;
  }
  snapshot(): Record<string, number> {
    return { ...this.counts };
  }
  get total(): number {
    let t = 0;
    for (const k in this.counts) t += this.counts[k] ?? 0;
    return t;
  }
}
