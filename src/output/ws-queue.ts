/**
 * A client's bounded send queue: at most `maxItems` messages and `maxBytes` bytes. Pushing into a
 * full queue drops the OLDEST messages (a live view wants the newest) and counts them; the count
 * (and the seq range of the dropped events) is what the client is told in its `lost` event.
 */
export interface QueueItem {
  /**
   * The message (sent as a text frame): a string, or the same UTF-8 Buffer shared by every client
   * it goes to (encoded once instead of once per client). Sizes count string length or bytes.
   */
  readonly data: string | Buffer;
  /** seq of the event, or -1 for control messages. */
  readonly seq: number;
}

export class BoundedQueue {
  private readonly items: (QueueItem | undefined)[];
  private head = 0;
  private count = 0;
  private byteCount = 0;
  /** Dropped since the last `takeLost()`. */
  private lostCount = 0;
  private lostFirstSeq = -1;
  private lostLastSeq = -1;
  /** Dropped over the queue's whole life. */
  lostTotal = 0;

  constructor(
    readonly maxItems: number,
    readonly maxBytes: number,
  ) {
    if (!(maxItems >= 1) || !(maxBytes >= 1)) throw new RangeError('queue limits must be >= 1');
    this.items = new Array<QueueItem | undefined>(maxItems);
  }

  get length(): number {
    return this.count;
  }
  get bytes(): number {
    return this.byteCount;
  }
  get lost(): number {
    return this.lostCount;
  }

  push(item: QueueItem): void {
    const size = item.data.length;
    if (size > this.maxBytes) {
      this.countLost(item.seq);
      return;
    }
    while (this.count >= this.maxItems || (this.count > 0 && this.byteCount + size > this.maxBytes)) {
      const old = this.shift();
      if (old !== undefined) this.countLost(old.seq);
    }
    this.items[(this.head + this.count) % this.maxItems] = item;
    this.count++;
    this.byteCount += size;
  }

  shift(): QueueItem | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.maxItems;
    this.count--;
    if (item !== undefined) this.byteCount -= item.data.length;
    return item;
  }

  /** Returns and resets what was lost since the last call. */
  takeLost(): { count: number; firstSeq: number; lastSeq: number } {
    const r = { count: this.lostCount, firstSeq: this.lostFirstSeq, lastSeq: this.lostLastSeq };
    this.lostCount = 0;
    this.lostFirstSeq = -1;
    this.lostLastSeq = -1;
    return r;
  }

  clear(): void {
    while (this.count > 0) this.shift();
  }

  private countLost(seq: number): void {
    this.lostCount++;
    this.lostTotal++;
    if (seq >= 0) {
      if (this.lostFirstSeq < 0) this.lostFirstSeq = seq;
      this.lostLastSeq = seq;
    }
  }
}
