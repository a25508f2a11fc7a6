/**
 * Server-side subscriptions of `journey serve`: what a WebSocket client may send, how it is
 * validated (ajv, against CLIENT_MESSAGE_SCHEMA, also published in docs/event-schema.json), and
 * which events a filter lets through.
 *
 * Filter semantics (all given criteria must hold — AND):
 * - flow.start/update/end: `container`/`network` match any Docker name of the flow's endpoints;
 *   `port` any TCP/UDP/SCTP port of its original or reply tuple or of a leg (so a published port
 *   and the container's port both match); `protocol` the original tuple's protocol; `verdict` the
 *   explanation's verdict ("drop" also matches a flow with eBPF drops); `natOnly` a DNAT or SNAT.
 * - drop: protocol/port on the dropped packet's tuple; verdict only "drop"; container/network/natOnly
 *   through the flow the drop belongs to (known to the server when it saw that flow).
 * - ruleset.changed, capture.stats, notice, lost: stream-level events, always delivered (unless
 *   `types` excludes them).
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { FlowInfo, JourneyEvent } from '../model/events.js';
import type { Tuple } from '../model/tuple.js';

export const EVENT_TYPES = ['flow.start', 'flow.update', 'flow.end', 'drop', 'ruleset.changed', 'capture.stats', 'lost', 'notice'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface SubscriptionFilter {
  readonly container?: string;
  readonly network?: string;
  readonly port?: number;
  readonly protocol?: 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | 'other';
  readonly verdict?: 'accept' | 'drop' | 'reject' | 'indeterminate';
  readonly natOnly?: boolean;
  /** Only these event types (default: all). */
  readonly types?: readonly EventType[];
}

export interface SubscribeMessage {
  readonly type: 'subscribe';
  readonly filter?: SubscriptionFilter;
  /** How many of the last events (that match) to replay first; default: all the server keeps. */
  readonly replay?: number;
  /** Also send the latest event of every live flow that matches, even if older than the replay. */
  readonly snapshot?: boolean;
}
export interface UnsubscribeMessage {
  readonly type: 'unsubscribe';
}
/** Kinds of hairpin checks a client may ask for (src/verify/types.ts CheckKind). */
export const VERIFY_CHECK_KINDS = ['same-bridge', 'self', 'cross-bridge', 'host-loopback', 'host-address'] as const;

/**
 * Runs a check on the server's host (`journey verify hairpin`) and answers with its report
 * (`verify.started`, then `verify.result` or an `error`). The namespace and the Docker endpoint
 * are the server's own; a client chooses only these bounded options.
 */
export interface VerifyRequestMessage {
  readonly type: 'verify';
  readonly check: 'hairpin';
  /** Echoed in the answers (the client's own correlation id). */
  readonly id?: string;
  readonly options?: {
    /** Only these published ports ("8000", "8000/tcp"). */
    readonly ports?: readonly string[];
    readonly kinds?: readonly (typeof VERIFY_CHECK_KINDS)[number][];
    /** The host address containers call (IPv4 or IPv6 literal). */
    readonly hostAddr?: string;
    /** Per-probe timeout, ms (100..10000). */
    readonly timeoutMs?: number;
    readonly trace?: 'failures' | 'all' | 'none';
    /** Watch hairpin flows as they happen instead of probing, for durationMs (1000..60000). */
    readonly passive?: boolean;
    readonly durationMs?: number;
    /** eBPF drop reasons as evidence (default on where the kernel allows). */
    readonly drops?: boolean;
  };
}
export type ClientMessage = SubscribeMessage | UnsubscribeMessage | VerifyRequestMessage;

/** JSON Schema (2020-12) of what clients may send. Kept identical to $defs.ClientMessage in docs/event-schema.json (tested). */
export const CLIENT_MESSAGE_SCHEMA = {
  $id: 'https://journey.invalid/schema/client-message.json',
  oneOf: [
    {
      type: 'object',
      required: ['type'],
      additionalProperties: false,
      properties: {
        type: { const: 'subscribe' },
        filter: {
          type: 'object',
          additionalProperties: false,
          properties: {
            container: { type: 'string', minLength: 1, maxLength: 256 },
            network: { type: 'string', minLength: 1, maxLength: 256 },
            port: { type: 'integer', minimum: 0, maximum: 65535 },
            protocol: { enum: ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'other'] },
            verdict: { enum: ['accept', 'drop', 'reject', 'indeterminate'] },
            natOnly: { type: 'boolean' },
            types: {
              type: 'array',
              maxItems: 8,
              uniqueItems: true,
              items: { enum: [...EVENT_TYPES] },
            },
          },
        },
        replay: { type: 'integer', minimum: 0, maximum: 100000 },
        snapshot: { type: 'boolean' },
      },
    },
    {
      type: 'object',
      required: ['type'],
      additionalProperties: false,
      properties: { type: { const: 'unsubscribe' } },
    },
    {
      type: 'object',
      required: ['type', 'check'],
      additionalProperties: false,
      properties: {
        type: { const: 'verify' },
        check: { const: 'hairpin' },
        id: { type: 'string', minLength: 1, maxLength: 64 },
        options: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ports: { type: 'array', maxItems: 32, uniqueItems: true, items: { type: 'string', pattern: '^[0-9]{1,5}(/(tcp|udp|sctp))?$' } },
            kinds: { type: 'array', maxItems: 5, uniqueItems: true, items: { enum: [...VERIFY_CHECK_KINDS] } },
            hostAddr: { type: 'string', minLength: 2, maxLength: 45, pattern: '^[0-9A-Fa-f:.]+$' },
            timeoutMs: { type: 'integer', minimum: 100, maximum: 10000 },
            trace: { enum: ['failures', 'all', 'none'] },
            passive: { type: 'boolean' },
            durationMs: { type: 'integer', minimum: 1000, maximum: 60000 },
            drops: { type: 'boolean' },
          },
        },
      },
    },
  ],
} as const;

export type ParseResult =
  | { readonly ok: true; readonly message: ClientMessage }
  | { readonly ok: false; readonly code: 'E_BAD_JSON' | 'E_BAD_MESSAGE' | 'E_TOO_LARGE' | 'E_BINARY'; readonly message: string };

let validator: ValidateFunction | null = null;
function validate(): ValidateFunction {
  if (validator === null) {
    const ajv = new Ajv2020({ allErrors: false, strict: true });
    validator = ajv.compile(CLIENT_MESSAGE_SCHEMA);
  }
  return validator;
}

/** Parses and validates one client message (text). Never throws. */
export function parseClientMessage(text: string, maxBytes: number): ParseResult {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > maxBytes) {
    return { ok: false, code: 'E_TOO_LARGE', message: `message of ${bytes} bytes exceeds the limit of ${maxBytes} bytes` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, code: 'E_BAD_JSON', message: `not JSON: ${(e as Error).message}` };
  }
  const v = validate();
  if (!v(value)) {
    return { ok: false, code: 'E_BAD_MESSAGE', message: describeInvalid(value, v) };
  }
  return { ok: true, message: value as ClientMessage };
}

function describeInvalid(value: unknown, v: ValidateFunction): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'a message is a JSON object with a "type"';
  const type = (value as { type?: unknown }).type;
  if (type !== 'subscribe' && type !== 'unsubscribe') {
    return `unknown message type ${JSON.stringify(type) ?? 'undefined'} (expected "subscribe" or "unsubscribe")`;
  }
  // oneOf reports the errors of every branch: keep those of the branch the type names.
  const branch = type === 'subscribe' ? 0 : 1;
  const errs = (v.errors ?? []).filter((e) => e.schemaPath.startsWith(`#/oneOf/${branch}/`));
  const first = errs[0];
  if (first === undefined) return 'invalid message';
  const where = first.instancePath === '' ? 'message' : first.instancePath;
  const extra =
    first.keyword === 'additionalProperties'
      ? ` (${JSON.stringify((first.params as { additionalProperty?: string }).additionalProperty)})`
      : first.keyword === 'enum'
        ? ` (${((first.params as { allowedValues?: unknown[] }).allowedValues ?? []).map((x) => JSON.stringify(x)).join(', ')})`
        : '';
  return `${where} ${first.message ?? 'is invalid'}${extra}`;
}

const PORTED = new Set(['tcp', 'udp', 'sctp']);

function tupleHasPort(t: Tuple | null | undefined, port: number): boolean {
  return t != null && PORTED.has(t.proto) && (t.sport === port || t.dport === port);
}

/** Whether the flow-level criteria (container, network, port, protocol, verdict, natOnly) hold for a flow. */
export function flowMatches(f: SubscriptionFilter, flow: FlowInfo): boolean {
  if (f.protocol !== undefined && flow.orig.proto !== f.protocol) return false;
  if (f.natOnly === true && flow.nat.dnat === null && flow.nat.snat === null) return false;
  if (f.port !== undefined) {
    const p = f.port;
    if (!tupleHasPort(flow.orig, p) && !tupleHasPort(flow.reply, p) && !flow.legs.some((l) => tupleHasPort(l.tuple, p))) {
      return false;
    }
  }
  if (f.container !== undefined && !flow.names.some((n) => n.container === f.container)) return false;
  if (f.network !== undefined && !flow.names.some((n) => n.network === f.network)) return false;
  if (f.verdict !== undefined) {
    const v = flow.explanation?.verdict;
    if (v !== f.verdict && !(f.verdict === 'drop' && flow.drops.length > 0)) return false;
  }
  return true;
}

/** What a drop's filtering needs to know of its flow (kept per flow by the server, small). */
export type FlowIdentity = Pick<FlowInfo, 'names' | 'nat'>;

/** container/network/natOnly of a filter against what is known of a flow. */
export function identityMatches(f: SubscriptionFilter, flow: FlowIdentity): boolean {
  if (f.natOnly === true && flow.nat.dnat === null && flow.nat.snat === null) return false;
  if (f.container !== undefined && !flow.names.some((n) => n.container === f.container)) return false;
  if (f.network !== undefined && !flow.names.some((n) => n.network === f.network)) return false;
  return true;
}

/**
 * Whether `ev` passes `f`. `flowOf` resolves a drop's flowId to what is known of its flow (or
 * undefined), so that drops can be filtered by container/network/NAT.
 */
export function eventMatches(f: SubscriptionFilter, ev: JourneyEvent, flowOf: (id: string) => FlowIdentity | undefined = () => undefined): boolean {
  if (f.types !== undefined && !f.types.includes(ev.type)) return false;
  switch (ev.type) {
    case 'flow.start':
    case 'flow.update':
    case 'flow.end':
      return flowMatches(f, ev.flow);
    case 'drop': {
      if (f.verdict !== undefined && f.verdict !== 'drop') return false;
      const t = ev.drop.tuple;
      if (f.protocol !== undefined && t?.proto !== f.protocol) return false;
      if (f.port !== undefined && !tupleHasPort(t, f.port)) return false;
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
