/**
 * Server-side subscriptions of `journey serve`: what a WebSocket client may send, how it is
 * validated (ajv, against CLIENT_MESSAGE_SCHEMA, also published in docs/event-schema.json).
 * What a filter lets through is src/output/flow-filter.ts (the one filter of watch, serve and the page).
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { FLOW_FILTER_SCHEMA, type FlowFilter } from './flow-filter.js';
import { VERIFY_CHECKS, type VerifyCheckName } from '../verify/checks.js';

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
/**
 * Runs a registered check (src/verify/checks.ts: `journey verify <check>`) on the server's host and
 * answers with its report (`verify.started`, then `verify.result` or an `error`). The namespace and
 * the Docker endpoint are the server's own; a client chooses only the check's bounded options
 * (each check's `wireSchema`).
 */
export interface VerifyRequestMessage {
  readonly type: 'verify';
  readonly check: VerifyCheckName;
  /** Echoed in the answers (the client's own correlation id). */
  readonly id?: string;
  readonly options?: Readonly<Record<string, unknown>>;
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
    ...VERIFY_CHECKS.map((c) => ({
      type: 'object',
      required: ['type', 'check'],
      additionalProperties: false,
      properties: {
        type: { const: 'verify' },
        check: { const: c.name },
        id: { type: 'string', minLength: 1, maxLength: 64 },
        options: c.wireSchema,
      },
    })),
  ],
} as const;

export type ParseResult =
  | { readonly ok: true; readonly message: ClientMessage }
  | {
      readonly ok: false;
      readonly code: 'E_BAD_JSON' | 'E_BAD_MESSAGE' | 'E_TOO_LARGE' | 'E_BINARY';
      readonly message: string;
      /** The id of a malformed verify request, when it has a usable one: the answer names the request it refuses. */
      readonly requestId?: string;
    };

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
    const o = value as { type?: unknown; id?: unknown } | null;
    const id =
      typeof o === 'object' && o !== null && o.type === 'verify' && typeof o.id === 'string' && o.id.length > 0 && o.id.length <= 64
        ? o.id
        : undefined;
    return { ok: false, code: 'E_BAD_MESSAGE', message: describeInvalid(value, v), ...(id !== undefined ? { requestId: id } : {}) };
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
