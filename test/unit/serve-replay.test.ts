/**
 * `journey serve` on a replay of a lab recording (test/fixtures/watch/default: scenario default,
 * every standard probe; recorded ruleset for explanations), no root: the real pipeline feeds the
 * server, real ws clients subscribe with filters and get exactly the matching flows, explained,
 * every message valid against docs/event-schema.json; late subscribers get the replay ring.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline, type Pipeline } from '../../src/pipeline/pipeline.js';
import { startServer, type JourneyServer } from '../../src/output/server.js';
import { eventMatches } from '../../src/output/flow-filter.js';
import type { FlowInfo, JourneyEvent } from '../../src/model/events.js';
import { RecordingClient, validators } from './serve-helpers.js';

const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;
let server: JourneyServer;
let pipeline: Pipeline;
const all: JourneyEvent[] = [];
const clients: RecordingClient[] = [];

function lastFlows(msgs: Record<string, unknown>[]): Map<string, FlowInfo> {
  const m = new Map<string, FlowInfo>();
  for (const e of msgs) if (String(e['type']).startsWith('flow.')) m.set((e['flow'] as FlowInfo).id, e['flow'] as FlowInfo);
  return m;
}

beforeAll(async () => {
  server = await startServer({ port: 0, processMetrics: false, replay: 4096 });
  const early = [
    new RecordingClient(server.wsUrl), // port 8000, NAT only
    new RecordingClient(server.wsUrl), // icmp
    new RecordingClient(server.wsUrl), // container client, verdict accept
  ];
  clients.push(...early);
  await Promise.all(early.map((c) => c.opened));
  early[0]!.send({ type: 'subscribe', filter: { port: 8000, natOnly: true } });
  early[1]!.send({ type: 'subscribe', filter: { protocol: 'icmp' } });
  early[2]!.send({ type: 'subscribe', filter: { container: 'client', verdict: 'accept', types: ['flow.start'] } });
  await Promise.all(early.map((c) => c.until(() => c.ofType('subscribed').length === 1)));
  pipeline = await startPipeline({
    read: [`${DIR}eth0.pcap`, `${DIR}docker0.pcap`],
    conntrackSnapshot: `${DIR}conntrack.txt`,
    dockerSnapshot: `${DIR}docker.json`,
    rulesetFiles: { iptablesSave: [`${DIR}iptables-save.txt`], addrs: `${DIR}addrs.json`, routes: `${DIR}routes.json` },
  });
  pipeline.on('event', (ev) => all.push(ev));
  server.attachSource(pipeline);
  await pipeline.done;
  // everything handed to the sockets, then a moment for loopback to deliver it
  const t0 = Date.now();
  while ([...server.hub.clients].some((c) => c.queue.length > 0 || c.ws.bufferedAmount > 0) && Date.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 300));
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await server.close();
});

describe('serve on a replayed lab recording', () => {
  it('each subscriber gets exactly the flow events that match its filter, explained, schema-valid', () => {
    const filters = [
      { port: 8000, natOnly: true },
      { protocol: 'icmp' as const },
      { container: 'client', verdict: 'accept' as const, types: ['flow.start' as const] },
    ];
    const flows = all.filter((e) => e.type.startsWith('flow.'));
    expect(flows.length).toBeGreaterThan(10);
    clients.slice(0, 3).forEach((c, i) => {
      const want = flows.filter((e) => eventMatches(filters[i]!, e)).map((e) => e.seq);
      const got = c.messages.filter((m) => String(m['type']).startsWith('flow.')).map((m) => Number(m['seq']));
      expect(got, JSON.stringify(filters[i])).toEqual(want);
      expect(want.length, JSON.stringify(filters[i])).toBeGreaterThan(0);
      expect(c.ofType('lost')).toHaveLength(0);
      const { server: validate } = validators();
      for (const m of c.messages) expect(validate(m), JSON.stringify(validate.errors)).toBe(true);
    });
    // independent of the filter code: the published-port subscriber saw the two external clients'
    // DNATed flows to web, explained (nat DOCKER dnat, accepted)
    const pub = [...lastFlows(clients[0]!.messages).values()];
    const ext = pub.filter((f) => f.orig.dst === '10.0.10.26' && f.orig.dport === 8000 && f.nat.dnat?.to === '172.17.0.2:80');
    expect(new Set(ext.map((f) => f.orig.src))).toEqual(new Set(['10.0.10.5', '10.0.10.6']));
    for (const f of pub) {
      expect(f.orig.dport === 8000 || f.reply?.sport === 8000 || f.legs.some((l) => l.tuple.dport === 8000 || l.tuple.sport === 8000)).toBe(true);
      expect(f.nat.dnat !== null || f.nat.snat !== null).toBe(true);
    }
    for (const f of ext) {
      expect(f.explanation?.verdict).toBe('accept');
      expect(f.explanation?.steps.some((s) => s.table === 'nat' && s.chain === 'DOCKER' && s.verdict === 'dnat')).toBe(true);
    }
    expect([...lastFlows(clients[1]!.messages).values()].every((f) => f.orig.proto === 'icmp')).toBe(true);
    expect(
      [...lastFlows(clients[2]!.messages).values()].every(
        (f) => f.names.some((n) => n.container === 'client') && f.explanation?.verdict === 'accept',
      ),
    ).toBe(true);
  });

  it('a subscriber that comes after the replay gets the kept events that match', async () => {
    const late = new RecordingClient(server.wsUrl);
    clients.push(late);
    await late.opened;
    late.send({ type: 'subscribe', filter: { protocol: 'udp' } });
    await late.until(() => late.ofType('subscribed').length === 1);
    const want = all.filter((e) => eventMatches({ protocol: 'udp' }, e));
    expect(late.ofType('subscribed')[0]).toMatchObject({ replayed: want.length });
    await late.until(() => late.messages.length >= want.length + 2);
    expect(late.messages.slice(2).map((m) => Number(m['seq']))).toEqual(want.map((e) => e.seq));
  });
});
