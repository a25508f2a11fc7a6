/**
 * The WebSocket side of `journey serve`: connected clients, their subscriptions, the replay ring
 * and backpressure.
 *
 * - Every event is serialised once; each client whose filter matches gets the same string.
 * - A client is written to only while its socket's `bufferedAmount` is under `highWaterBytes`;
 *   otherwise messages wait in its BoundedQueue (count and byte limits). A full queue drops its
 *   oldest messages, and the next message the client receives is a `lost` event with the count —
 *   so a client that stops reading costs at most highWater + queue bytes (plus the kernel's socket
 *   buffers), never more.
 * - Pings every `pingIntervalMs`; a client that has not answered the previous ping is terminated.
 * - Client messages are validated (subscription.ts); bad ones are answered with an `error`
 *   message, and a client sending too many bad messages is closed (1008).
 */
import { VERSION } from '../model/version.js';
import type { IncomingMessage } from 'node:http';
import { WebSocket, type RawData } from 'ws';
import { SCHEMA_VERSION, type FlowInfo, type JourneyEvent } from '../model/events.js';
import { eventJson } from '../model/event-json.js';
import type { ServeMetrics } from './metrics.js';
import { eventMatches, type FlowFilter, type FlowIdentity, sameIdentity } from './flow-filter.js';
import { HubClient } from './ws-client.js';
import { parseClientMessage, type VerifyRequestMessage } from './subscription.js';
import { CLOSE, type ClientErrorCode, type ControlMessage } from './ws-protocol.js';

export interface HubOptions {
  /** Events kept for replay (default 256). */
  readonly replay?: number;
  /** Per-client queue limits (default 2048 messages, 4 MiB). */
  readonly queueMaxItems?: number;
  readonly queueMaxBytes?: number;
  /** Stop writing to a client while its bufferedAmount is at least this (default 1 MiB). */
  readonly highWaterBytes?: number;
  /** Largest client message that is answered; default 4096 bytes. */
  readonly maxMessageBytes?: number;
  /** Bad messages before the client is closed with 1008 (default 20). */
  readonly maxErrors?: number;
  /** Ping period; 0 disables (default 30 s). */
  readonly pingIntervalMs?: number;
  /** Flows remembered to filter drop events by container/network (default 10000). */
  readonly flowMemory?: number;
  /** Live flows whose latest event is kept for `snapshot` subscriptions (default 1000). */
  readonly liveFlows?: number;
  /** `subscribe` messages per client and second (default 10); more get E_RATE_LIMITED. */
  readonly maxSubscribesPerSecond?: number;
  readonly version?: string;
  /**
   * Runs a `verify` request (serve: verifyHairpin on the served host) and resolves with its report.
   * Absent: verify requests get E_UNAVAILABLE. One runs at a time per hub (others get E_BUSY);
   * `signal` aborts when the asking client goes away (a passive check then ends early).
   * A rejection becomes an `error` message (E_VERIFY) to the asking client.
   */
  readonly verify?: VerifyHandler;
}

export type VerifyHandler = (request: VerifyRequestMessage, signal: AbortSignal) => Promise<unknown>;

interface RingEntry {
  readonly ev: JourneyEvent;
  readonly data: string;
}

/** What `hello` tells a client to do to receive events (a client that sends nothing gets none). */
export const SUBSCRIBE_HINT =
  'send {"type":"subscribe","filter":{}} for every event (filter keys: container, network, port, protocol, verdict, natOnly, addr, types), ' +
  'or connect to /events?subscribe or /events?container=NAME&types=flow.start to be subscribed at once';

export class WsHub {
  readonly clients = new Set<HubClient>();
  readonly highWater: number;
  readonly lowWater: number;
  lastSeq = 0;
  private readonly ring: (RingEntry | undefined)[];
  private ringHead = 0;
  private ringCount = 0;
  /** Names and NAT of recent flows (small: references into the events), to filter drops by container/network/NAT. */
  private readonly flows = new Map<string, FlowIdentity>();
  /** The latest flow.start/update of each live flow (most recently changed last), for snapshots. */
  private readonly live = new Map<string, RingEntry>();
  /** Scratch list of the clients an event goes to (reused). */
  private readonly matching: HubClient[] = [];
  private readonly opts: Required<Omit<HubOptions, 'verify'>>;
  private readonly pingTimer: NodeJS.Timeout | null;
  private readonly verifyHandler: VerifyHandler | null;
  /** The verify request running now (one per server), or null. */
  private verifying: { readonly client: HubClient; readonly abort: AbortController } | null = null;

  constructor(
    readonly metrics: ServeMetrics | null,
    opts: HubOptions = {},
  ) {
    this.opts = {
      replay: opts.replay ?? 256,
      queueMaxItems: opts.queueMaxItems ?? 2048,
      queueMaxBytes: opts.queueMaxBytes ?? 4 * 1024 * 1024,
      highWaterBytes: opts.highWaterBytes ?? 1024 * 1024,
      maxMessageBytes: opts.maxMessageBytes ?? 4096,
      maxErrors: opts.maxErrors ?? 20,
      pingIntervalMs: opts.pingIntervalMs ?? 30_000,
      flowMemory: opts.flowMemory ?? 10_000,
      maxSubscribesPerSecond: opts.maxSubscribesPerSecond ?? 10,
      liveFlows: opts.liveFlows ?? 1000,
      version: opts.version ?? VERSION,
    };
    this.verifyHandler = opts.verify ?? null;
    this.highWater = this.opts.highWaterBytes;
    this.lowWater = Math.floor(this.opts.highWaterBytes / 2);
    this.ring = new Array<RingEntry | undefined>(Math.max(0, this.opts.replay));
    this.pingTimer = this.opts.pingIntervalMs > 0 ? setInterval(() => this.heartbeat(), this.opts.pingIntervalMs) : null;
    this.pingTimer?.unref();
    metrics?.setClientSampler(() => [...this.clients].map((c) => ({ id: c.id, lost: c.queue.lostTotal, queued: c.queue.length })));
  }

  get maxMessageBytes(): number {
    return this.opts.maxMessageBytes;
  }

  /** Events kept for replay right now. */
  get replayAvailable(): number {
    return this.ringCount;
  }

  /** Publishes one event from the pipeline to every client whose filter matches. */
  publish(ev: JourneyEvent): void {
    this.metrics?.observe(ev);
    if (ev.seq > this.lastSeq) this.lastSeq = ev.seq;
    if (ev.type === 'flow.start' || ev.type === 'flow.update') this.rememberFlow(ev.flow);
    const data = eventJson(ev);
    const entry: RingEntry = { ev, data };
    if (this.ring.length > 0) {
      const cap = this.ring.length;
      this.ring[(this.ringHead + this.ringCount) % cap] = entry;
      if (this.ringCount < cap) this.ringCount++;
      else this.ringHead = (this.ringHead + 1) % cap;
    }
    if (ev.type === 'flow.start' || ev.type === 'flow.update') {
      this.live.delete(ev.flow.id);
      this.live.set(ev.flow.id, entry);
      if (this.live.size > this.opts.liveFlows) {
        const oldest = this.live.keys().next();
        if (oldest.done !== true) this.live.delete(oldest.value);
      }
    }
    const flowOf = (id: string): FlowIdentity | undefined => this.flows.get(id);
    const to = this.matching;
    for (const c of this.clients) {
      if (c.filter !== null && eventMatches(c.filter, ev, flowOf)) to.push(c);
    }
    if (to.length > 0) {
      // measured: one client is cheapest with the string; several share one UTF-8 encoding
      const item = { data: to.length > 1 ? Buffer.from(data) : data, seq: ev.seq };
      try {
        for (const c of to) c.offer(item);
      } finally {
        to.length = 0;
      }
    }
    if (ev.type === 'flow.end') {
      this.flows.delete(ev.flow.id);
      this.live.delete(ev.flow.id);
    }
  }

  /**
   * Takes over an upgraded connection. `filter` comes from the URL's query (`/events?container=web`,
   * `/events?subscribe` for everything): such a client is subscribed at once, without a message.
   */
  attach(ws: WebSocket, req: IncomingMessage, filter: FlowFilter | null = null): HubClient {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const client = new HubClient(ws, remote, this, this.opts.queueMaxItems, this.opts.queueMaxBytes);
    this.clients.add(client);
    this.metrics?.connections.inc();
    this.metrics?.clients.set(this.clients.size);
    ws.on('pong', () => {
      client.alive = true;
    });
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(client, data, isBinary));
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the connection itself (e.g. 1009 for a frame over maxPayload).
      this.metrics?.badMessages.inc({ code: err.code ?? 'WS_ERROR' });
    });
    ws.on('close', () => this.detach(client));
    this.sendControl(client, {
      type: 'hello',
      v: SCHEMA_VERSION,
      time: Date.now(),
      server: 'journey',
      version: this.opts.version,
      replayAvailable: this.ringCount,
      queueLimit: this.opts.queueMaxItems,
      maxMessageBytes: this.opts.maxMessageBytes,
      subscribeHint: SUBSCRIBE_HINT,
    });
    if (filter !== null) this.subscribe(client, filter, undefined, false);
    return client;
  }

  /** Closes every client (1001) and stops the heartbeat. */
  close(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.verifying?.abort.abort(); // a passive check ends now; an active one's probes are short
    for (const c of this.clients) {
      c.ws.close(CLOSE.GOING_AWAY, 'server shutting down');
      const t = setTimeout(() => c.ws.terminate(), 1000);
      t.unref();
    }
  }

  private detach(client: HubClient): void {
    if (!this.clients.delete(client)) return;
    if (this.verifying?.client === client) this.verifying.abort.abort();
    client.dispose();
    this.metrics?.clients.set(this.clients.size);
    this.metrics?.removeClient(client.id);
  }

  private heartbeat(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        this.metrics?.deadClients.inc();
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        c.ws.terminate();
      }
    }
  }

  private sendControl(client: HubClient, msg: ControlMessage): void {
    client.offer({ data: JSON.stringify(msg), seq: -1 });
  }

  /** Whether a verify request is running on this server. */
  get verifyRunning(): boolean {
    return this.verifying !== null;
  }

  /**
   * A verify request: refused while another runs (E_BUSY) or without a handler (E_UNAVAILABLE);
   * else `verify.started`, then `verify.result` with the report, or an `error` (E_VERIFY). Only
   * the asking client is answered; the stream goes on meanwhile.
   */
  private onVerify(client: HubClient, msg: VerifyRequestMessage): void {
    const id = msg.id !== undefined ? { id: msg.id } : {};
    const answer = (m: ControlMessage): void => {
      if (this.clients.has(client)) this.sendControl(client, m);
    };
    if (this.verifyHandler === null) {
      answer({
        type: 'error',
        v: SCHEMA_VERSION,
        time: Date.now(),
        code: 'E_UNAVAILABLE',
        message: 'this server cannot run checks (a replay, or no live host)',
        ...id,
      });
      return;
    }
    if (this.verifying !== null) {
      answer({
        type: 'error',
        v: SCHEMA_VERSION,
        time: Date.now(),
        code: 'E_BUSY',
        message: 'a verify is already running on this server: ask again when its result has come',
        ...id,
      });
      return;
    }
    const abort = new AbortController();
    const running = { client, abort };
    this.verifying = running;
    answer({ type: 'verify.started', v: SCHEMA_VERSION, time: Date.now(), check: msg.check, ...id });
    let p: Promise<unknown>;
    try {
      p = this.verifyHandler(msg, abort.signal);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (report) => answer({ type: 'verify.result', v: SCHEMA_VERSION, time: Date.now(), check: msg.check, ...id, report }),
      (e: unknown) => {
        const err = e as Error & { code?: string };
        answer({
          type: 'error',
          v: SCHEMA_VERSION,
          time: Date.now(),
          code: 'E_VERIFY',
          message: `${err.code !== undefined ? `${err.code}: ` : ''}${err.message ?? String(e)}`,
          ...id,
        });
      },
    ).finally(() => {
      if (this.verifying === running) this.verifying = null;
    });
  }

  private refuse(client: HubClient, code: ClientErrorCode, message: string, id?: string): void {
    this.metrics?.badMessages.inc({ code });
    client.errors++;
    if (client.errors > this.opts.maxErrors) {
      this.sendControl(client, {
        type: 'error',
        v: SCHEMA_VERSION,
        time: Date.now(),
        code: 'E_TOO_MANY_ERRORS',
        message: `more than ${this.opts.maxErrors} bad messages: closing`,
      });
      client.ws.close(CLOSE.POLICY, 'too many bad messages');
      return;
    }
    this.sendControl(client, { type: 'error', v: SCHEMA_VERSION, time: Date.now(), code, message, ...(id !== undefined ? { id } : {}) });
  }

  private onMessage(client: HubClient, data: RawData, isBinary: boolean): void {
    if (client.ws.readyState !== WebSocket.OPEN) return;
    if (isBinary) {
      this.refuse(client, 'E_BINARY', 'binary messages are not accepted: send JSON text');
      return;
    }
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (buf.length > this.opts.maxMessageBytes) {
      this.refuse(client, 'E_TOO_LARGE', `message of ${buf.length} bytes exceeds the limit of ${this.opts.maxMessageBytes} bytes`);
      return;
    }
    const parsed = parseClientMessage(buf.toString('utf8'), this.opts.maxMessageBytes);
    if (!parsed.ok) {
      this.refuse(client, parsed.code, parsed.message, parsed.requestId);
      return;
    }
    const msg = parsed.message;
    if (msg.type === 'verify') {
      this.onVerify(client, msg);
      return;
    }
    if (msg.type === 'unsubscribe') {
      client.filter = null;
      client.queue.clear();
      this.sendControl(client, { type: 'subscribed', v: SCHEMA_VERSION, time: Date.now(), filter: null, replayed: 0, snapshot: 0 });
      return;
    }
    const now = Date.now();
    if (now - client.subscribeWindowStart >= 1000) {
      client.subscribeWindowStart = now;
      client.subscribeCount = 0;
    }
    if (++client.subscribeCount > this.opts.maxSubscribesPerSecond) {
      this.refuse(client, 'E_RATE_LIMITED', `more than ${this.opts.maxSubscribesPerSecond} subscriptions per second: this one is ignored`);
      return;
    }
    this.subscribe(client, msg.filter ?? {}, msg.replay, msg.snapshot === true);
  }

  /** Sets a client's filter and queues the kept events (and, with a snapshot, the live flows) that match. */
  private subscribe(client: HubClient, filter: FlowFilter, replay: number | undefined, withSnapshot: boolean): void {
    client.filter = filter;
    const want = Math.min(replay ?? this.ringCount, this.ringCount);
    const flowOf = (id: string): FlowIdentity | undefined => this.flows.get(id);
    const picked: RingEntry[] = [];
    // newest first, then reversed: the last `want` matching events, in order.
    for (let i = this.ringCount - 1; i >= 0 && picked.length < want; i--) {
      const e = this.ring[(this.ringHead + i) % this.ring.length];
      if (e !== undefined && eventMatches(filter, e.ev, flowOf)) picked.push(e);
    }
    const replayed = picked.length;
    let snapshot = 0;
    if (withSnapshot) {
      // the latest state of every live flow the replay does not already carry
      const inReplay = new Set(picked);
      for (const e of this.live.values()) {
        if (!inReplay.has(e) && eventMatches(filter, e.ev, flowOf)) {
          picked.push(e);
          snapshot++;
        }
      }
    }
    picked.sort((a, b) => a.ev.seq - b.ev.seq);
    this.sendControl(client, { type: 'subscribed', v: SCHEMA_VERSION, time: Date.now(), filter, replayed, snapshot });
    for (const e of picked) client.offer({ data: e.data, seq: e.ev.seq });
  }

  private rememberFlow(flow: FlowInfo): void {
    // Updates mostly repeat what is known: keep the old record then (retaining fresh objects
    // from every event in a long-lived map is what costs, in GC). Insertion order is the flow's
    // first appearance: eviction forgets the oldest flows first.
    const known = this.flows.get(flow.id);
    if (known !== undefined && sameIdentity(known, flow)) return;
    this.flows.set(flow.id, { names: flow.names, nat: flow.nat });
    if (this.flows.size > this.opts.flowMemory) {
      const oldest = this.flows.keys().next();
      if (oldest.done !== true) this.flows.delete(oldest.value);
    }
  }
}
