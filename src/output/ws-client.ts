/**
 * One WebSocket client of the hub: its subscription filter, its bounded queue and the pump that
 * writes to its socket only while the socket's buffer is under the hub's high-water mark (a full
 * queue drops its oldest messages; the next message the client gets is a `lost` event with the count).
 */
import { WebSocket } from 'ws';
import { SCHEMA_VERSION, type LostEvent } from '../model/events.js';
import type { FlowFilter } from './flow-filter.js';
import type { WsHub } from './ws-hub.js';
import { BoundedQueue, type QueueItem } from './ws-queue.js';

let nextClientId = 1;

const TEXT = { binary: false } as const;

export class HubClient {
  readonly id: string;
  readonly queue: BoundedQueue;
  filter: FlowFilter | null = null;
  alive = true;
  errors = 0;
  sentCount = 0;
  /** Subscriptions in the current one-second window (each may replay the ring: rate-limited). */
  subscribeWindowStart = 0;
  subscribeCount = 0;
  private waiting = false;
  /** Whether the last write carries a completion callback (which wakes the pump). */
  private lastHasCallback = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly onWritten: (err?: Error) => void;

  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
    private readonly hub: WsHub,
    maxItems: number,
    maxBytes: number,
  ) {
    this.id = String(nextClientId++);
    this.queue = new BoundedQueue(maxItems, maxBytes);
    this.onWritten = () => this.wake();
  }

  /** Drops what is queued and any timer (the connection is gone). */
  dispose(): void {
    this.queue.clear();
    this.waiting = false;
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  /** Resumes writing once the socket has drained below the low-water mark. */
  private wake(): void {
    if (!this.waiting) return;
    if (this.ws.readyState !== WebSocket.OPEN) {
      this.waiting = false;
      return;
    }
    if (this.ws.bufferedAmount < this.hub.lowWater) {
      this.waiting = false;
      this.pump();
    } else {
      this.poll();
    }
  }

  /** Fallback wake-up while no write callback is pending. */
  private poll(): void {
    if (this.pollTimer !== null) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.wake();
    }, 10);
  }

  /** Queues a message and writes what the socket can take. */
  offer(item: QueueItem): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.queue.push(item);
    if (!this.waiting) this.pump();
  }

  pump(): void {
    const ws = this.ws;
    while (ws.readyState === WebSocket.OPEN) {
      const buffered = ws.bufferedAmount;
      if (buffered >= this.hub.highWater) {
        this.waiting = true;
        if (!this.lastHasCallback) this.poll();
        return;
      }
      let data: string | Buffer;
      if (this.queue.lost > 0) {
        const l = this.queue.takeLost();
        const ev: LostEvent = {
          v: SCHEMA_VERSION,
          seq: l.lastSeq >= 0 ? l.lastSeq : this.hub.lastSeq,
          time: Date.now(),
          type: 'lost',
          count: l.count,
          ...(l.firstSeq >= 0 ? { firstSeq: l.firstSeq, lastSeq: l.lastSeq } : {}),
        };
        data = JSON.stringify(ev);
        if (this.hub.metrics !== null) this.hub.metrics.lostCount += l.count;
      } else {
        const item = this.queue.shift();
        if (item === undefined) return;
        data = item.data;
      }
      this.sentCount++;
      if (this.hub.metrics !== null) this.hub.metrics.sentCount++;
      // Completion callbacks cost a tick each: only writes made while the socket is already
      // filling up carry one (the last of them wakes the pump when everything before it is out).
      this.lastHasCallback = buffered >= this.hub.lowWater;
      // binary: false — a shared Buffer still goes out as a text frame
      if (this.lastHasCallback) ws.send(data, TEXT, this.onWritten);
      else ws.send(data, TEXT);
    }
  }
}
