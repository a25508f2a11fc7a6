/**
 * Packets waiting for their conntrack entry (captures can be ahead of conntrack events): bounded,
 * by packets and by bytes on the wire; what does not fit is counted. Packets come out in the order
 * they came in, also when they wait under different keys (both directions of one connection).
 */
import type { Observation } from '../model/observation.js';

export interface Held {
  readonly obs: Observation;
  readonly atMs: number;
  readonly key: string;
  /** Arrival order. */
  readonly seq: number;
  done: boolean;
}

export class HoldQueue {
  private queue: Held[] = [];
  private head = 0;
  private readonly byKey = new Map<string, Held[]>();
  private seq = 0;
  /** Packets and wire bytes held now. */
  size = 0;
  bytes = 0;

  constructor(
    private readonly maxPackets: number,
    private readonly maxBytes: number,
  ) {}

  /** Holds a packet; false when the queue is full (the caller counts it). */
  hold(obs: Observation, key: string, atMs: number): boolean {
    if (this.size >= this.maxPackets || this.bytes + obs.wireLen > this.maxBytes) return false;
    const h: Held = { obs, atMs, key, seq: this.seq++, done: false };
    this.queue.push(h);
    this.size++;
    this.bytes += obs.wireLen;
    const list = this.byKey.get(key);
    if (list) list.push(h);
    else this.byKey.set(key, [h]);
    return true;
  }

  private release(h: Held): void {
    h.done = true;
    this.size--;
    this.bytes -= h.obs.wireLen;
  }

  /** Takes every packet held under any of `keys`, in arrival order. */
  take(keys: readonly string[]): Held[] {
    if (this.size === 0) return [];
    const out: Held[] = [];
    for (const k of keys) {
      const list = this.byKey.get(k);
      if (!list) continue;
      this.byKey.delete(k);
      for (const h of list) {
        if (h.done) continue;
        this.release(h);
        out.push(h);
      }
    }
    if (out.length > 1) out.sort((a, b) => a.seq - b.seq);
    return out;
  }

  /** Takes the packets held at least `holdMs` at `nowMs` (all of them with Infinity), oldest first. */
  expire(nowMs: number, holdMs: number): Held[] {
    return this.takeOldest((h) => nowMs - h.atMs < holdMs);
  }

  /** Takes the oldest `n` packets still held, whatever their age (the queue is full). */
  expireOldest(n: number): Held[] {
    let left = n;
    return this.takeOldest(() => left-- <= 0);
  }

  private takeOldest(stop: (h: Held) => boolean): Held[] {
    const out: Held[] = [];
    while (this.head < this.queue.length) {
      const h = this.queue[this.head] as Held;
      if (!h.done && stop(h)) break;
      this.head++;
      if (h.done) continue;
      this.release(h);
      const list = this.byKey.get(h.key);
      if (list) {
        const i = list.indexOf(h);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) this.byKey.delete(h.key);
      }
      out.push(h);
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return out;
  }
}
