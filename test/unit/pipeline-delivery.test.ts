import { describe, it, expect } from 'vitest';
import { startPipeline, type Pipeline } from '../../src/pipeline/pipeline.js';
import type { JourneyEvent } from '../../src/model/events.js';

// Recorded in the lab (scenario default); see watch-replay.test.ts.
const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;
const READ = [`${DIR}eth0.pcap`, `${DIR}docker0.pcap`];
const CT = `${DIR}conntrack.txt`;

const nextMacrotask = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

function seqsOf(evs: JourneyEvent[]): number[] {
  return evs.map((e) => e.seq);
}

describe('pipeline: every event is delivered exactly once', () => {
  it('an event said between startPipeline returning and its setImmediate reaches a listener once', async () => {
    const p = await startPipeline({ read: READ, conntrackSnapshot: CT });
    const evs: JourneyEvent[] = [];
    p.on('event', (e) => evs.push(e));
    // what a capture (or any source) says right after start-up, before the pipeline's own setImmediate
    (p as unknown as { notice(m: string): void }).notice('said early');
    await p.done;
    await nextMacrotask();
    const seqs = seqsOf(evs);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(evs.filter((e) => e.type === 'notice' && e.message === 'said early')).toHaveLength(1);
    // in order, no gap: seq increases by one per event
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] as number) + i));
  });

  it('stop() right after start: the shutdown events reach the listener once, and the replay does not run after it', async () => {
    const p: Pipeline = await startPipeline({ read: READ, conntrackSnapshot: CT });
    const evs: JourneyEvent[] = [];
    p.on('event', (e) => evs.push(e));
    await p.stop();
    await nextMacrotask();
    await nextMacrotask();
    const seqs = seqsOf(evs);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(evs.filter((e) => e.type === 'capture.stats')).toHaveLength(1);
    expect(evs.some((e) => e.type === 'flow.start')).toBe(false);
  });

  it('the async iterator sees the opening notices once each', async () => {
    const p = await startPipeline({ read: READ });
    const evs: JourneyEvent[] = [];
    for await (const ev of p) evs.push(ev);
    const seqs = seqsOf(evs);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(evs.filter((e) => e.type === 'notice' && /without a conntrack snapshot/.test(e.message))).toHaveLength(1);
  });
});
