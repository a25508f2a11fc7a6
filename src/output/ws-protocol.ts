/**
 * The control messages of the WebSocket stream (`journey serve`, path /events), beside the
 * JourneyEvents themselves. Documented in docs/events.md, schema in docs/event-schema.json
 * ($defs.ServerMessage = a JourneyEvent or one of these).
 */
import type { SCHEMA_VERSION } from '../model/events.js';
import type { FlowFilter } from './flow-filter.js';
import type { VerifyCheckName } from '../verify/checks.js';

/** First message on every connection. */
export interface HelloMessage {
  readonly type: 'hello';
  readonly v: typeof SCHEMA_VERSION;
  readonly time: number;
  readonly server: 'journey';
  readonly version: string;
  /** Events kept for replay right now. */
  readonly replayAvailable: number;
  /** Messages queued per client at most before the oldest are dropped (and reported as `lost`). */
  readonly queueLimit: number;
  /** Largest client message answered (larger ones get an error; beyond maxPayload the socket closes with 1009). */
  readonly maxMessageBytes: number;
  /** What to send (or which URL to open) to receive events. */
  readonly subscribeHint: string;
}

/** Answer to a valid `subscribe` (or `unsubscribe`: filter null). */
export interface SubscribedMessage {
  readonly type: 'subscribed';
  readonly v: typeof SCHEMA_VERSION;
  readonly time: number;
  readonly filter: FlowFilter | null;
  /** How many kept events were queued for replay (they follow this message). */
  readonly replayed: number;
  /** How many live flows' latest events were added (subscribe with `snapshot: true`); all follow in seq order. */
  readonly snapshot: number;
}

export type ClientErrorCode =
  | 'E_BAD_JSON'
  | 'E_BAD_MESSAGE'
  | 'E_TOO_LARGE'
  | 'E_BINARY'
  | 'E_RATE_LIMITED'
  | 'E_TOO_MANY_ERRORS'
  /** verify: another verify is running on this server (one at a time). */
  | 'E_BUSY'
  /** verify: this server cannot run checks (a replay, or serve without a live host). */
  | 'E_UNAVAILABLE'
  /** verify: the check could not run (its JourneyError code and message are in `message`). */
  | 'E_VERIFY';

/** A client message was refused; the connection stays open (until too many errors). */
export interface ErrorMessage {
  readonly type: 'error';
  readonly v: typeof SCHEMA_VERSION;
  readonly time: number;
  readonly code: ClientErrorCode;
  readonly message: string;
  /** The `id` of the verify request this answers, when it had one. */
  readonly id?: string;
}

/** A verify request was accepted: the check runs (probes take seconds); its result follows. */
export interface VerifyStartedMessage {
  readonly type: 'verify.started';
  readonly v: typeof SCHEMA_VERSION;
  readonly time: number;
  readonly check: VerifyCheckName;
  readonly id?: string;
}

/** The report of a verify request: what `journey verify <check> --json` prints (docs/verify.md). */
export interface VerifyResultMessage {
  readonly type: 'verify.result';
  readonly v: typeof SCHEMA_VERSION;
  readonly time: number;
  readonly check: VerifyCheckName;
  readonly id?: string;
  /** The check's report (e.g. HairpinReport, src/verify/types.ts); `report.ok` is false when a check failed. */
  readonly report: unknown;
}

export type ControlMessage = HelloMessage | SubscribedMessage | ErrorMessage | VerifyStartedMessage | VerifyResultMessage;

/** WebSocket close codes used by the server. */
export const CLOSE = {
  /** Server shutting down. */
  GOING_AWAY: 1001,
  /** Policy: too many bad messages. */
  POLICY: 1008,
  /** ws closes with this itself when a frame exceeds maxPayload. */
  TOO_BIG: 1009,
} as const;
