/**
 * docs/event-schema.json is the published contract of `journey watch --json` and the WebSocket
 * stream: it must compile (ajv strict), accept every kind of event journey emits, refuse events
 * that break the contract, and describe client messages exactly as the server validates them.
 */
import { describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { SCHEMA_VERSION, type JourneyEvent } from '../../src/model/events.js';
import { CLIENT_MESSAGE_SCHEMA, parseClientMessage } from '../../src/output/subscription.js';
import { EventFactory, loadSchema, masqueradeFlow, publishedFlow, tuple, validators } from './serve-helpers.js';

function sampleEvents(): JourneyEvent[] {
  const f = new EventFactory();
  const udp = publishedFlow('u1', 40100, { proto: 'udp', hostPort: 1812 });
  const icmp = { ...masqueradeFlow('i1', 7), orig: tuple('icmp', '172.17.0.3', 7, '10.0.10.5', 7), reply: null, legs: [] };
  return [
    f.flow('flow.start', publishedFlow('f1', 40000)),
    f.flow('flow.update', {
      ...publishedFlow('f1', 40000),
      proxiedBy: { pid: 1234, peerFlowId: null },
      hookTuples: [{ hook: 'prerouting', priority: -100, tuple: tuple('tcp', '10.0.10.5', 40000, '10.0.10.26', 8000), ctStatus: ['DST_NAT'] }],
    }),
    f.flow('flow.end', publishedFlow('f1', 40000)),
    f.flow('flow.start', udp),
    f.flow('flow.start', masqueradeFlow('m1', 50000)),
    f.flow('flow.start', { ...icmp, explanation: null }),
    ...f.others(),
    { v: SCHEMA_VERSION, seq: 99, time: Date.now(), type: 'lost', count: 12, firstSeq: 80, lastSeq: 91 },
    { v: SCHEMA_VERSION, seq: 100, time: Date.now(), type: 'lost', count: 1 },
  ];
}

describe('docs/event-schema.json', () => {
  it('compiles in strict mode and accepts every kind of event', () => {
    const { event } = validators();
    const events = sampleEvents();
    expect(new Set(events.map((e) => e.type))).toEqual(
      new Set(['flow.start', 'flow.update', 'flow.end', 'drop', 'ruleset.changed', 'capture.stats', 'lost', 'notice']),
    );
    for (const e of events) {
      const ok = event(JSON.parse(JSON.stringify(e)));
      if (!ok) throw new Error(`${e.type}: ${JSON.stringify(event.errors)}`);
    }
  });

  it('refuses events that break the contract', () => {
    const { event } = validators();
    const good = JSON.parse(JSON.stringify(sampleEvents()[0])) as Record<string, any>;
    const bad: [string, (e: Record<string, any>) => void][] = [
      ['wrong version', (e) => (e['v'] = 2)],
      ['unknown type', (e) => (e['type'] = 'flow.begin')],
      ['missing flow id', (e) => delete e['flow']['id']],
      ['undocumented field', (e) => (e['flow']['colour'] = 'red')],
      ['bad protocol', (e) => (e['flow']['orig']['proto'] = 'gre')],
      ['port out of range', (e) => (e['flow']['orig']['dport'] = 70000)],
      ['negative packets', (e) => (e['flow']['legs'][0]['packets'] = -1)],
      ['bad verdict', (e) => (e['flow']['explanation']['verdict'] = 'maybe')],
      ['bad step verdict', (e) => (e['flow']['explanation']['steps'][0]['verdict'] = 'jumped')],
      ['bad leg direction', (e) => (e['flow']['legs'][0]['direction'] = 'both')],
      ['nat as string', (e) => (e['flow']['nat']['dnat'] = '10.0.10.26:8000')],
    ];
    expect(event(good)).toBe(true);
    for (const [what, mutate] of bad) {
      const e = structuredClone(good);
      mutate(e);
      expect(event(e), what).toBe(false);
    }
    expect(event({ v: 1, seq: 1, time: 1, type: 'lost', count: 0 })).toBe(false);
  });

  it('describes the control messages of the stream', () => {
    const { server } = validators();
    expect(
      server({ type: 'hello', v: 1, time: 1, server: 'journey', version: '0.1.0', replayAvailable: 0, queueLimit: 2048, maxMessageBytes: 4096 }),
    ).toBe(true);
    expect(server({ type: 'subscribed', v: 1, time: 1, filter: { port: 80 }, replayed: 3, snapshot: 0 })).toBe(true);
    expect(server({ type: 'subscribed', v: 1, time: 1, filter: null, replayed: 0, snapshot: 2 })).toBe(true);
    expect(server({ type: 'subscribed', v: 1, time: 1, filter: null, replayed: 0 })).toBe(false);
    expect(server({ type: 'error', v: 1, time: 1, code: 'E_BAD_JSON', message: 'x' })).toBe(true);
    expect(server({ type: 'error', v: 1, time: 1, code: 'E_OOPS', message: 'x' })).toBe(false);
  });

  it('validates client messages exactly as the server does', () => {
    const { client } = validators();
    const ajv = new Ajv2020({ strict: true });
    const server = ajv.compile(CLIENT_MESSAGE_SCHEMA);
    const corpus: unknown[] = [
      { type: 'subscribe' },
      { type: 'subscribe', filter: {} },
      {
        type: 'subscribe',
        filter: { container: 'web', network: 'bridge', port: 8000, protocol: 'tcp', verdict: 'accept', natOnly: true, types: ['flow.start', 'drop'] },
        replay: 10,
        snapshot: true,
      },
      { type: 'subscribe', snapshot: 'yes' },
      { type: 'subscribe', filter: { port: -1 } },
      { type: 'subscribe', filter: { port: 1.5 } },
      { type: 'subscribe', filter: { protocol: 'gre' } },
      { type: 'subscribe', filter: { types: ['flow.start', 'flow.start'] } },
      { type: 'subscribe', filter: { types: ['nope'] } },
      { type: 'subscribe', filter: { container: '' } },
      { type: 'subscribe', filter: { natOnly: 'yes' } },
      { type: 'subscribe', replay: -3 },
      { type: 'subscribe', extra: 1 },
      { type: 'unsubscribe' },
      { type: 'unsubscribe', filter: {} },
      { type: 'ping' },
      { type: 'verify', check: 'hairpin' },
      {
        type: 'verify',
        check: 'hairpin',
        id: 'r1',
        options: {
          ports: ['8000', '53/udp'],
          kinds: ['self'],
          hostAddr: '10.0.10.26',
          timeoutMs: 2000,
          trace: 'all',
          passive: true,
          durationMs: 5000,
          drops: false,
        },
      },
      { type: 'verify', check: 'hairpin', options: { timeoutMs: 50 } },
      { type: 'verify', check: 'hairpin', options: { netns: 'x' } },
      { type: 'verify', check: 'hairpin', options: { ports: ['http'] } },
      { type: 'verify', check: 'nat' },
      { type: 'verify' },
      {},
      [],
      'subscribe',
      null,
      42,
    ];
    for (const m of corpus) {
      const expected = server(m);
      expect(client(m), JSON.stringify(m)).toBe(expected);
      expect(parseClientMessage(JSON.stringify(m), 4096).ok, JSON.stringify(m)).toBe(expected);
    }
    const docs = loadSchema() as { $defs: Record<string, unknown> };
    const tsFilter = (CLIENT_MESSAGE_SCHEMA.oneOf[0].properties as { filter: unknown }).filter;
    expect(docs.$defs['SubscriptionFilter']).toEqual(tsFilter);
  });
});

/** Field names declared at the top level of `export interface NAME { ... }` in a TS source. */
function interfaceFields(src: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const re = /(?:export )?interface (\w+)(?: extends (\w+))? \{/g;
  for (let m = re.exec(src); m !== null; m = re.exec(src)) {
    const fields = new Set<string>(m[2] !== undefined ? (out.get(m[2]) ?? []) : []);
    let depth = 1;
    let lineDepth = 1; // brace depth where the current line starts
    let line = '';
    for (let i = re.lastIndex; i < src.length && depth > 0; i++) {
      const ch = src[i]!;
      if (ch === '\n') {
        const f = /^\s*readonly (\w+)\??:/.exec(line);
        if (f !== null && lineDepth === 1) fields.add(f[1]!);
        line = '';
        lineDepth = depth;
        continue;
      }
      if (ch === '{') depth++;
      else if (ch === '}') depth--;
      line += ch;
    }
    out.set(m[1]!, fields);
  }
  return out;
}

describe('schema and TypeScript types stay in step', () => {
  it('every field of the event types is declared in docs/event-schema.json (add it there when you add one)', async () => {
    const { readFileSync } = await import('node:fs');
    const read = (f: string): string => readFileSync(new URL(`../../src/model/${f}`, import.meta.url), 'utf8');
    const types = new Map([
      ...interfaceFields(read('events.ts')),
      ...interfaceFields(read('explanation.ts')),
      ...interfaceFields(read('tuple.ts')),
      ...interfaceFields(read('observation.ts')),
    ]);
    const defs = (loadSchema() as { $defs: Record<string, { properties?: Record<string, unknown> }> }).$defs;
    const pairs = [
      'Tuple',
      'FlowLeg',
      'EndpointName',
      'FlowInfo',
      'DropInfo',
      'ExplainStep',
      'PacketSummary',
      'Explanation',
      'CaptureStats',
      'FlowEvent',
      'DropEvent',
      'RulesetChangedEvent',
      'CaptureStatsEvent',
      'LostEvent',
      'NoticeEvent',
    ];
    const missing: string[] = [];
    const extra: string[] = [];
    for (const name of pairs) {
      const fields = types.get(name);
      expect(fields, `interface ${name} not found`).toBeDefined();
      const props = Object.keys(defs[name]?.properties ?? {});
      for (const f of fields!) if (!props.includes(f)) missing.push(`${name}.${f}`);
      for (const f of props) if (!fields!.has(f)) extra.push(`${name}.${f}`);
    }
    expect(missing, 'fields in src/model but not in docs/event-schema.json').toEqual([]);
    expect(extra, 'fields in docs/event-schema.json but not in src/model').toEqual([]);
  });
});
