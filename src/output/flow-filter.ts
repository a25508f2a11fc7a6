/**
 * The one flow filter of journey: `journey watch`'s display options, `journey serve`'s subscribe
 * message and `/events?…` query, and the web page's form all build a FlowFilter and ask
 * `eventMatches`. Every given criterion must hold (AND); a criterion with several values holds
 * when any of them does (OR):
 *   container / network  a Docker name of any endpoint of the flow, either side of NAT
 *   port       a TCP/UDP/SCTP port of the original or reply tuple or of a leg (so a published port
 *              and the container's port both match); ICMP flows have no port
 *   protocol   the original tuple's protocol
 *   verdict    the explanation's verdict; "drop" also holds for a flow with eBPF drops
 *   natOnly    a DNAT or SNAT
 *   addr       an address of the original or reply tuple or of a leg
 *   host       the host that produced the event (fleet view: `serve --from nats://…`); every event
 *              type, stream-level ones too; events without a host (the server's own) always pass
 *   types      only these event types
 * Drops are matched on their own tuple (protocol, port, addr), "drop" verdicts, and through the flow
 * they belong to for container/network/natOnly. Stream-level events (ruleset.changed,
 * capture.stats, notice, lost, verify.*) always pass unless `types` leaves them out.
 */
import { JourneyError } from '../model/errors.js';
import type { FlowInfo, JourneyEvent } from '../model/events.js';
import type { Verdict } from '../model/explanation.js';
import type { Tuple } from '../model/tuple.js';

export const EVENT_TYPES = ['flow.start', 'flow.update', 'flow.end', 'drop', 'ruleset.changed', 'capture.stats', 'lost', 'notice'] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export const FILTER_PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'other'] as const;
export type FilterProtocol = (typeof FILTER_PROTOCOLS)[number];
export const FILTER_VERDICTS = ['accept', 'drop', 'reject', 'indeterminate'] as const satisfies readonly Verdict[];

/** One value or several (OR). The WebSocket protocol takes either; watch's repeatable options give lists. */
export type OneOrMore<T> = T | readonly T[];

export interface FlowFilter {
  readonly container?: OneOrMore<string>;
  readonly network?: OneOrMore<string>;
  readonly port?: OneOrMore<number>;
  readonly protocol?: OneOrMore<FilterProtocol>;
  readonly verdict?: OneOrMore<Verdict>;
  readonly natOnly?: boolean;
  readonly addr?: OneOrMore<string>;
  /** Only events of these hosts (fleet view). */
  readonly host?: OneOrMore<string>;
  /** Only these event types (default: all). */
  readonly types?: readonly EventType[];
}

/** The criteria a user spells as words (CLI options, URL query), in the order help texts list them. */
export const FILTER_KEYS = ['container', 'network', 'port', 'protocol', 'verdict', 'natOnly', 'addr', 'host', 'types'] as const;
export type FilterKey = (typeof FILTER_KEYS)[number];

function list<T>(v: OneOrMore<T> | undefined): readonly T[] | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? (v as readonly T[]) : [v as T];
}

const PORTED = new Set(['tcp', 'udp', 'sctp']);

function tupleHasPort(t: Tuple | null | undefined, ports: readonly number[]): boolean {
  return t != null && PORTED.has(t.proto) && ports.some((p) => t.sport === p || t.dport === p);
}

function tupleHasAddr(t: Tuple | null | undefined, addrs: readonly string[]): boolean {
  return t != null && addrs.some((a) => t.src === a || t.dst === a);
}

/** What a drop's filtering needs to know of its flow (kept per flow by the server, small). */
export type FlowIdentity = Pick<FlowInfo, 'names' | 'nat'>;

/** container/network/natOnly of a filter against what is known of a flow. */
export function identityMatches(f: FlowFilter, flow: FlowIdentity): boolean {
  if (f.natOnly === true && flow.nat.dnat === null && flow.nat.snat === null) return false;
  const containers = list(f.container);
  if (containers?.length && !flow.names.some((n) => n.container !== undefined && containers.includes(n.container))) return false;
  const networks = list(f.network);
  if (networks?.length && !flow.names.some((n) => n.network !== undefined && networks.includes(n.network))) return false;
  return true;
}

/** Whether the flow-level criteria hold for a flow. */
export function flowMatches(f: FlowFilter, flow: FlowInfo): boolean {
  const protocols = list(f.protocol);
  if (protocols?.length && !protocols.includes(flow.orig.proto as FilterProtocol)) return false;
  if (!identityMatches(f, flow)) return false;
  const ports = list(f.port);
  if (ports?.length && !tupleHasPort(flow.orig, ports) && !tupleHasPort(flow.reply, ports) && !flow.legs.some((l) => tupleHasPort(l.tuple, ports))) {
    return false;
  }
  const addrs = list(f.addr);
  if (addrs?.length && !tupleHasAddr(flow.orig, addrs) && !tupleHasAddr(flow.reply, addrs) && !flow.legs.some((l) => tupleHasAddr(l.tuple, addrs))) {
    return false;
  }
  const verdicts = list(f.verdict);
  if (verdicts?.length) {
    const v = flow.explanation?.verdict;
    if (!(v !== undefined && verdicts.includes(v)) && !(verdicts.includes('drop') && flow.drops.length > 0)) return false;
  }
  return true;
}

/**
 * Whether `ev` passes `f`. `flowOf` resolves a drop's flowId to what is known of its flow (or
 * undefined), so that drops can be filtered by container/network/NAT.
 */
export function eventMatches(f: FlowFilter, ev: JourneyEvent, flowOf: (id: string) => FlowIdentity | undefined = () => undefined): boolean {
  if (f.types !== undefined && !f.types.includes(ev.type)) return false;
  const hosts = list(f.host);
  if (hosts?.length && ev.host !== undefined && !hosts.includes(ev.host)) return false;
  switch (ev.type) {
    case 'flow.start':
    case 'flow.update':
    case 'flow.end':
      return flowMatches(f, ev.flow);
    case 'drop': {
      const verdicts = list(f.verdict);
      if (verdicts?.length && !verdicts.includes('drop')) return false;
      const t = ev.drop.tuple;
      const protocols = list(f.protocol);
      if (protocols?.length && (t == null || !protocols.includes(t.proto as FilterProtocol))) return false;
      const ports = list(f.port);
      if (ports?.length && !tupleHasPort(t, ports)) return false;
      const addrs = list(f.addr);
      if (addrs?.length && !tupleHasAddr(t, addrs)) return false;
      if (f.container !== undefined || f.network !== undefined || f.natOnly === true) {
        const flow = ev.flowId === null ? undefined : flowOf(ev.flowId);
        return flow !== undefined && identityMatches(f, flow);
      }
      return true;
    }
    default:
      return true;
  }
}

/** A verdict as the user writes it: the filter's word or the terminal's (ACCEPTED, DROPPED, REJECTED). */
export function parseVerdictWord(word: string): Verdict {
  const w = word.trim().toLowerCase();
  const v = ({ accepted: 'accept', dropped: 'drop', rejected: 'reject' } as Record<string, Verdict>)[w] ?? w;
  if (!(FILTER_VERDICTS as readonly string[]).includes(v)) {
    throw new JourneyError('E_USAGE', `verdict: "${word}" is none of ${FILTER_VERDICTS.join(', ')} (or ACCEPTED, DROPPED, REJECTED)`);
  }
  return v as Verdict;
}

function parsePort(word: string): number {
  const n = Number(word);
  if (word.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) throw new JourneyError('E_USAGE', `port: not a port: ${word}`);
  return n;
}

function parseProtocol(word: string): FilterProtocol {
  const p = word.trim().toLowerCase();
  if (!(FILTER_PROTOCOLS as readonly string[]).includes(p))
    throw new JourneyError('E_USAGE', `protocol: "${word}" is none of ${FILTER_PROTOCOLS.join(', ')}`);
  return p as FilterProtocol;
}

function parseType(word: string): EventType {
  if (!(EVENT_TYPES as readonly string[]).includes(word)) throw new JourneyError('E_USAGE', `types: "${word}" is none of ${EVENT_TYPES.join(', ')}`);
  return word as EventType;
}

function parseBool(word: string): boolean {
  const w = word.trim().toLowerCase();
  if (w === '' || w === '1' || w === 'true' || w === 'yes') return true;
  if (w === '0' || w === 'false' || w === 'no') return false;
  throw new JourneyError('E_USAGE', `natOnly: "${word}" is not true or false`);
}

/**
 * A filter from words, as users write them on the command line or in a URL query: each key with
 * one or more values, a value may hold several separated by commas. Unknown keys and values are
 * an E_USAGE error naming them (never a filter that silently matches nothing).
 */
export function filterFromWords(words: Readonly<Record<string, readonly string[] | undefined>>): FlowFilter {
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(words)) {
    if (raw === undefined || raw.length === 0) continue;
    const k = key === 'proto' ? 'protocol' : key === 'nat' ? 'natOnly' : key === 'type' ? 'types' : key;
    if (!(FILTER_KEYS as readonly string[]).includes(k)) {
      throw new JourneyError('E_USAGE', `unknown filter "${key}" (filters: ${FILTER_KEYS.join(', ')})`);
    }
    const values = raw.flatMap((v) => v.split(',')).map((v) => v.trim());
    const key2 = k as FilterKey;
    switch (key2) {
      case 'natOnly':
        out[key2] = values.every(parseBool);
        break;
      case 'port':
        out[key2] = values.map(parsePort);
        break;
      case 'protocol':
        out[key2] = values.map(parseProtocol);
        break;
      case 'verdict':
        out[key2] = values.map(parseVerdictWord);
        break;
      case 'types':
        out[key2] = [...new Set(values.map(parseType))];
        break;
      default:
        out[key2] = values.filter((v) => v !== '');
    }
  }
  return out as FlowFilter;
}

/**
 * A filter from a URL query (`/events?container=web&types=flow.start,flow.end`; `/events?subscribe`
 * for every event), or null when the query asks for no subscription.
 */
export function filterFromQuery(params: URLSearchParams): FlowFilter | null {
  const words: Record<string, string[]> = {};
  let asked = false;
  for (const [k, v] of params) {
    if (k === 'token') continue; // the browser log-in's token is not a filter
    asked = true;
    if (k === 'subscribe') continue;
    const list = words[k] ?? [];
    list.push(v);
    words[k] = list;
  }
  return asked ? filterFromWords(words) : null;
}

const oneOrMore = <S extends object>(item: S) =>
  ({ anyOf: [item, { type: 'array', minItems: 1, maxItems: 32, uniqueItems: true, items: item }] }) as const;
const NAME = { type: 'string', minLength: 1, maxLength: 256 } as const;

/** JSON Schema (2020-12) of a FlowFilter on the wire; docs/event-schema.json $defs.SubscriptionFilter is the same (tested). */
export const FLOW_FILTER_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    container: oneOrMore(NAME),
    network: oneOrMore(NAME),
    port: oneOrMore({ type: 'integer', minimum: 0, maximum: 65535 } as const),
    protocol: oneOrMore({ enum: [...FILTER_PROTOCOLS] } as const),
    verdict: oneOrMore({ enum: [...FILTER_VERDICTS] } as const),
    natOnly: { type: 'boolean' },
    addr: oneOrMore({ type: 'string', minLength: 2, maxLength: 45, pattern: '^[0-9A-Fa-f:.]+$' } as const),
    host: oneOrMore(NAME),
    types: { type: 'array', maxItems: EVENT_TYPES.length, uniqueItems: true, items: { enum: [...EVENT_TYPES] } },
  },
} as const;

function sameNat(a: FlowIdentity['nat'], b: FlowIdentity['nat']): boolean {
  return (a.dnat === null) === (b.dnat === null) && (a.snat === null) === (b.snat === null);
}

/** Whether what drop filtering needs (containers, networks, NAT or not) is unchanged. */
export function sameIdentity(a: FlowIdentity, b: FlowIdentity): boolean {
  if (a.names === b.names) return sameNat(a.nat, b.nat);
  if (a.names.length !== b.names.length || !sameNat(a.nat, b.nat)) return false;
  for (let i = 0; i < a.names.length; i++) {
    const x = a.names[i]!;
    const y = b.names[i]!;
    if (x.container !== y.container || x.network !== y.network) return false;
  }
  return true;
}
