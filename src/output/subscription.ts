/**
 * Server-side subscriptions of `journey serve`: what a WebSocket client may send, how it is
 * validated (ajv, against CLIENT_MESSAGE_SCHEMA, also published in docs/event-schema.json).
 * What a filter lets through is src/output/flow-filter.ts (the one filter of watch, serve and the page).
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { FLOW_FILTER_SCHEMA, type FlowFilter } from './flow-filter.js';

export interface SubscribeMessage {
  readonly type: 'subscribe';
  readonly filter?: FlowFilter;
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
        filter: FLOW_FILTER_SCHEMA,
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
