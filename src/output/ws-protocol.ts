/**
 * The control messages of the WebSocket stream (`journey serve`, path /events), beside the
 * JourneyEvents themselves. Documented in docs/events.md, schema in docs/event-schema.json
 * ($defs.ServerMessage = a JourneyEvent or one of these).
 */
import { SCHEMA_VERSION } from '../model/events.js';
import type { SubscriptionFilter } from './subscription.js';

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
}

/** Answer to a valid `subscribe` (or `unsubscribe`: filter null). */
export interface SubscribedMessage {
  readonly type: 'subscribed';
  readonly v: typeof SCHEMA_VERSION;
  readonly time: number;
  readonly filter: SubscriptionFilter | null;
  /** How many kept events were queued for replay (they follow this message). */
  readonly replayed: number;
  /** How many live flows' latest events were added (subscribe with `snapshot: true`); all follow in seq order. */
  readonly snapshot: number;
}

export type ClientErrorCode = 'E_BAD_JSON' | 'E_BAD_MESSAGE' | 'E_TOO_LARGE' | 'E_BINARY' | 'E_RATE_LIMITED' | 'E_TOO_MANY_ERRORS';

/** A client message was refused; the connection stays open (until too many errors). */
export interface ErrorMessage {
  readonly type: 'error';
  readonly v: typeof SCHEMA_VERSION;
  readonly time: number;
  readonly code: ClientErrorCode;
  readonly message: string;
}

export type ControlMessage = HelloMessage | SubscribedMessage | ErrorMessage;

/** WebSocket close codes used by the server. */
export const CLOSE = {
  /** Server shutting down. */
  GOING_AWAY: 1001,
  /** Policy: too many bad messages. */
  POLICY: 1008,
  /** ws closes with this itself when a frame exceeds maxPayload. */
  TOO_BIG: 1009,
} as const;
