/**
 * The one shape of an export target: where `journey watch|serve --export URL` sends the
 * pipeline's events. A target takes every event (it picks what it needs), never throws on the
 * hot path and never blocks: what it cannot send is counted, never silently lost. A new engine
 * (Kafka, OTLP, …) is one new file with an ExportTargetKind and one line in registry.ts.
 */
import type { JourneyEvent } from '../model/events.js';

/** What a target has done so far; printed when watch/serve stop and served on /metrics. */
export interface ExportStats {
  /** The URL without credentials. */
  readonly target: string;
  /** Units handed to the engine: IPFIX data records, NATS messages. */
  readonly sent: number;
  /** Units that could not be sent (engine unreachable, queue full, refused). */
  readonly lost: number;
  /** Transport sessions re-established after a loss. */
  readonly reconnects: number;
  /** Anything else worth a number (templates sent, acknowledgements, …). */
  readonly extra?: Readonly<Record<string, number>>;
}

export interface ExportTarget {
  /** The URL without credentials, for logs. */
  readonly target: string;
  /** One pipeline event. Never throws, never waits. */
  write(ev: JourneyEvent): void;
  stats(): ExportStats;
  /** Sends what is pending (bounded wait), then closes the transport. */
  close(): Promise<void>;
}

/** What every target is given besides its URL. */
export interface ExportContext {
  /** The name of the exporting host (subjects, observation domain, records). */
  readonly host: string;
  /** Where credentials come from (never the command line). */
  readonly env: NodeJS.ProcessEnv;
  /** Lines for the user (stderr): connects, reconnects, losses. */
  readonly log: (line: string) => void;
}

/** One export engine: its URL scheme and how it opens a target from a URL. */
export interface ExportTargetKind<S extends string = string> {
  readonly scheme: S;
  /** One line for --help and errors: the URL form and its parameters. */
  readonly usage: string;
  /** Checks the URL (E_USAGE) and connects (E_EXPORT when the engine cannot be reached at all). */
  open(url: URL, ctx: ExportContext): Promise<ExportTarget>;
}

/** The URL for logs: user, password and token removed. */
export function redactUrl(url: URL): string {
  const u = new URL(url.href);
  u.username = '';
  u.password = '';
  for (const k of [...u.searchParams.keys()]) if (/token|pass|secret|key|cred/i.test(k)) u.searchParams.set(k, '…');
  return u.href;
}
