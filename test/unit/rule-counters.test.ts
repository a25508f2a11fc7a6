import { describe, expect, it } from 'vitest';
import type { FlowEvent, JourneyEvent } from '../../src/model/events.js';
import { RuleCounterWatch } from '../../src/pipeline/rule-counter-watch.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { type CounterReading, counterDelta, countersOfRuleset, stepCounterKey } from '../../src/ruleset/rule-counters.js';
import { publishedFlow } from './serve-helpers.js';

const save = (dnat: number, fwd: number) => `*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
[${dnat}:${dnat * 60}] -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
[0:0] -A DOCKER -i docker0 -j RETURN
[${dnat}:${dnat * 60}] -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:FORWARD DROP [0:0]
:DOCKER-USER - [0:0]
[${fwd}:${fwd * 100}] -A FORWARD -j DOCKER-USER
COMMIT
`;
const reading = (timeMs: number, dnat: number, fwd: number): CounterReading => ({
  timeMs,
  counters: countersOfRuleset(parseIptablesSave(save(dnat, fwd), { family: 'ip', source: 'test' })),
});

describe('rule counters', () => {
  it('reads iptables-save -c counters by family, table, chain and rule number; a policy step has none', () => {
    const c = reading(0, 3, 10).counters;
    expect(c.get('ip nat DOCKER #2')).toEqual({ packets: 3, bytes: 180 });
    expect(c.get('ip filter FORWARD #1')).toEqual({ packets: 10, bytes: 1000 });
    const step = { family: 'ip', table: 'nat', chain: 'DOCKER', ruleNumber: 1, handle: null, rule: '-A DOCKER …' } as const;
    expect(stepCounterKey(step)).toBe('ip nat DOCKER #1');
    expect(stepCounterKey({ ...step, rule: null, ruleNumber: null })).toBeNull();
    expect(stepCounterKey({ ...step, handle: 7 })).toBe('ip nat DOCKER h7');
    expect(counterDelta(c, reading(0, 4, 16).counters, 'ip nat DOCKER #2')).toEqual({ packets: 1, bytes: 60 });
    // a rule replaced (its counter went down) or gone: no increment is claimed
    expect(counterDelta(reading(0, 4, 16).counters, c, 'ip nat DOCKER #2')).toBeNull();
    expect(counterDelta(c, c, 'ip nat DOCKER #9')).toBeNull();
  });

  it('a flow.end waits for a fresh reading, in order; its steps carry the increments since the reading before its first packet', async () => {
    const base = publishedFlow('w', 40000);
    const firstMs = Math.min(...base.legs.map((l) => l.firstUs)) / 1000;
    const readings = [reading(firstMs - 500, 3, 10), reading(firstMs + 5000, 4, 16)];
    let n = 0;
    const out: JourneyEvent[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const w = new RuleCounterWatch({
      read: async () => {
        const r = readings[Math.min(n++, readings.length - 1)]!;
        if (n > 1) await gate;
        return r;
      },
      deliver: (ev) => out.push(ev),
      notice: () => undefined,
      intervalMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 10)); // the first reading
    const ev = (type: FlowEvent['type'], seq: number): FlowEvent => ({ v: 1, seq, time: 0, type, flow: base }) as FlowEvent;
    w.push(ev('flow.start', 1));
    expect(out.map((e) => e.seq)).toEqual([1]);
    w.push(ev('flow.end', 2));
    w.push({ v: 1, seq: 3, time: 0, type: 'notice', message: 'later' } as JourneyEvent);
    expect(out.map((e) => e.seq)).toEqual([1]); // held until the reading
    release();
    await w.drain();
    w.stop();
    expect(out.map((e) => e.seq)).toEqual([1, 2, 3]);
    const ex = (out[1] as FlowEvent).flow.explanation!;
    expect(ex.counterWindow).toEqual({ fromMs: firstMs - 500, toMs: firstMs + 5000 });
    const dnat = ex.steps.find((s) => s.table === 'nat' && s.chain === 'DOCKER' && s.verdict === 'dnat');
    expect(dnat?.counters, JSON.stringify(ex.steps)).toEqual({ packets: 1, bytes: 60 });
  });
});
