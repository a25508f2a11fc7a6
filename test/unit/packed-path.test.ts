/**
 * The allocation-free path of a packet of a known flow: the conntrack table's numeric IPv4 index
 * answers every lookup as the string-keyed index it replaces would (compared with that index,
 * written out here, on random tables), and the correlator counting straight from the decode view
 * emits exactly the events the Observation path emits for the same frames, while a packet of an
 * existing leg makes no Observation and no new leg.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hash4 } from '../../src/conntrack/packed-key.js';
import { ConntrackTable } from '../../src/conntrack/table.js';
import { Correlator } from '../../src/correlate/correlator.js';
import type { FlowState } from '../../src/correlate/flow-state.js';
import { decodeFrame, FragmentPorts, observationFromView, PacketView, SkipCounters } from '../../src/decode/index.js';
import type { ConntrackEntry } from '../../src/model/conntrack.js';
import type { JourneyEvent } from '../../src/model/events.js';
import type { FrameBatch } from '../../src/model/observation.js';
import { reverseTuple, type Tuple, tupleKey } from '../../src/model/tuple.js';
import { intakeBatch } from '../../src/pipeline/frame-intake.js';

const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });
const entry = (id: string, orig: Tuple, reply: Tuple): ConntrackEntry => ({
  id,
  orig,
  reply,
  status: ['SEEN_REPLY', 'ASSURED', 'CONFIRMED'],
  tcpState: 'ESTABLISHED',
  mark: 0,
  zone: 0,
  timeout: 100,
  source: 'netlink',
});

/** The string-keyed index as it was: the reference the numeric one must agree with. */
class StringTable {
  private readonly slots = new Map<string, { entry: ConntrackEntry; keys: string[] }>();
  private readonly index = new Map<string, { entry: ConntrackEntry; keys: string[] }>();
  upsert(e: ConntrackEntry): void {
    this.remove(e.id);
    const o = e.orig;
    const r = e.reply;
    const keys = [tupleKey(o), tupleKey(reverseTuple(r)), tupleKey(r), tupleKey(reverseTuple(o))];
    if ((o.dst !== r.src || o.dport !== r.sport) && (o.src !== r.dst || o.sport !== r.dport)) {
      keys.push(tupleKey({ ...o, dst: r.src, dport: r.sport }), tupleKey({ ...r, dst: o.src, dport: o.sport }));
    }
    const slot = { entry: e, keys: [] as string[] };
    for (const k of keys) {
      if (slot.keys.includes(k)) continue;
      this.index.set(k, slot);
      slot.keys.push(k);
    }
    this.slots.set(e.id, slot);
  }
  remove(id: string): void {
    const s = this.slots.get(id);
    if (!s) return;
    for (const k of s.keys) if (this.index.get(k) === s) this.index.delete(k);
    this.slots.delete(id);
  }
  lookup(t: Tuple): { id: string; direction: string; natted: boolean } | null {
    const s = this.index.get(tupleKey(t));
    if (!s) return null;
    const e = s.entry;
    const same = (src: string, sport: number, dst: string, dport: number): boolean =>
      t.src === src && t.sport === sport && t.dst === dst && t.dport === dport;
    const m = (direction: string, natted: boolean) => ({ id: e.id, direction, natted });
    if (same(e.orig.src, e.orig.sport, e.orig.dst, e.orig.dport)) return m('orig', false);
    if (same(e.reply.src, e.reply.sport, e.reply.dst, e.reply.dport)) return m('reply', true);
    if (same(e.orig.dst, e.orig.dport, e.orig.src, e.orig.sport)) return m('reply', false);
    if (same(e.reply.dst, e.reply.dport, e.reply.src, e.reply.sport)) return m('orig', true);
    return m(t.src === e.orig.src && t.sport === e.orig.sport ? 'orig' : 'reply', true);
  }
}

describe('the numeric IPv4 index of the conntrack table', () => {
  const addr = fc.constantFrom('10.0.0.1', '10.0.0.2', '172.17.0.2', '172.17.0.3', '255.255.255.255', '0.0.0.0');
  const port = fc.constantFrom(80, 8000, 40000, 40001);
  const tuple = fc.record({ src: addr, sport: port, dst: addr, dport: port, proto: fc.constantFrom('tcp' as const, 'udp' as const) });
  const op = fc.record({
    kind: fc.constantFrom('upsert', 'upsert', 'upsert', 'remove'),
    id: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
    o: tuple,
    r: tuple,
  });
  it('answers every lookup as the string-keyed index does (random entries with and without NAT, replaced, removed, keys taken over)', () => {
    let compared = 0;
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), fc.array(tuple, { minLength: 20, maxLength: 20 }), (ops, probes) => {
        const t = new ConntrackTable();
        const ref = new StringTable();
        const seen: Tuple[] = [];
        for (const x of ops) {
          if (x.kind === 'remove') {
            t.remove(x.id);
            ref.remove(x.id);
            continue;
          }
          const protoNum = x.o.proto === 'tcp' ? 6 : 17;
          const o: Tuple = { family: 4, protoNum, ...x.o };
          const r: Tuple = { family: 4, protoNum, ...x.r, proto: x.o.proto };
          t.upsert(entry(x.id, o, r));
          ref.upsert(entry(x.id, o, r));
          seen.push(o, r, reverseTuple(o), reverseTuple(r), { ...o, dst: r.src, dport: r.sport }, { ...r, dst: o.src, dport: o.sport });
        }
        for (const p of [...seen, ...probes.map((q): Tuple => ({ family: 4, protoNum: q.proto === 'tcp' ? 6 : 17, ...q }))]) {
          const got = t.lookup(p);
          expect(got === null ? null : { id: got.entry.id, direction: got.direction, natted: got.natted }).toEqual(ref.lookup(p));
          compared++;
        }
      }),
      { numRuns: 300 },
    );
    expect(compared).toBeGreaterThan(5000);
  });

  it('gives a tuple and its reverse one Map key, and different keys to nearly all other tuples', () => {
    const keys = new Set<number>();
    let n = 0;
    for (let a = 0; a < 64; a++)
      for (let p = 0; p < 64; p++) {
        const src = 0x0a000000 | a | 0;
        const dst = 0xac110002 | 0 | 0;
        const sport = 40000 + p;
        expect(hash4(0, src, dst, sport, 80)).toBe(hash4(0, dst, src, 80, sport));
        expect(hash4(0, src, dst, sport, 80)).not.toBe(hash4(1, src, dst, sport, 80));
        keys.add(hash4(0, src, dst, sport, 80));
        n++;
      }
    // 4,096 tuples that differ in one address byte and the port: (almost) no two share a key
    expect(keys.size).toBeGreaterThan(n - 4);
  });

  it('keeps IPv6 entries and addresses not spelt as a dotted quad on string keys', () => {
    const t = new ConntrackTable();
    const o6: Tuple = { family: 6, proto: 'udp', protoNum: 17, src: 'fd00::1', dst: 'fd00::2', sport: 5000, dport: 53 };
    t.upsert(entry('6', o6, reverseTuple(o6)));
    expect(t.lookup(reverseTuple(o6))).toMatchObject({ direction: 'reply', entry: { id: '6' } });
    const odd = tcp('010.0.0.1', 1, '10.0.0.2', 2); // not the one spelling: never packed, still found by itself
    t.upsert(entry('odd', odd, reverseTuple(odd)));
    expect(t.lookup(odd)?.entry.id).toBe('odd');
    expect(t.lookup(tcp('10.0.0.1', 1, '10.0.0.2', 2))).toBeNull();
    t.remove('6');
    expect(t.lookup(o6)).toBeNull();
  });
});

// --- frames: Ethernet + IPv4 + TCP
function frame(src: string, sport: number, dst: string, dport: number, id: number, seq: number): Buffer {
  const b = Buffer.alloc(14 + 20 + 20 + 4);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(b.length - 14, 16);
  b.writeUInt16BE(id, 18);
  b[22] = 64;
  b[23] = 6;
  b.writeUInt16BE((id * 7) & 0xffff, 24);
  Buffer.from(src.split('.').map(Number)).copy(b, 26);
  Buffer.from(dst.split('.').map(Number)).copy(b, 30);
  b.writeUInt16BE(sport, 34);
  b.writeUInt16BE(dport, 36);
  b.writeUInt32BE(seq, 38);
  b[46] = 0x50;
  b[47] = 0x18;
  return b;
}
function batch(iface: string, frames: { f: Buffer; us: number }[]): FrameBatch {
  const data = Buffer.concat(frames.map((x) => x.f));
  const offsets = new Uint32Array(frames.length);
  let o = 0;
  frames.forEach((x, i) => {
    offsets[i] = o;
    o += x.f.length;
  });
  const lengths = Uint32Array.from(frames.map((x) => x.f.length));
  return {
    iface,
    linkType: 1,
    data,
    offsets,
    lengths,
    wireLengths: lengths,
    timesUs: Float64Array.from(frames.map((x) => x.us)),
    count: frames.length,
  };
}

const T0 = 1_700_000_000_000;
/** Two NATed connections to a published port (one to its own port: DNAT and SNAT both), both legs, both ways, true copies, a packet without an entry. */
function scenario(): { entries: ConntrackEntry[]; batches: FrameBatch[] } {
  const a = entry('1', tcp('10.0.10.5', 40000, '10.0.10.26', 8000), tcp('172.17.0.2', 80, '10.0.10.5', 40000));
  const h = entry('2', tcp('172.17.0.3', 50000, '10.0.10.26', 8000), tcp('172.17.0.2', 80, '172.17.0.1', 50000));
  const batches: FrameBatch[] = [];
  for (let r = 0; r < 5; r++) {
    const us = T0 * 1000 + r * 10_000;
    batches.push(
      batch('eth0', [
        { f: frame('10.0.10.5', 40000, '10.0.10.26', 8000, r * 4 + 1, r), us },
        { f: frame('10.0.10.26', 8000, '10.0.10.5', 40000, r * 4 + 2, r), us: us + 300 },
        { f: frame('10.9.9.9', 1234, '10.0.10.26', 22, r, r), us: us + 400 }, // no entry: held, then a flow of its own
      ]),
      batch('docker0', [
        { f: frame('10.0.10.5', 40000, '172.17.0.2', 80, r * 4 + 1, r), us: us + 50 },
        { f: frame('10.0.10.5', 40000, '172.17.0.2', 80, r * 4 + 1, r), us: us + 60 }, // a true copy (promiscuous bridge)
        { f: frame('172.17.0.2', 80, '10.0.10.5', 40000, r * 4 + 2, r), us: us + 200 },
        { f: frame('172.17.0.3', 50000, '10.0.10.26', 8000, r * 4 + 3, r), us: us + 500 },
        { f: frame('172.17.0.3', 50000, '172.17.0.2', 80, r * 4 + 3, r), us: us + 520 }, // between DNAT and SNAT
        { f: frame('172.17.0.1', 50000, '172.17.0.2', 80, r * 4 + 3, r), us: us + 540 },
        { f: frame('172.17.0.2', 80, '172.17.0.1', 50000, r * 4 + 4, r), us: us + 600 },
      ]),
    );
  }
  return { entries: [a, h], batches };
}

function run(fast: boolean): { events: JourneyEvent[]; correlator: Correlator; fastCounted: number } {
  const events: JourneyEvent[] = [];
  const c = new Correlator({ emit: (e) => events.push(e), startDelayMs: 0, updateIntervalMs: 10 });
  const { entries, batches } = scenario();
  c.onConntrack(entries.map((entry) => ({ type: 'new' as const, time: T0, entry })));
  const state = { view: new PacketView(), skips: new SkipCounters(), fragments: new FragmentPorts() };
  const tally = { delivered: 0, undecodable: 0, nonIp: 0 };
  let fastCounted = 0;
  const onPacket = c.onPacket.bind(c);
  c.onPacket = (v, iface) => {
    const ok = onPacket(v, iface);
    if (ok) fastCounted++;
    return ok;
  };
  for (const b of batches) {
    if (fast) intakeBatch(b, state, c, tally);
    else
      for (let i = 0; i < b.count; i++) {
        if (!decodeFrame(b, i, state.view)) continue;
        const o = observationFromView(state.view, b.iface);
        if (o) c.onObservation(o);
      }
    c.tick(b.timesUs[b.count - 1]! / 1000);
  }
  c.flush();
  return { events, correlator: c, fastCounted };
}

describe('counting from the decode view', () => {
  it('emits the same events and statistics as the Observation path, and makes no Observation for a packet of an existing leg', () => {
    const slow = run(false);
    const fast = run(true);
    expect(fast.events.length).toBeGreaterThan(4);
    expect(JSON.stringify(fast.events)).toBe(JSON.stringify(slow.events));
    expect(fast.correlator.stats()).toEqual(slow.correlator.stats());
    // 5 rounds x 9 frames of the two connections (8 legs and a copy): the first of each leg makes it
    // (an Observation), the rest is counted from the view (the copies too: left out there)
    expect(fast.fastCounted).toBe(5 * 9 - 8);
    expect(fast.correlator.stats().sameTwice).toBe(5);
    expect(slow.fastCounted).toBe(0);
  });

  it('keeps the leg it found: a later packet of a leg changes its counters, no leg is added', () => {
    const c = new Correlator({ emit: () => undefined, startDelayMs: 0 });
    const { entries } = scenario();
    c.onConntrack([{ type: 'new', time: T0, entry: entries[0]! }]);
    const v = new PacketView();
    const b = batch('eth0', [
      { f: frame('10.0.10.5', 40000, '10.0.10.26', 8000, 1, 1), us: T0 * 1000 },
      { f: frame('10.0.10.5', 40000, '10.0.10.26', 8000, 2, 2), us: T0 * 1000 + 5000 },
    ]);
    decodeFrame(b, 0, v);
    expect(c.onPacket(v, 'eth0')).toBe(false); // the first packet of the leg: an Observation makes the leg
    c.onObservation(observationFromView(v, 'eth0')!);
    // the correlator's own state (private): the flow and its leg are what must not be remade
    const flows = (c as unknown as { flows: Map<string, FlowState> }).flows;
    const flow = flows.get('1')!;
    const leg = flow.firstLeg;
    const used = flow.legStore.size;
    decodeFrame(b, 1, v);
    expect(c.onPacket(v, 'eth0')).toBe(true);
    expect(flows.get('1')).toBe(flow);
    expect(flow.firstLeg).toBe(leg);
    expect(flow.legStore.list(flow.firstLeg)).toEqual([leg]); // no new leg
    expect(flow.legStore.size).toBe(used);
    const after = c.snapshot()[0]!;
    expect(after.legs).toHaveLength(1);
    expect(after.legs[0]!.tuple).toEqual(tcp('10.0.10.5', 40000, '10.0.10.26', 8000));
    expect(after.legs[0]!.packets).toBe(2);
    expect(after.legs[0]!.lastUs).toBe(T0 * 1000 + 5000);
  });

  it('shows each leg with the tuple its packets had, also when the leg keeps none of its own (one of the entry forms)', () => {
    const { events } = run(true);
    const ends = events.filter((e): e is Extract<JourneyEvent, { type: 'flow.end' }> => e.type === 'flow.end');
    const legs = (id: string) =>
      ends
        .find((e) => e.flow.id === id)!
        .flow.legs.map((l) => `${l.iface} ${l.direction} ${l.tuple.proto} ${l.tuple.src}:${l.tuple.sport}>${l.tuple.dst}:${l.tuple.dport}`)
        .sort();
    expect(legs('1')).toEqual([
      'docker0 orig tcp 10.0.10.5:40000>172.17.0.2:80',
      'docker0 reply tcp 172.17.0.2:80>10.0.10.5:40000',
      'eth0 orig tcp 10.0.10.5:40000>10.0.10.26:8000',
      'eth0 reply tcp 10.0.10.26:8000>10.0.10.5:40000',
    ]);
    // the self-hairpin: before DNAT, between DNAT and SNAT, after both, and the reply
    expect(legs('2')).toEqual([
      'docker0 orig tcp 172.17.0.1:50000>172.17.0.2:80',
      'docker0 orig tcp 172.17.0.3:50000>10.0.10.26:8000',
      'docker0 orig tcp 172.17.0.3:50000>172.17.0.2:80',
      'docker0 reply tcp 172.17.0.2:80>172.17.0.1:50000',
    ]);
  });
});
