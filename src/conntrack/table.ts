/**
 * ConntrackTable: the live conntrack entries, indexed so that a packet's tuple finds its entry
 * whichever side of NAT it was captured on. Each entry is reachable by four keys:
 *   orig            the original direction before NAT   (uplink: 10.0.10.5:40000 > 10.0.10.26:8000)
 *   reverse(reply)  the original direction after NAT    (bridge: 10.0.10.5:40000 > 172.17.0.2:80)
 *   reply           the reply direction before de-NAT   (bridge: 172.17.0.2:80 > 10.0.10.5:40000)
 *   reverse(orig)   the reply direction after de-NAT   (uplink: 10.0.10.26:8000 > 10.0.10.5:40000)
 * With both DNAT and SNAT, two more: the packet between the two rewrites, each way (hairpin to
 * one's own published port: 172.17.0.2:x > 172.17.0.2:80 on docker0, before MASQUERADE).
 * Bounded: at most `maxEntries` entries; the least recently updated is evicted and counted.
 */
import type { ConntrackEntry, ConntrackEvent } from '../model/conntrack.js';
import { reverseTuple, tupleKey, type Tuple } from '../model/tuple.js';

export interface TableMatch {
  readonly entry: ConntrackEntry;
  readonly direction: 'orig' | 'reply';
  /** true when the tuple is the NATed form (after DNAT/SNAT for orig, before de-NAT for reply). */
  readonly natted: boolean;
}

interface Slot {
  entry: ConntrackEntry;
  keys: string[];
}

/** Tuple key for matching: ICMP type/code are left out (echo and echo-reply share the id). */
export function matchKey(t: Tuple): string {
  return tupleKey(t);
}

export class ConntrackTable {
  private readonly slots = new Map<string, Slot>();
  /** key -> slot; which of the entry's keys it is is worked out at lookup (no object per key). */
  private readonly index = new Map<string, Slot>();
  readonly maxEntries: number;
  evicted = 0;

  constructor(opts: { maxEntries?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? 262_144;
  }

  get size(): number {
    return this.slots.size;
  }

  get(id: string): ConntrackEntry | undefined {
    return this.slots.get(id)?.entry;
  }

  entries(): IterableIterator<ConntrackEntry> {
    const it = this.slots.values();
    return (function* () {
      for (const s of it) yield s.entry;
    })();
  }

  /** Inserts or replaces an entry; returns the previous version if there was one. */
  upsert(entry: ConntrackEntry): ConntrackEntry | undefined {
    const old = this.slots.get(entry.id);
    if (old) {
      this.unindex(old);
      this.slots.delete(entry.id); // re-insert: Map order = least recently updated first
    }
    const keys: [string, ('orig' | 'reply')?, boolean?][] = [
      [matchKey(entry.orig), 'orig', false],
      [matchKey(reverseTuple(entry.reply)), 'orig', true],
      [matchKey(entry.reply), 'reply', true],
      [matchKey(reverseTuple(entry.orig)), 'reply', false],
    ];
    const o = entry.orig;
    const r = entry.reply;
    const dnat = o.dst !== r.src || o.dport !== r.sport;
    const snat = o.src !== r.dst || o.sport !== r.dport;
    if (dnat && snat) {
      // both: between the two rewrites (after DNAT, before SNAT; after de-SNAT, before de-DNAT).
      // A bridge capture sees these: br_netfilter runs PREROUTING before the bridge device does.
      keys.push([matchKey({ ...o, dst: r.src, dport: r.sport }), 'orig', true]);
      keys.push([matchKey({ ...r, dst: o.src, dport: o.sport }), 'reply', true]);
    }
    const slot: Slot = { entry, keys: [] };
    for (const [k] of keys) {
      if (slot.keys.includes(k)) continue; // without NAT the pairs coincide
      this.index.set(k, slot);
      slot.keys.push(k);
    }
    this.slots.set(entry.id, slot);
    while (this.slots.size > this.maxEntries) {
      const oldest = this.slots.keys().next().value;
      if (oldest === undefined) break;
      this.remove(oldest);
      this.evicted++;
    }
    return old?.entry;
  }

  remove(id: string): ConntrackEntry | undefined {
    const s = this.slots.get(id);
    if (!s) return undefined;
    this.unindex(s);
    this.slots.delete(id);
    return s.entry;
  }

  private unindex(s: Slot): void {
    for (const k of s.keys) {
      if (this.index.get(k) === s) this.index.delete(k);
    }
  }

  /** Applies source events in order. */
  apply(events: readonly ConntrackEvent[]): void {
    for (const ev of events) {
      if (ev.type === 'destroy') this.remove(ev.entry.id);
      else this.upsert(ev.entry);
    }
  }

  /** The entry (and direction) a packet with this tuple belongs to. */
  lookup(t: Tuple): TableMatch | null {
    const s = this.index.get(matchKey(t));
    if (!s) return null;
    const e = s.entry;
    // which key matched: the original direction leaves from the original source (before SNAT)
    // or arrives at the reply's source (after DNAT); everything else is the reply direction
    const same = (a: Tuple, src: string, sport: number, dst: string, dport: number): boolean =>
      a.src === src && a.sport === sport && a.dst === dst && a.dport === dport;
    if (same(t, e.orig.src, e.orig.sport, e.orig.dst, e.orig.dport)) return { entry: e, direction: 'orig', natted: false };
    if (same(t, e.reply.src, e.reply.sport, e.reply.dst, e.reply.dport)) return { entry: e, direction: 'reply', natted: true };
    if (same(t, e.orig.dst, e.orig.dport, e.orig.src, e.orig.sport)) return { entry: e, direction: 'reply', natted: false };
    if (same(t, e.reply.dst, e.reply.dport, e.reply.src, e.reply.sport)) return { entry: e, direction: 'orig', natted: true };
    // between the two rewrites (DNAT and SNAT both): from the original source, or to it
    return { entry: e, direction: t.src === e.orig.src && t.sport === e.orig.sport ? 'orig' : 'reply', natted: true };
  }

  clear(): void {
    this.slots.clear();
    this.index.clear();
  }
}
