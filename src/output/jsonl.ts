/**
 * JSON lines: one JourneyEvent per line, exactly the objects `journey serve` streams
 * (schema docs/event-schema.json). The writer never holds unbounded memory: when the output is
 * slower than the events (a full pipe), it buffers up to `maxBuffered` lines, then counts what it
 * drops and reports it in band with a `lost` event as soon as the output drains.
 * Lines written in one turn of the event loop go out as one write (at the end of the turn, or at
 * once past `chunkBytes`): thousands of flow events a second cost a few writes, not a system call
 * each (stdout redirected to a file is written synchronously by Node).
 */
import type { Writable } from 'node:stream';
import { SCHEMA_VERSION, type JourneyEvent } from '../model/events.js';
import { eventJson } from '../model/event-json.js';

export function formatJsonLine(ev: JourneyEvent): string {
  return `${eventJson(ev)}\n`;
}

export class JsonLinesWriter {
  private blocked = false;
  private buffered: string[] = [];
  lost = 0;
  written = 0;
  private lastSeq = 0;
  /** Lines of this turn not yet handed to the stream, and how many. */
  private pending = '';
  private pendingLines = 0;
  private scheduled = false;
  private readonly endOfTurn = (): void => {
    this.scheduled = false;
    this.handOver();
  };

  constructor(
    private readonly out: Writable,
    private readonly maxBuffered = 10_000,
    private readonly chunkBytes = 64 * 1024,
  ) {
    out.on('drain', () => this.drain());
    out.on('error', () => {
      /* EPIPE (reader gone): the caller stops on its own */
    });
  }

  write(ev: JourneyEvent): void {
    this.lastSeq = ev.seq;
    const line = formatJsonLine(ev);
    if (this.blocked) {
      if (this.buffered.length >= this.maxBuffered) this.lost++;
      else this.buffered.push(line);
      return;
    }
    this.pending += line;
    this.pendingLines++;
    if (this.pending.length >= this.chunkBytes) this.handOver();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.endOfTurn);
    }
  }

  /** Hands this turn's lines to the stream as one write. */
  private handOver(): void {
    if (this.pendingLines === 0) return;
    const chunk = this.pending;
    this.written += this.pendingLines;
    this.pending = '';
    this.pendingLines = 0;
    if (!this.out.write(chunk)) this.blocked = true;
  }

  private drain(): void {
    this.blocked = false;
    if (this.lost > 0) {
      const lostEv: JourneyEvent = { v: SCHEMA_VERSION, seq: this.lastSeq, time: Date.now(), type: 'lost', count: this.lost };
      this.lost = 0;
      this.buffered.push(formatJsonLine(lostEv));
    }
    while (this.buffered.length > 0 && !this.blocked) {
      const line = this.buffered.shift() as string;
      this.written++;
      if (!this.out.write(line)) this.blocked = true;
    }
  }

  /** Resolves when everything buffered has been handed to the stream. */
  async flush(): Promise<void> {
    if (!this.blocked) this.handOver();
    while (this.buffered.length > 0 || this.blocked) {
      await new Promise<void>((r) => setTimeout(r, 10));
      if (!this.blocked) this.drain();
    }
  }
}
