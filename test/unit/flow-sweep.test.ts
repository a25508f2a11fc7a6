import { describe, expect, it } from 'vitest';
import { Correlator } from '../../src/correlate/correlator.js';
import { FlowSweep } from '../../src/correlate/flow-sweep.js';
import type { ConntrackEntry } from '../../src/model/conntrack.js';
import type { FlowEvent, JourneyEvent } from '../../src/model/events.js';
import type { Observation } from '../../src/model/observation.js';
import type { Tuple } from '../../src/model/tuple.js';

const table = (n: number) => new Map(Array.from({ length: n }, (_, i) => [`f${i}`, { id: `f${i}` }]));

describe('FlowSweep', () => {
  it('looks at every flow, in table order, while the table is small', () => {
    const flows = table(5);
    const seen: string[] = [];
    new FlowSweep(flows, 10).run((f) => {
      seen.push(f.id);
      return false;
    });
    expect(seen).toEqual(['f0', 'f1', 'f2', 'f3', 'f4']);
  });

  it('beyond that: touched flows at once, every flow within `rounds` ticks, a flow asking again at the next tick', () => {
    const flows = table(100);
    const sweep = new FlowSweep(flows, 10, 4);
    const counts = new Map<string, number>();
    const visit = (f: { id: string }) => {
      counts.set(f.id, (counts.get(f.id) ?? 0) + 1);
      return f.id === 'f99';
    };
    sweep.touch(flows.get('f50')!);
    sweep.run(visit);
    // the touched one and the first quarter
    expect(counts.get('f50')).toBe(1);
    expect([...counts.keys()].length).toBe(26);
    for (let t = 0; t < 3; t++) sweep.run(visit);
    // four ticks: every flow once (f50 twice: touched and its turn), f99 asked again after its turn
    expect([...flows.keys()].every((k) => (counts.get(k) ?? 0) >= 1)).toBe(true);
    expect(counts.get('f50')).toBe(2);
    sweep.run(visit);
    expect(counts.get('f99')).toBe(2);
    // a forgotten flow is not looked at as touched
    sweep.touch(flows.get('f7')!);
    sweep.forget(flows.get('f7')!);
    const touched: string[] = [];
    // the slice's turn is f25..f49 (the cursor wrapped at the fifth tick): f7 is not touched any more
    sweep.run((f) => {
      touched.push(f.id);
      return false;
    });
    expect(touched).not.toContain('f7');
    expect(touched).toContain('f25');
  });

  it('a flow deleted from the table meanwhile is not visited by the slice', () => {
    const flows = table(40);
    const sweep = new FlowSweep(flows, 10, 2);
    const seen: string[] = [];
    const visit = (f: { id: string }) => {
      seen.push(f.id);
      return false;
    };
    sweep.run(visit);
    flows.delete('f30');
    sweep.run(visit);
    // f20..f39 without f30, then on from the start: f0
    expect(seen.slice(20)).toEqual([...Array.from({ length: 20 }, (_, i) => `f${20 + i}`).filter((id) => id !== 'f30'), 'f0']);
  });
});

describe('Correlator ticks over many flows', () => {
  const T0 = 1_700_000_000_000;
  const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });
  const entry = (i: number): ConntrackEntry => {
    const orig = tcp(`10.1.${i >> 8}.${i & 255}`, 40000, '10.0.10.26', 8000);
    return {
      id: `ct${i}`,
      orig,
      reply: tcp('172.17.0.2', 80, orig.src, 40000),
      status: ['CONFIRMED'],
      mark: 0,
      zone: 0,
      timeout: 100,
      source: 'proc',
      tcpState: 'ESTABLISHED',
    };
  };
  const obs = (iface: string, tuple: Tuple, ms: number): Observation => ({ timeUs: ms * 1000, iface, tuple, wireLen: 60, tcpFlags: 16 });

  it('5,000 flows: a new leg is shown at the next tick, idle flows end within a second of their timeout', () => {
    const events: JourneyEvent[] = [];
    const c = new Correlator({ emit: (e) => events.push(e), startDelayMs: 0, idleTimeoutMs: 5000 });
    const N = 5000;
    for (let i = 0; i < N; i++) {
      const e = entry(i);
      c.onConntrack([{ type: 'new', time: T0, entry: e }]);
      c.onObservation(obs('eth0', e.orig, T0 + 1));
    }
    expect(events.filter((e) => e.type === 'flow.start')).toHaveLength(N);
    c.tick(T0 + 100);
    events.length = 0;
    // flow 4321's bridge leg appears: its update comes at the next tick, not when the sweep reaches it
    const e = entry(4321);
    c.onObservation(obs('docker0', { ...e.orig, dst: '172.17.0.2', dport: 80 }, T0 + 150));
    c.tick(T0 + 200);
    const updates = events.filter((x): x is FlowEvent => x.type === 'flow.update');
    expect(updates.map((u) => u.flow.id)).toEqual(['ct4321']);
    expect(updates[0]!.flow.legs).toHaveLength(2);
    // every flow is idle 5 s after its last packet; each tick looks at a tenth of them: all end within 10 ticks
    events.length = 0;
    for (let t = 1; t <= 10; t++) c.tick(T0 + 5000 + t * 100);
    const ended = events.filter((x): x is FlowEvent => x.type === 'flow.end');
    expect(ended).toHaveLength(N);
    expect(ended.every((x) => x.reason === 'idle')).toBe(true);
    expect(c.liveFlows).toBe(0);
  });
});
