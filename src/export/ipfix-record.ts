/**
 * A journey flow as an IPFIX flow record: the templates (IPv4/IPv6, with or without NAT) and the
 * record of one flow's counters since its previous record. IANA elements where IANA has one
 * (pre-/post-NAT tuples RFC 8158, per-direction counters RFC 5103, forwardingStatus RFC 7270),
 * journey's enterprise-specific elements for the rest (docs/export.md).
 */
import type { FlowEvent, FlowInfo, FlowLeg } from '../model/events.js';
import { decidingStep, ruleRef } from '../output/terminal.js';
import { REVERSE_PEN, type DataRecord, type FieldSpec, type Template } from './ipfix-wire.js';

/**
 * RFC 5612's enterprise number for documentation: journey has no number of its own, so its
 * elements are under this one unless `?pen=` names the user's.
 */
export const DEFAULT_PEN = 32473;

/** journey's enterprise-specific elements (ids under the PEN), all strings. */
export const JOURNEY_ELEMENTS = [
  { name: 'ingressInterfaceName', id: 1 },
  { name: 'egressInterfaceName', id: 2 },
  { name: 'verdict', id: 3 },
  { name: 'decidingRule', id: 4 },
  { name: 'decidingRuleText', id: 5 },
  { name: 'sourceContainer', id: 6 },
  { name: 'destinationContainer', id: 7 },
  { name: 'flowId', id: 8 },
  { name: 'exporterHost', id: 9 },
] as const;
export type JourneyElementName = (typeof JOURNEY_ELEMENTS)[number]['name'];

export const TEMPLATE_KINDS = ['ip4', 'ip4-nat', 'ip6', 'ip6-nat'] as const;
export type TemplateKind = (typeof TEMPLATE_KINDS)[number];

const f = (name: string, id: number, kind: FieldSpec['kind'], pen?: number): FieldSpec =>
  pen !== undefined ? { name, id, kind, pen } : { name, id, kind };

/** The four templates (ids 256..259) for enterprise number `pen`. */
export function flowTemplates(pen = DEFAULT_PEN): Record<TemplateKind, Template> {
  const common = (v6: boolean, nat: boolean): FieldSpec[] => [
    f('flowStartMilliseconds', 152, 'u64'),
    f('flowEndMilliseconds', 153, 'u64'),
    f('protocolIdentifier', 4, 'u8'),
    v6 ? f('sourceAddress', 27, 'ip6') : f('sourceAddress', 8, 'ip4'),
    v6 ? f('destinationAddress', 28, 'ip6') : f('destinationAddress', 12, 'ip4'),
    f('sourceTransportPort', 7, 'u16'),
    f('destinationTransportPort', 11, 'u16'),
    v6 ? f('icmpTypeCode', 139, 'u16') : f('icmpTypeCode', 32, 'u16'),
    ...(nat
      ? [
          v6 ? f('postNATSourceAddress', 281, 'ip6') : f('postNATSourceAddress', 225, 'ip4'),
          v6 ? f('postNATDestinationAddress', 282, 'ip6') : f('postNATDestinationAddress', 226, 'ip4'),
          f('postNAPTSourceTransportPort', 227, 'u16'),
          f('postNAPTDestinationTransportPort', 228, 'u16'),
          f('natEvent', 230, 'u8'),
        ]
      : []),
    f('packetDeltaCount', 2, 'u64'),
    f('octetDeltaCount', 1, 'u64'),
    f('reversePacketDeltaCount', 2, 'u64', REVERSE_PEN),
    f('reverseOctetDeltaCount', 1, 'u64', REVERSE_PEN),
    f('flowEndReason', 136, 'u8'),
    f('forwardingStatus', 89, 'u8'),
    ...JOURNEY_ELEMENTS.map((e) => f(e.name, e.id, 'string', pen)),
  ];
  return {
    ip4: { id: 256, fields: common(false, false) },
    'ip4-nat': { id: 257, fields: common(false, true) },
    ip6: { id: 258, fields: common(true, false) },
    'ip6-nat': { id: 259, fields: common(true, true) },
  };
}

/** Packets and bytes one way, counted once: on the first interface of that direction (as watch prints). */
export interface DirectionCounters {
  readonly packets: number;
  readonly bytes: number;
}
export function directionCounters(flow: FlowInfo, dir: FlowLeg['direction']): DirectionCounters {
  let first: FlowLeg | undefined;
  for (const l of flow.legs) if (l.direction === dir && (first === undefined || l.firstUs < first.firstUs)) first = l;
  return { packets: first?.packets ?? 0, bytes: first?.bytes ?? 0 };
}

/** RFC 5102 flowEndReason. */
export const FLOW_END_REASON = { idle: 1, active: 2, end: 3, forced: 4, resources: 5 } as const;
function endReason(ev: FlowEvent | null): number {
  if (ev === null || ev.type !== 'flow.end') return FLOW_END_REASON.active;
  switch (ev.reason) {
    case 'idle':
      return FLOW_END_REASON.idle;
    case 'destroyed':
      return FLOW_END_REASON.end;
    case 'evicted':
      return FLOW_END_REASON.resources;
    default:
      return FLOW_END_REASON.forced; // shutdown, replay-end
  }
}

/** RFC 7270 forwardingStatus: 64 forwarded, 128 dropped (unknown reason), 0 unknown. */
function forwardingStatus(flow: FlowInfo): number {
  const v = flow.explanation?.verdict;
  if (v === 'accept') return 64;
  if (v === 'drop' || v === 'reject') return 128;
  return flow.drops.length > 0 ? 128 : 0;
}

/**
 * RFC 8158 natEvent: NAT44 session create (4) while the flow lives, delete (5) at its end; IPv6
 * has no NAT66 value there, so the generic NAT translation create (1) / delete (2) are used.
 */
function natEvent(family: 4 | 6, ended: boolean): number {
  if (family === 4) return ended ? 5 : 4;
  return ended ? 2 : 1;
}

export interface FlowRecord {
  readonly kind: TemplateKind;
  readonly record: DataRecord;
}

/**
 * The record of `flow` with counters since `previous` (null: since its start). `end` is the
 * flow.end event when the flow ended, null for an active-timeout record.
 */
export function flowRecord(
  flow: FlowInfo,
  end: FlowEvent | null,
  previous: { orig: DirectionCounters; reply: DirectionCounters } | null,
  host: string,
  nowMs: number,
): FlowRecord {
  const o = flow.orig;
  const post = flow.reply;
  const nat = post !== null && (flow.nat.dnat !== null || flow.nat.snat !== null);
  const kind: TemplateKind = o.family === 6 ? (nat ? 'ip6-nat' : 'ip6') : nat ? 'ip4-nat' : 'ip4';
  const icmp = o.proto === 'icmp' || o.proto === 'icmpv6';
  let firstUs = Number.POSITIVE_INFINITY;
  let lastUs = 0;
  for (const l of flow.legs) {
    firstUs = Math.min(firstUs, l.firstUs);
    lastUs = Math.max(lastUs, l.lastUs);
  }
  const startMs = Number.isFinite(firstUs) ? Math.floor(firstUs / 1000) : nowMs;
  const endMs = lastUs > 0 ? Math.floor(lastUs / 1000) : startMs;
  const origC = directionCounters(flow, 'orig');
  const replyC = directionCounters(flow, 'reply');
  const delta = (now: DirectionCounters, before: DirectionCounters | undefined) => ({
    packets: Math.max(0, now.packets - (before?.packets ?? 0)),
    bytes: Math.max(0, now.bytes - (before?.bytes ?? 0)),
  });
  const dOrig = delta(origC, previous?.orig);
  const dReply = delta(replyC, previous?.reply);
  const origLegs = flow.legs.filter((l) => l.direction === 'orig').sort((a, b) => a.firstUs - b.firstUs);
  const container = (addr: string): string => flow.names.find((n) => n.addr === addr)?.container ?? '';
  const step = flow.explanation ? decidingStep(flow.explanation.steps) : undefined;
  const record: Record<string, number | string> = {
    flowStartMilliseconds: startMs,
    flowEndMilliseconds: Math.max(startMs, endMs),
    protocolIdentifier: o.protoNum,
    sourceAddress: o.src,
    destinationAddress: o.dst,
    sourceTransportPort: icmp ? 0 : o.sport,
    destinationTransportPort: icmp ? 0 : o.dport,
    icmpTypeCode: icmp ? ((o.icmpType ?? 0) << 8) | (o.icmpCode ?? 0) : 0,
    packetDeltaCount: dOrig.packets,
    octetDeltaCount: dOrig.bytes,
    reversePacketDeltaCount: dReply.packets,
    reverseOctetDeltaCount: dReply.bytes,
    flowEndReason: endReason(end),
    forwardingStatus: forwardingStatus(flow),
    ingressInterfaceName: origLegs[0]?.iface ?? '',
    egressInterfaceName: origLegs.length > 1 ? (origLegs[origLegs.length - 1]?.iface ?? '') : '',
    verdict: flow.explanation?.verdict ?? '',
    decidingRule: step ? ruleRef(step) : '',
    decidingRuleText: step?.rule ?? '',
    sourceContainer: container(o.src),
    destinationContainer: container(post !== null ? post.src : o.dst),
    flowId: flow.id,
    exporterHost: host,
  };
  if (nat && post !== null) {
    // after NAT the packet goes from the reply's destination to the reply's source
    record['postNATSourceAddress'] = post.dst;
    record['postNATDestinationAddress'] = post.src;
    record['postNAPTSourceTransportPort'] = icmp ? 0 : post.dport;
    record['postNAPTDestinationTransportPort'] = icmp ? 0 : post.sport;
    record['natEvent'] = natEvent(o.family, end !== null);
  }
  return { kind, record };
}
