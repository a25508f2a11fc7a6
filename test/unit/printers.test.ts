/**
 * The output formats of `journey watch` (src/output/printers/registry.ts), each on the events of
 * a lab recording replayed through the pipeline, compared with its golden file
 * (test/fixtures/printers/FORMAT.txt; UPDATE_GOLDEN=1 writes them). Every registered format has a golden.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { Writable } from 'node:stream';
import { startPipeline } from '../../src/pipeline/pipeline.js';
import type { FlowInfo, JourneyEvent } from '../../src/model/events.js';
import { createPrinter, OUTPUT_FORMATS, PRINTERS } from '../../src/output/printers/registry.js';

const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;
const GOLDEN = new URL('../fixtures/printers/', import.meta.url).pathname;

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

const events: JourneyEvent[] = [];
beforeAll(async () => {
  const p = await startPipeline({
    read: [`${DIR}eth0.pcap`, `${DIR}docker0.pcap`],
    conntrackSnapshot: `${DIR}conntrack.txt`,
    dockerSnapshot: `${DIR}docker.json`,
    rulesetFiles: { iptablesSave: [`${DIR}iptables-save.txt`], addrs: `${DIR}addrs.json`, routes: `${DIR}routes.json` },
    // the same events for every printer (the terminal views' display delay: both legs on the first line)
    startDelayMs: 250,
  });
  for await (const ev of p) events.push(ev);
});

async function print(format: string): Promise<{ out: string; err: string }> {
  const out = new Sink();
  const err = new Sink();
  const flows = new Map<string, FlowInfo>();
  const printer = createPrinter(format, {
    out,
    err,
    color: false,
    errColor: false,
    tz: 'utc',
    counters: true,
    updates: false,
    drops: true,
    flows: () => [...flows.values()],
    // the recording's own clock (events carry the replay's wall-clock time): one second after its last packet
    nowMs: () => Math.max(0, ...[...flows.values()].flatMap((f) => f.legs.map((l) => l.lastUs / 1000))) + 1000,
  });
  printer.start?.();
  for (const ev of events) {
    if (ev.type === 'flow.start' || ev.type === 'flow.update' || ev.type === 'flow.end') flows.set(ev.flow.id, ev.flow);
    printer.event(ev);
  }
  await printer.stop();
  return { out: out.text, err: err.text };
}

describe('output formats', () => {
  it('the registry lists line, json, top and explain, each with a description', () => {
    expect([...OUTPUT_FORMATS]).toEqual(['line', 'json', 'top', 'explain']);
    for (const f of OUTPUT_FORMATS) expect(PRINTERS[f].description.length).toBeGreaterThan(10);
    expect(() => createPrinter('yaml', {} as never)).toThrow(/unknown output format "yaml"/);
  });

  it.each(OUTPUT_FORMATS.map((f) => [f]))('%s: equals its golden', async (format) => {
    // stream-level events (notices) carry the wall-clock time of the replay, flow events the recording's
    const out = (await print(format)).out.replace(/"time":\d+,"type":"(notice|ruleset.changed|capture.stats)"/g, '"time":0,"type":"$1"');
    const file = `${GOLDEN}${format}.txt`;
    if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(file)) {
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(file, out);
    }
    expect(out.length).toBeGreaterThan(100);
    expect(out).toBe(readFileSync(file, 'utf8'));
  });

  it('json: every event of the stream, one object per line, in order', async () => {
    const { out } = await print('json');
    const lines = out.trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as JourneyEvent).seq)).toEqual(events.map((e) => e.seq));
  });

  it('the human formats send notices to stderr, never into the data', async () => {
    const notices = events.filter((e) => e.type === 'notice').length;
    expect(notices).toBeGreaterThan(0);
    for (const f of ['line', 'top', 'explain']) {
      const { out, err } = await print(f);
      expect(err.trim().split('\n').length, f).toBe(notices);
      expect(out, f).not.toMatch(/notice/i);
    }
  });
});
