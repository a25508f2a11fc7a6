import { describe, it, expect } from 'vitest';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapStreamParser } from '../../src/correlate/frame-sources.js';
import { startPipeline } from '../../src/correlate/pipeline.js';
import { readCaptureFiles } from '../../src/capture/pcap-file.js';
import type { JourneyEvent } from '../../src/model/events.js';

const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;

describe('PcapStreamParser (the tcpdump fallback reads `tcpdump -w -`)', () => {
  it('reads a pcap stream cut at every possible place into the same records', async () => {
    const bytes = readFileSync(`${DIR}eth0.pcap`);
    let want = 0;
    for await (const b of readCaptureFiles([`${DIR}eth0.pcap`])) want += b.count;
    for (const chunk of [1, 7, 16, 100, 4096]) {
      const got: { len: number; t: number }[] = [];
      const p = new PcapStreamParser((_d, capLen, _w, t) => got.push({ len: capLen, t }));
      for (let i = 0; i < bytes.length; i += chunk) p.push(bytes.subarray(i, i + chunk));
      expect(got.length, `chunk ${chunk}`).toBe(want);
      expect(p.linkType).toBe(1);
      expect(p.malformed).toBe(false);
      for (let i = 1; i < got.length; i++) expect(got[i]!.t).toBeGreaterThanOrEqual(got[i - 1]!.t);
    }
  });
  it('flags garbage instead of throwing', () => {
    const p = new PcapStreamParser(() => {
      throw new Error('no record expected');
    });
    p.push(Buffer.from('definitely not a pcap header, no no no'));
    expect(p.malformed).toBe(true);
  });
});

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
