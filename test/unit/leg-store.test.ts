/**
 * The leg store: legs as numbers into typed-array columns, a flow's legs in the order they were
 * seen, freed when the flow ends and used again, and kept whole when the columns grow.
 */
import { describe, expect, it } from 'vitest';
import { Correlator } from '../../src/correlate/correlator.js';
import type { FlowState } from '../../src/correlate/flow-state.js';
import { LegStore, NO_LEG } from '../../src/correlate/leg-store.js';
import type { ConntrackEntry } from '../../src/model/conntrack.js';
import type { Tuple } from '../../src/model/tuple.js';

const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });
const T0 = 1_700_000_000_000;

describe('LegStore', () => {
  it("keeps a flow's legs in the order they were seen, each with its interface, direction, form or own tuple", () => {
    const s = new LegStore();
    const own = tcp('fd00::1', 1, 'fd00::2', 2);
    let first = NO_LEG;
    const a = s.add(first, 'eth0', 'orig', null, 0, 10, 1, 2, 3);
    first = a.first;
    const b = s.add(first, 'docker0', 'reply', own, -1, 20, 0, 0, 4);
    const c = s.add(b.first, 'veth1', 'orig', null, 5, 30, 7, 8, 9);
    expect(c.first).toBe(a.leg);
    expect(s.list(first)).toEqual([a.leg, b.leg, c.leg]);
    expect([s.iface(a.leg), s.direction(a.leg), s.form(a.leg), s.ownTuple(a.leg)]).toEqual(['eth0', 'orig', 0, null]);
    expect([s.iface(b.leg), s.direction(b.leg), s.form(b.leg), s.ownTuple(b.leg)]).toEqual(['docker0', 'reply', -1, own]);
    expect([s.iface(c.leg), s.direction(c.leg), s.form(c.leg)]).toEqual(['veth1', 'orig', 5]);
    expect([s.src4[c.leg], s.dst4[c.leg], s.ports4[c.leg], s.firstUs[c.leg], s.lastUs[c.leg], s.lastFp[c.leg]]).toEqual([7, 8, 9, 30, 30, -1]);
    expect(s.size).toBe(3);
  });

  it('frees a list and hands its numbers out again; what it keeps survives the columns growing', () => {
    const s = new LegStore();
    const lists: number[] = [];
    for (let i = 0; i < 1000; i++) {
      let first = NO_LEG;
      for (let k = 0; k < 3; k++) first = s.add(first, `if${k}`, k === 1 ? 'reply' : 'orig', null, k, i * 10 + k, i, -i, k).first;
      s.packets[first] = i;
      lists.push(first);
    }
    expect(s.size).toBe(3000);
    for (let i = 0; i < 1000; i += 2) s.free(lists[i] as number);
    expect(s.size).toBe(1500);
    const reused = new Set<number>();
    for (let i = 0; i < 500; i++) for (const l of s.list(s.add(NO_LEG, 'x', 'orig', null, 0, 0, 0, 0, 0).first)) reused.add(l);
    expect(s.size).toBe(2000);
    // the freed numbers came back: none beyond those handed out before
    expect(Math.max(...reused)).toBeLessThan(3000);
    for (let i = 1; i < 1000; i += 2) {
      const legs = s.list(lists[i] as number);
      expect(legs.map((l) => [s.iface(l), s.direction(l), s.form(l), s.src4[l], s.dst4[l], s.ports4[l]])).toEqual([
        ['if0', 'orig', 0, i, -i, 0],
        ['if1', 'reply', 1, i, -i, 1],
        ['if2', 'orig', 2, i, -i, 2],
      ]);
      expect(s.packets[lists[i] as number]).toBe(i);
      expect(s.firstUs[legs[2] as number]).toBe(i * 10 + 2);
    }
  });
});

describe('the correlator frees the legs of the flows that end', () => {
  it('a thousand NATed flows of four legs each: 4,000 legs while they live, none once they ended, and the numbers are used again', () => {
    const c = new Correlator({ emit: () => undefined, startDelayMs: 0, destroyGraceMs: 0 });
    const store = (c as unknown as { legStore: LegStore }).legStore;
    const entries: ConntrackEntry[] = [];
    const round = (base: number): void => {
      entries.length = 0;
      for (let i = 0; i < 1000; i++) {
        const sport = 10000 + i;
        const e: ConntrackEntry = {
          id: String(base + i),
          orig: tcp('10.0.10.5', sport, '10.0.10.26', 8000),
          reply: tcp('172.17.0.2', 80, '10.0.10.5', sport),
          status: ['ASSURED'],
          tcpState: 'ESTABLISHED',
        } as ConntrackEntry;
        entries.push(e);
        c.onConntrack([{ type: 'new', time: T0, entry: e }]);
        const us = T0 * 1000 + i;
        const pkt = (iface: string, tuple: Tuple, dt: number) => c.onObservation({ timeUs: us + dt, iface, tuple, wireLen: 60 });
        pkt('eth0', e.orig, 0);
        pkt('docker0', tcp('10.0.10.5', sport, '172.17.0.2', 80), 40);
        pkt('docker0', e.reply, 90);
        pkt('eth0', tcp('10.0.10.26', 8000, '10.0.10.5', sport), 120);
      }
    };
    round(1);
    expect(store.size).toBe(4000);
    const flows = (c as unknown as { flows: Map<string, FlowState> }).flows;
    const f = flows.get('1')!;
    expect(store.list(f.firstLeg).map((l) => `${store.iface(l)}/${store.direction(l)}/${store.form(l)}`)).toEqual([
      'eth0/orig/0',
      'docker0/orig/1',
      'docker0/reply/2',
      'eth0/reply/3',
    ]);
    for (const e of entries) c.onConntrack([{ type: 'destroy', time: T0 + 1, entry: e }]);
    c.tick(T0 + 10);
    expect(c.stats().flowsLive).toBe(0);
    expect(store.size).toBe(0);
    expect(f.firstLeg).toBe(NO_LEG);
    round(5001);
    expect(store.size).toBe(4000);
    expect(Math.max(...[...flows.values()].flatMap((x) => store.list(x.firstLeg)))).toBeLessThan(4000);
  });
});
