/**
 * The legs of live flows, kept as columns of typed arrays: a leg is a number into them. A flow
 * holds the number of its first leg, and each leg that of the next, in the order they were seen.
 * A leg takes 52 bytes here; as an object with its two times boxed it took ~150, four times a
 * flow (scripts/bench/watch-memory.mjs). A flow's legs are freed when it ends, and freed numbers
 * are used again (a free list through `next`).
 */
import type { FlowLeg } from '../model/events.js';
import type { Tuple } from '../model/tuple.js';

/** No leg: the end of a flow's list, or a flow without legs. */
export const NO_LEG = -1;

export class LegStore {
  private cap = 0;
  /** Numbers below this were handed out at least once. */
  private top = 0;
  private freeHead = NO_LEG;
  /** Legs in use. */
  size = 0;
  /** The next leg of the same flow (or of the free list). */
  next = new Int32Array(0);
  /**
   * bit 0: the reply direction; bits 1-3: form + 1 (0: the leg keeps its own tuple in `tuples`);
   * bits 4 and up: the interface, as a number into `ifaceNames`.
   */
  private meta = new Int32Array(0);
  /** Fingerprint of the leg's latest packet (-1: none; legs.ts isCopyOf). */
  lastFp = new Int32Array(0);
  /** The tuple as int32s (IPv4 addresses; ports as sport << 16 | dport); 0, 0 and the ports for IPv6. */
  src4 = new Int32Array(0);
  dst4 = new Int32Array(0);
  ports4 = new Int32Array(0);
  firstUs = new Float64Array(0);
  lastUs = new Float64Array(0);
  packets = new Float64Array(0);
  bytes = new Float64Array(0);
  /** The tuples of legs whose tuple is none of their entry's forms (IPv6 without an entry, ICMP...). */
  private readonly tuples = new Map<number, Tuple>();
  private readonly ifaceNames: string[] = [];
  private readonly ifaceIds = new Map<string, number>();

  /** A new leg, counted from 0 packets; appended to the list that starts at `first` (its new first leg is returned). */
  add(
    first: number,
    iface: string,
    direction: 'orig' | 'reply',
    tuple: Tuple | null,
    form: number,
    timeUs: number,
    src4: number,
    dst4: number,
    ports4: number,
  ): { first: number; leg: number } {
    const l = this.take();
    let id = this.ifaceIds.get(iface);
    if (id === undefined) {
      id = this.ifaceNames.length;
      this.ifaceNames.push(iface);
      this.ifaceIds.set(iface, id);
    }
    this.meta[l] = (id << 4) | ((tuple === null ? form + 1 : 0) << 1) | (direction === 'reply' ? 1 : 0);
    if (tuple !== null) this.tuples.set(l, tuple);
    this.next[l] = NO_LEG;
    this.lastFp[l] = -1;
    this.src4[l] = src4;
    this.dst4[l] = dst4;
    this.ports4[l] = ports4;
    this.firstUs[l] = timeUs;
    this.lastUs[l] = timeUs;
    this.packets[l] = 0;
    this.bytes[l] = 0;
    if (first === NO_LEG) return { first: l, leg: l };
    let t = first;
    while (this.next[t] !== NO_LEG) t = this.next[t] as number;
    this.next[t] = l;
    return { first, leg: l };
  }

  /** Frees the list that starts at `first`. */
  free(first: number): void {
    let l = first;
    while (l !== NO_LEG) {
      const n = this.next[l] as number;
      this.tuples.delete(l);
      this.next[l] = this.freeHead;
      this.freeHead = l;
      this.size--;
      l = n;
    }
  }

  iface(l: number): string {
    return this.ifaceNames[(this.meta[l] as number) >>> 4] as string;
  }

  direction(l: number): 'orig' | 'reply' {
    return ((this.meta[l] as number) & 1) === 1 ? 'reply' : 'orig';
  }

  /** The entry form the leg's tuple is (legs.ts legTuple), or -1 when it keeps a tuple of its own. */
  form(l: number): number {
    return (((this.meta[l] as number) >> 1) & 7) - 1;
  }

  /** The leg's own tuple (null when it is one of its entry's forms). */
  ownTuple(l: number): Tuple | null {
    return this.tuples.get(l) ?? null;
  }

  /** The legs of a list, in the order they were seen. */
  list(first: number): number[] {
    const out: number[] = [];
    for (let l = first; l !== NO_LEG; l = this.next[l] as number) out.push(l);
    return out;
  }

  /** The leg as events show it, with the tuple it was seen with. */
  view(l: number, tuple: Tuple): FlowLeg {
    return {
      iface: this.iface(l),
      direction: this.direction(l),
      tuple,
      firstUs: this.firstUs[l] as number,
      lastUs: this.lastUs[l] as number,
      packets: this.packets[l] as number,
      bytes: this.bytes[l] as number,
    };
  }

  private take(): number {
    this.size++;
    if (this.freeHead !== NO_LEG) {
      const l = this.freeHead;
      this.freeHead = this.next[l] as number;
      return l;
    }
    if (this.top === this.cap) this.grow();
    return this.top++;
  }

  /** A quarter larger (a doubling would leave up to half of the columns unused). */
  private grow(): void {
    const cap = Math.max(256, Math.ceil(this.cap * 1.25));
    const i32 = (a: Int32Array) => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    const f64 = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.next = i32(this.next);
    this.meta = i32(this.meta);
    this.lastFp = i32(this.lastFp);
    this.src4 = i32(this.src4);
    this.dst4 = i32(this.dst4);
    this.ports4 = i32(this.ports4);
    this.firstUs = f64(this.firstUs);
    this.lastUs = f64(this.lastUs);
    this.packets = f64(this.packets);
    this.bytes = f64(this.bytes);
    this.cap = cap;
  }
}
