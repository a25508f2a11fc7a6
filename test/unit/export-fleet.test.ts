/**
 * What `serve --from nats://…` makes of a message: the host from the subject, the server's own
 * sequence number, flow ids as HOST/ID (drops and docker-proxy peers too), and anything that is
 * not an event of this schema version skipped (null) — never a crash. Events from the recorded
 * lab replay, as a host publishes them.
 */
import { describe, expect, it } from 'vitest';
import { fleetEvent } from '../../src/export/nats-fleet.js';
import type { FlowEvent, JourneyEvent } from '../../src/model/events.js';
import { startPipeline } from '../../src/pipeline/pipeline.js';
import { eventMatches } from '../../src/output/flow-filter.js';

const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;
const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const U = { prefix: 'journey' };

async function replayEvents(): Promise<JourneyEvent[]> {
  const p = await startPipeline({
    read: [`${DIR}eth0.pcap`, `${DIR}docker0.pcap`],
    conntrackSnapshot: `${DIR}conntrack.txt`,
    dockerSnapshot: `${DIR}docker.json`,
    rulesetFiles: { iptablesSave: [`${DIR}iptables-save.txt`], addrs: `${DIR}addrs.json`, routes: `${DIR}routes.json` },
  });
  const out: JourneyEvent[] = [];
  for await (const ev of p) out.push(ev);
  return out;
}

describe('serve --from: a message as an event', () => {
  it('every replayed event comes back with its host, a new seq and HOST/ID flow ids', async () => {
    const events = await replayEvents();
    expect(events.length).toBeGreaterThan(10);
    let seq = 100;
    for (const ev of events) {
      const got = fleetEvent(U, `journey.web-1.${ev.type}`, enc(ev), ++seq);
      expect(got, ev.type).not.toBeNull();
      expect(got?.host).toBe('web-1');
      expect(got?.seq).toBe(seq);
      if (ev.type.startsWith('flow.')) {
        const f = (got as FlowEvent).flow;
        expect(f.id).toBe(`web-1/${(ev as FlowEvent).flow.id}`);
        expect({ ...f, id: (ev as FlowEvent).flow.id, ...(f.proxiedBy ? { proxiedBy: (ev as FlowEvent).flow.proxiedBy } : {}) }).toEqual(
          (ev as FlowEvent).flow,
        );
        const peer = f.proxiedBy?.peerFlowId;
        if (peer != null) expect(peer.startsWith('web-1/')).toBe(true);
      }
    }
  });

  it('the host filter: events of other hosts are left out, events without a host pass', async () => {
    const [ev] = (await replayEvents()).filter((e) => e.type === 'flow.start');
    const a = fleetEvent(U, 'journey.a.flow.start', enc(ev), 1) as JourneyEvent;
    const b = fleetEvent(U, 'journey.b.flow.start', enc(ev), 2) as JourneyEvent;
    expect(eventMatches({ host: 'a' }, a)).toBe(true);
    expect(eventMatches({ host: 'a' }, b)).toBe(false);
    expect(eventMatches({ host: ['a', 'b'] }, b)).toBe(true);
    expect(eventMatches({ host: 'a' }, ev as JourneyEvent)).toBe(true);
  });

  it('skips what is not an event of this schema version, whatever it is', () => {
    const ok = { v: 1, seq: 1, time: 1, type: 'notice', message: 'x' };
    expect(fleetEvent(U, 'journey.h.notice', enc(ok), 1)).not.toBeNull();
    const bad: [string, unknown][] = [
      ['journey.h.notice', 'not json {'],
      ['journey.h.notice', { ...ok, v: 2 }],
      ['journey.h.notice', { ...ok, type: 'drop' }],
      ['journey.h.bogus', { ...ok, type: 'bogus' }],
      ['journey.h.notice', { ...ok, time: 'now' }],
      ['journey.h.notice', null],
      ['journey.h.notice', [1, 2]],
      ['journey.h.flow.start', { v: 1, seq: 1, time: 1, type: 'flow.start' }],
      ['journey.h.flow.start', { v: 1, seq: 1, time: 1, type: 'flow.start', flow: { id: 7 } }],
      ['other.h.notice', ok],
      ['journey.notice', ok],
      ['journey..notice', ok],
    ];
    for (const [subject, body] of bad) expect(fleetEvent(U, subject, enc(body), 1), `${subject} ${JSON.stringify(body)}`).toBeNull();
  });
});
