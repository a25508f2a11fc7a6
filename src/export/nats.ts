/**
 * `--export nats://SERVER[:4222]/PREFIX[?stream=NAME&max-age=S&retry=S&queue=N&jetstream=false&tls=true]`:
 * every event, exactly as `watch --json` prints it (docs/event-schema.json), published on
 * PREFIX.HOST.TYPE (journey.web1.flow.start). With JetStream (the default) the events are stored
 * in a stream (created when missing: PREFIX.>, file storage) so a reader that reconnects replays
 * what it missed; each publish waits for the server's acknowledgement and is retried while the
 * server is away (a message id makes retries duplicates the server drops). What is neither
 * acknowledged within `retry` seconds nor fits the bounded queue is counted as lost.
 */
import { hostname } from 'node:os';
import { connect, Events, nanos, StorageType, type JetStreamClient, type NatsConnection } from 'nats';
import { JourneyError } from '../model/errors.js';
import type { JourneyEvent } from '../model/events.js';
import { eventJson } from '../model/event-json.js';
import { natsConnectOptions, parseNatsUrl, subjectToken, type NatsUrl } from './nats-connect.js';
import type { ExportContext, ExportTarget, ExportTargetKind } from './target.js';

interface Outgoing {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgID: string;
  readonly firstMs: number;
  /** Handed to the client at least once (it may have reached the server without an acknowledgement). */
  handed: boolean;
}

function intParam(u: NatsUrl, key: string, dflt: number, min: number, max: number): number {
  const v = u.params.get(key);
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new JourneyError('E_USAGE', `${u.redacted}: ${key} is a whole number from ${min} to ${max}`);
  return n;
}

/** Creates the stream when it is missing (two hosts creating it at once: the second finds it). */
export async function ensureStream(nc: NatsConnection, u: NatsUrl, maxAgeS: number): Promise<void> {
  const jsm = await nc.jetstreamManager().catch((e: Error) => {
    throw new JourneyError('E_EXPORT', `${u.redacted}: no JetStream on the server (nats-server -js), or add ?jetstream=false: ${e.message}`);
  });
  try {
    await jsm.streams.info(u.stream);
    return;
  } catch {
    // not there yet: created below
  }
  try {
    await jsm.streams.add({
      name: u.stream,
      subjects: [`${u.prefix}.>`],
      storage: StorageType.File,
      max_age: nanos(maxAgeS * 1000),
      duplicate_window: nanos(120_000),
    });
  } catch (e) {
    await jsm.streams.info(u.stream).catch(() => {
      throw new JourneyError('E_EXPORT', `${u.redacted}: cannot create the stream ${u.stream}: ${(e as Error).message}`);
    });
  }
}

export class NatsExporter implements ExportTarget {
  readonly target: string;
  private readonly queue: Outgoing[] = [];
  private readonly hostToken: string;
  private readonly boot = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  private js: JetStreamClient | null = null;
  private connected = true;
  private inFlight = 0;
  private closed = false;
  private counts = { sent: 0, lost: 0, unconfirmed: 0, reconnects: 0, retried: 0, disconnects: 0 };
  private readonly enc = new TextEncoder();
  /** The connection's status events; stopped on close (an open iterator keeps the process alive). */
  private readonly status: ReturnType<NatsConnection['status']>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly u: NatsUrl,
    private readonly ctx: ExportContext,
    private readonly o: { readonly window: number; readonly maxQueue: number; readonly retryMs: number },
  ) {
    this.target = u.redacted;
    this.hostToken = subjectToken(ctx.host);
    if (u.jetstream) this.js = nc.jetstream();
    this.status = nc.status();
    void this.watchStatus();
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.status) {
      if (s.type === Events.Disconnect) {
        this.connected = false;
        this.counts.disconnects++;
        this.ctx.log(`${this.target}: disconnected from ${String(s.data)}; queueing (at most ${this.o.maxQueue}, ${this.o.retryMs / 1000} s)`);
      } else if (s.type === Events.Reconnect) {
        this.connected = true;
        this.counts.reconnects++;
        this.ctx.log(`${this.target}: reconnected; ${this.queue.length} queued events go out now`);
        this.pump();
      }
    }
  }

  write(ev: JourneyEvent): void {
    if (this.closed) return;
    if (this.queue.length >= this.o.maxQueue) {
      this.counts.lost++;
      return;
    }
    this.queue.push({
      subject: `${this.u.prefix}.${this.hostToken}.${ev.type}`,
      data: this.enc.encode(eventJson(ev)),
      msgID: `${this.hostToken}.${this.boot}.${ev.seq}.${ev.type}`,
      firstMs: Date.now(),
      handed: false,
    });
    this.pump();
  }

  private pump(): void {
    if (!this.js) {
      // core NATS: at most once, the client buffers while it reconnects
      for (let m = this.queue.shift(); m !== undefined; m = this.queue.shift()) {
        try {
          this.nc.publish(m.subject, m.data);
          this.counts.sent++;
        } catch {
          this.counts.lost++; // the connection is closed for good
        }
      }
      return;
    }
    const js = this.js;
    while (this.connected && this.inFlight < this.o.window && this.queue.length > 0) {
      const m = this.queue.shift() as Outgoing;
      if (Date.now() - m.firstMs >= this.o.retryMs) {
        this.giveUp(m);
        continue;
      }
      m.handed = true;
      this.inFlight++;
      js.publish(m.subject, m.data, { msgID: m.msgID, timeout: 5000 }).then(
        () => {
          this.inFlight--;
          this.counts.sent++;
          this.pump();
        },
        () => {
          this.inFlight--;
          // not acknowledged: again while it is young enough and journey is not stopping
          if (!this.closed && Date.now() - m.firstMs < this.o.retryMs && !this.nc.isClosed()) {
            this.counts.retried++;
            this.queue.unshift(m);
            setTimeout(() => this.pump(), 200).unref();
          } else this.giveUp(m);
        },
      );
    }
  }

  /**
   * Too old to try again: lost when the server never had it, unconfirmed when it was handed to
   * the client (the server may have stored it without the acknowledgement coming back).
   */
  private giveUp(m: Outgoing): void {
    if (m.handed) this.counts.unconfirmed++;
    else this.counts.lost++;
  }

  /** Messages queued while the server is away and already too old are given up (and counted) now. */
  private expire(): void {
    if (this.connected) return;
    const now = Date.now();
    let kept = 0;
    for (const m of this.queue) {
      if (now - m.firstMs >= this.o.retryMs) this.giveUp(m);
      else this.queue[kept++] = m;
    }
    this.queue.length = kept;
  }

  stats() {
    this.expire();
    const { sent, lost, unconfirmed, reconnects, retried, disconnects } = this.counts;
    return { target: this.target, sent, lost, reconnects, extra: { unconfirmed, retried, disconnects, queued: this.queue.length + this.inFlight } };
  }

  /** Waits (at most `retry` seconds) for what is queued to be acknowledged, then closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    const until = Date.now() + Math.min(this.o.retryMs, 10_000);
    while ((this.queue.length > 0 || this.inFlight > 0) && Date.now() < until && !this.nc.isClosed()) await new Promise((r) => setTimeout(r, 50));
    this.closed = true;
    for (const m of this.queue) this.giveUp(m);
    this.queue.length = 0;
    if (!this.js) await this.nc.flush().catch(() => undefined);
    (this.status as { stop?: () => void }).stop?.();
    await this.nc.close().catch(() => undefined);
    // publishes still waiting for their acknowledgement settle (counted sent or unconfirmed) as the connection closes
    for (let i = 0; this.inFlight > 0 && i < 20; i++) await new Promise((r) => setTimeout(r, 50));
    this.counts.unconfirmed += this.inFlight;
    this.inFlight = 0;
  }
}

export const natsTarget: ExportTargetKind<'nats'> = {
  scheme: 'nats',
  usage: 'nats://SERVER[:4222]/PREFIX[?stream=NAME&max-age=S&retry=S&queue=N&jetstream=false&tls=true]',
  async open(url: URL, ctx: ExportContext) {
    const u = parseNatsUrl(url, ['max-age', 'retry', 'queue', 'window']);
    const maxAgeS = intParam(u, 'max-age', 3600, 1, 365 * 86_400);
    const o = {
      retryMs: intParam(u, 'retry', 60, 1, 86_400) * 1000,
      maxQueue: intParam(u, 'queue', 100_000, 1, 10_000_000),
      window: intParam(u, 'window', 256, 1, 65_536),
    };
    let nc: NatsConnection;
    try {
      nc = await connect(natsConnectOptions(u, ctx.env, `journey ${ctx.host || hostname()}`));
    } catch (e) {
      throw new JourneyError('E_EXPORT', `${u.redacted}: ${(e as Error).message}`);
    }
    if (u.jetstream) {
      try {
        await ensureStream(nc, u, maxAgeS);
      } catch (e) {
        await nc.close().catch(() => undefined);
        throw e;
      }
    }
    return new NatsExporter(nc, u, ctx, o);
  },
};
