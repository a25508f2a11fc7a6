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
 * IPv4 entries are indexed by numbers (packed-key.ts), so that a packet read from the decode view
 * finds its entry without a string being made (lookupPacked).
 */
import type { ConntrackEntry, ConntrackEvent } from '../model/conntrack.js';
import { reverseTuple, tupleKey, type Tuple } from '../model/tuple.js';
import { hash4, packIpv4, protoCode } from './packed-key.js';

export interface TableMatch {
  readonly entry: ConntrackEntry;
  readonly direction: 'orig' | 'reply';
  /** true when the tuple is the NATed form (after DNAT/SNAT for orig, before de-NAT for reply). */
  readonly natted: boolean;
}

/**
 * One entry and how it is indexed. An IPv4 entry is indexed by numbers: its four endpoints packed
 * (addresses as int32) and a bit per key it holds in `index4`; its keys, as (source, destination):
 *   0 orig (oS > oD), 1 reverse(reply) (rD > rS), 2 reply (rS > rD), 3 reverse(orig) (oD > oS),
 *   with DNAT and SNAT both: 4 between the rewrites (oS > rS), 5 the same back (rS > oS).
 * Any other entry (IPv6) is indexed by its string keys in `index`.
 */
class Slot {
  keys: string[] | null = null;
  /** protoCode of the packed entry, -1 when it is indexed by strings. */
  proto = -1;
  oS = 0;
  oSp = 0;
  oD = 0;
  oDp = 0;
  rS = 0;
  rSp = 0;
  rD = 0;
  rDp = 0;
  /** Bit i set: packed key i points at this slot. */
  live = 0;
  /** What a consumer attached to this entry (the correlator: its flow), so a packet finds it without a second lookup. */
  attached: object | null = null;
  constructor(public entry: ConntrackEntry) {}
}

/** Packed key i of a slot as (source, source port, destination, destination port). */
function keySrc(s: Slot, i: number): number {
  return i === 0 || i === 4 ? s.oS : i === 1 ? s.rD : i === 3 ? s.oD : s.rS;
}
function keySport(s: Slot, i: number): number {
  return i === 0 || i === 4 ? s.oSp : i === 1 ? s.rDp : i === 3 ? s.oDp : s.rSp;
}
function keyDst(s: Slot, i: number): number {
  return i === 0 ? s.oD : i === 1 || i === 4 ? s.rS : i === 2 ? s.rD : s.oS;
}
function keyDport(s: Slot, i: number): number {
  return i === 0 ? s.oDp : i === 1 || i === 4 ? s.rSp : i === 2 ? s.rDp : s.oSp;
}
function keyHash(s: Slot, i: number): number {
  return hash4(s.proto, keySrc(s, i), keyDst(s, i), keySport(s, i), keyDport(s, i));
}
function keyIs(s: Slot, i: number, src: number, sport: number, dst: number, dport: number): boolean {
  return keySrc(s, i) === src && keySport(s, i) === sport && keyDst(s, i) === dst && keyDport(s, i) === dport;
}
/** The live key of `s` equal to the tuple, or -1. */
function liveKey(s: Slot, proto: number, src: number, sport: number, dst: number, dport: number): number {
  if (s.proto !== proto) return -1;
  // the six keys of keySrc/keySport/keyDst/keyDport written out: this runs for every packet
  const l = s.live;
  if ((l & 1) !== 0 && s.oS === src && s.oSp === sport && s.oD === dst && s.oDp === dport) return 0;
  if ((l & 2) !== 0 && s.rD === src && s.rDp === sport && s.rS === dst && s.rSp === dport) return 1;
  if ((l & 4) !== 0 && s.rS === src && s.rSp === sport && s.rD === dst && s.rDp === dport) return 2;
  if ((l & 8) !== 0 && s.oD === src && s.oDp === sport && s.oS === dst && s.oSp === dport) return 3;
  if ((l & 16) !== 0 && s.oS === src && s.oSp === sport && s.rS === dst && s.rSp === dport) return 4;
  if ((l & 32) !== 0 && s.rS === src && s.rSp === sport && s.oS === dst && s.oSp === dport) return 5;
  return -1;
}

/** Tuple key for matching: ICMP type/code are left out (echo and echo-reply share the id). */
export function matchKey(t: Tuple): string {
  return tupleKey(t);
}

export class ConntrackTable {
  private readonly slots = new Map<string, Slot>();
  /** string key -> slot (entries that are not packed); which of the entry's keys it is is worked out at lookup. */
  private readonly index = new Map<string, Slot>();
  /** hash4 of a packed key -> the slot(s) holding a key with that hash. */
  private readonly index4 = new Map<number, Slot | Slot[]>();
  readonly maxEntries: number;
  evicted = 0;
  /** The direction and NAT side of the last lookupPacked that found an entry. */
  matchDirection: 'orig' | 'reply' = 'orig';
  matchNatted = false;
  /** The slot the last lookupPacked found (for matchAttached / attachToMatch). */
  private matchSlot: Slot | null = null;

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
    const o = entry.orig;
    const r = entry.reply;
    const dnat = o.dst !== r.src || o.dport !== r.sport;
    const snat = o.src !== r.dst || o.sport !== r.dport;
    const slot = new Slot(entry);
    if (!this.pack(slot, dnat && snat)) {
      const keys: string[] = [matchKey(o), matchKey(reverseTuple(r)), matchKey(r), matchKey(reverseTuple(o))];
      if (dnat && snat) {
        // both: between the two rewrites (after DNAT, before SNAT; after de-SNAT, before de-DNAT).
        // A bridge capture sees these: br_netfilter runs PREROUTING before the bridge device does.
        keys.push(matchKey({ ...o, dst: r.src, dport: r.sport }));
        keys.push(matchKey({ ...r, dst: o.src, dport: o.sport }));
      }
      slot.keys = [];
      for (const k of keys) {
        if (slot.keys.includes(k)) continue; // without NAT the pairs coincide
        this.index.set(k, slot);
        slot.keys.push(k);
      }
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

  /** Indexes an IPv4 entry by numbers; false when it is not one (it is then indexed by strings). */
  private pack(s: Slot, between: boolean): boolean {
    const o = s.entry.orig;
    const r = s.entry.reply;
    if (o.family !== 4 || r.family !== 4 || o.proto !== r.proto) return false;
    const a = [packIpv4(o.src), packIpv4(o.dst), packIpv4(r.src), packIpv4(r.dst)];
    if (a.some(Number.isNaN)) return false;
    s.proto = protoCode(o.proto);
    [s.oS, s.oD, s.rS, s.rD] = a as [number, number, number, number];
    s.oSp = o.sport;
    s.oDp = o.dport;
    s.rSp = r.sport;
    s.rDp = r.dport;
    for (let i = 0; i < (between ? 6 : 4); i++) {
      let dup = false;
      for (let j = 0; j < i && !dup; j++) dup = keyIs(s, j, keySrc(s, i), keySport(s, i), keyDst(s, i), keyDport(s, i));
      if (!dup) this.set4(s, i); // without NAT the pairs coincide
    }
    return true;
  }

  /** Key i of `s` points at `s` now; a slot that held the same key loses it (the newest entry wins). */
  private set4(s: Slot, i: number): void {
    const h = keyHash(s, i);
    const b = this.index4.get(h);
    const src = keySrc(s, i);
    const sport = keySport(s, i);
    const dst = keyDst(s, i);
    const dport = keyDport(s, i);
    for (const t of b === undefined ? [] : Array.isArray(b) ? [...b] : [b]) {
      if (t === s) continue;
      const k = liveKey(t, s.proto, src, sport, dst, dport);
      if (k < 0) continue;
      t.live &= ~(1 << k);
      this.drop4(t, h);
    }
    s.live |= 1 << i;
    const cur = this.index4.get(h);
    if (cur === undefined) this.index4.set(h, s);
    else if (Array.isArray(cur)) {
      if (!cur.includes(s)) cur.push(s);
    } else if (cur !== s) this.index4.set(h, [cur, s]);
  }

  /** Takes `s` out of bucket `h` unless another of its live keys has that hash. */
  private drop4(s: Slot, h: number): void {
    for (let i = 0; i < 6; i++) if ((s.live & (1 << i)) !== 0 && keyHash(s, i) === h) return;
    const cur = this.index4.get(h);
    if (cur === s) this.index4.delete(h);
    else if (Array.isArray(cur)) {
      const rest = cur.filter((x) => x !== s);
      this.index4.set(h, rest.length === 1 ? (rest[0] as Slot) : rest);
    }
  }

  remove(id: string): ConntrackEntry | undefined {
    const s = this.slots.get(id);
    if (!s) return undefined;
    this.unindex(s);
    this.slots.delete(id);
    return s.entry;
  }

  private unindex(s: Slot): void {
    if (s.keys !== null) {
      for (const k of s.keys) {
        if (this.index.get(k) === s) this.index.delete(k);
      }
      return;
    }
    for (let i = 0; i < 6; i++) {
      if ((s.live & (1 << i)) === 0) continue;
      s.live &= ~(1 << i);
      this.drop4(s, keyHash(s, i));
    }
  }

  /** Applies source events in order. */
  apply(events: readonly ConntrackEvent[]): void {
    for (const ev of events) {
      if (ev.type === 'destroy') this.remove(ev.entry.id);
      else this.upsert(ev.entry);
    }
  }

  /**
   * The entry an IPv4 packet belongs to, from its headers as numbers (no allocation): its
   * direction and NAT side are left in `matchDirection` and `matchNatted`.
   */
  lookupPacked(proto: number, src: number, dst: number, sport: number, dport: number): ConntrackEntry | undefined {
    const b = this.index4.get(hash4(proto, src, dst, sport, dport));
    if (b === undefined) return undefined;
    if (!Array.isArray(b)) return liveKey(b, proto, src, sport, dst, dport) >= 0 ? this.found(b, src, sport, dst, dport) : undefined;
    for (const s of b) if (liveKey(s, proto, src, sport, dst, dport) >= 0) return this.found(s, src, sport, dst, dport);
    return undefined;
  }

  /** Which key matched: the original direction leaves from the original source (before SNAT) or arrives at the reply's source (after DNAT). */
  private found(s: Slot, src: number, sport: number, dst: number, dport: number): ConntrackEntry {
    this.matchSlot = s;
    if (keyIs(s, 0, src, sport, dst, dport)) this.setMatch('orig', false);
    else if (keyIs(s, 2, src, sport, dst, dport)) this.setMatch('reply', true);
    else if (keyIs(s, 3, src, sport, dst, dport)) this.setMatch('reply', false);
    else if (keyIs(s, 1, src, sport, dst, dport)) this.setMatch('orig', true);
    // between the two rewrites (DNAT and SNAT both): from the original source, or to it
    else this.setMatch(src === s.oS && sport === s.oSp ? 'orig' : 'reply', true);
    return s.entry;
  }

  /** What was attached to the entry the last lookupPacked found (null: nothing yet). */
  get matchAttached(): object | null {
    return this.matchSlot === null ? null : this.matchSlot.attached;
  }

  /** Attaches `o` to the entry the last lookupPacked found; it goes with the entry (a new version of the entry starts empty). */
  attachToMatch(o: object): void {
    if (this.matchSlot !== null) this.matchSlot.attached = o;
  }

  private setMatch(direction: 'orig' | 'reply', natted: boolean): void {
    this.matchDirection = direction;
    this.matchNatted = natted;
  }

  /** The entry (and direction) a packet with this tuple belongs to. */
  lookup(t: Tuple): TableMatch | null {
    if (t.family === 4) {
      const src = packIpv4(t.src);
      const dst = packIpv4(t.dst);
      if (!Number.isNaN(src) && !Number.isNaN(dst)) {
        const e = this.lookupPacked(protoCode(t.proto), src, dst, t.sport, t.dport);
        return e === undefined ? null : { entry: e, direction: this.matchDirection, natted: this.matchNatted };
      }
    }
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
    this.index4.clear();
  }
}
