/**
 * The JSON text of events: equal to JSON.stringify for every event of the recorded Docker host
 * (test/fixtures/printers/json.txt), with a flow's explanation made into text once per explanation
 * object, also when a rule's text holds what the splice looks for.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventJson } from '../../src/model/event-json.js';
import type { FlowEvent, JourneyEvent } from '../../src/model/events.js';
import type { Explanation } from '../../src/model/explanation.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const events = (): JourneyEvent[] =>
  readFileSync(join(ROOT, 'test/fixtures/printers/json.txt'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as JourneyEvent);

describe('eventJson', () => {
  it('is JSON.stringify for every recorded event, flow events with and without an explanation and the others', () => {
    const all = events();
    const flows = all.filter((e): e is FlowEvent => e.type.startsWith('flow.'));
    expect(flows.filter((e) => e.flow.explanation !== null).length).toBeGreaterThan(5);
    expect(all.some((e) => !e.type.startsWith('flow.'))).toBe(true);
    for (const e of all) expect(eventJson(e)).toBe(JSON.stringify(e));
    // twice: the second time from the explanation's cached text
    for (const e of all) expect(eventJson(e)).toBe(JSON.stringify(e));
    const bare = { ...flows[0]!, flow: { ...flows[0]!.flow, explanation: null } };
    expect(eventJson(bare)).toBe(JSON.stringify(bare));
  });

  it('makes the explanation text once per explanation object; a rule or name holding "explanation":null does not move the splice', () => {
    const e = events().find((x): x is FlowEvent => x.type.startsWith('flow.') && x.flow.explanation !== null)!;
    const tricky = '"explanation":null';
    const ex = { ...e.flow.explanation!, notes: [tricky] } as Explanation;
    let reads = 0;
    const counted = new Proxy(ex, {
      get(t, k, r) {
        if (k === 'verdict') reads++;
        return Reflect.get(t, k, r);
      },
    });
    const ev: FlowEvent = { ...e, flow: { ...e.flow, id: tricky, explanation: counted } };
    const plain = JSON.stringify(ev);
    reads = 0;
    expect(eventJson(ev)).toBe(plain);
    expect(reads).toBe(1);
    const later: FlowEvent = { ...ev, type: 'flow.end', seq: ev.seq + 1 };
    expect(eventJson(later)).toBe(JSON.stringify(later));
    expect(reads).toBe(2); // the JSON.stringify of this test read it; eventJson did not
  });
});

describe('eventJson text cache', () => {
  it('keeps the texts of the last explanations only: one made 64 explanations ago is made again, equal', () => {
    const e = events().find((x): x is FlowEvent => x.type.startsWith('flow.') && x.flow.explanation !== null)!;
    let reads = 0;
    const counted = new Proxy({ ...e.flow.explanation! } as Explanation, {
      get(t, k, r) {
        if (k === 'verdict') reads++;
        return Reflect.get(t, k, r);
      },
    });
    const ev: FlowEvent = { ...e, flow: { ...e.flow, explanation: counted } };
    const first = eventJson(ev);
    expect(reads).toBe(1);
    // 63 other explanations: this one's text is still kept
    for (let i = 0; i < 63; i++) eventJson({ ...e, flow: { ...e.flow, explanation: { ...e.flow.explanation! } } });
    expect(eventJson(ev)).toBe(first);
    expect(reads).toBe(1);
    // one more: the oldest text (this one's) is forgotten, and made again when asked
    eventJson({ ...e, flow: { ...e.flow, explanation: { ...e.flow.explanation! } } });
    expect(eventJson(ev)).toBe(first);
    expect(reads).toBe(2);
  });
});
