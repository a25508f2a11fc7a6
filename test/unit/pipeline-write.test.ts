import { describe, it, expect } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPipeline } from '../../src/pipeline/pipeline.js';
import type { JourneyEvent } from '../../src/model/events.js';

const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;

describe('pipeline --write', () => {
  it('keeps what was read in a pcapng that replays to the same flows', async () => {
    const d = mkdtempSync(join(tmpdir(), 'jw-write-'));
    try {
      const out = join(d, 'kept.pcapng');
      const run = async (read: string[], write?: string) => {
        const p = await startPipeline({ read, conntrackSnapshot: `${DIR}conntrack.txt`, ...(write ? { write } : {}) });
        const evs: JourneyEvent[] = [];
        for await (const e of p) evs.push(e);
        return { evs, stats: p.stats() };
      };
      const a = await run([`${DIR}eth0.pcap`, `${DIR}docker0.pcap`], out);
      expect(a.stats.written).toEqual({ frames: 194, dropped: 0 });
      const b = await run([out]);
      const key = (evs: JourneyEvent[]) =>
        evs
          .filter((e) => e.type === 'flow.start')
          .map((e) => (e.type === 'flow.start' ? `${e.flow.id} ${e.flow.legs.map((l) => `${l.iface}/${l.direction}/${l.packets}`).join(',')}` : ''))
          .sort();
      expect(key(b.evs)).toEqual(key(a.evs));
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
