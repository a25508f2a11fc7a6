/**
 * `--export ipfix://` against Debian's nfcapd (loopback only), read back with `nfdump -r`:
 * - the recorded lab replay: nfdump's flows (tuples, NAT fields, counters each way, times) equal
 *   journey's own `watch --json`, nfcapd counts no sequence failure;
 * - UDP: templates in the first message and again every template-refresh; active-timeout records
 *   whose deltas add up to the flow's totals; sequence numbers = data records sent before;
 * - TCP: templates once per session, sequence numbers from 0 in each session, a session the
 *   collector drops is re-established and nothing is lost (a re-framer hands TCP messages to nfcapd);
 * - the live lab (scenario default, every standard probe): nfdump equals `watch --json`.
 * Fails loudly when nfdump or the lab is missing.
 */
import { createServer, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { labDown, labUp, listProbes, runProbe } from '../../lab/driver.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import { SCHEMA_VERSION } from '../../src/model/events.js';
import { startPipeline } from '../../src/pipeline/pipeline.js';
import { ipfixTarget } from '../../src/export/ipfix.js';
import { labTestId } from './lab-helpers.js';
import {
  compareViews,
  countRecords,
  endedFlows,
  nfViews,
  parseMessages,
  removeDir,
  runJourney,
  sleep,
  startNfcapd,
  type Nfcapd,
} from './export-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
const FIX = join(ROOT, 'test/fixtures/watch/default/');
const REPLAY = [
  '--read',
  `${FIX}eth0.pcap`,
  `${FIX}docker0.pcap`,
  '--conntrack',
  `${FIX}conntrack.txt`,
  '--docker-snapshot',
  `${FIX}docker.json`,
  '--ruleset',
  `${FIX}iptables-save.txt`,
  '--host-addrs',
  `${FIX}addrs.json`,
  '--host-routes',
  `${FIX}routes.json`,
];
const ID = labTestId('x1');
const collectors: Nfcapd[] = [];
const ctx = { host: 'x-test', env: {}, log: () => undefined };

async function collector(): Promise<Nfcapd> {
  const c = await startNfcapd();
  collectors.push(c);
  return c;
}

afterAll(async () => {
  for (const c of collectors) {
    await c.stop().catch(() => undefined);
    removeDir(c.dir);
  }
  await labDown(ID).catch(() => undefined);
}, 120_000);

const parseJson = (lines: readonly string[]): JourneyEvent[] => lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as JourneyEvent);

describe('IPFIX export, read back by nfcapd/nfdump', () => {
  it('replay of the recorded lab: nfdump equals watch --json (NAT fields, counters each way, times)', async () => {
    const nf = await collector();
    const j = await runJourney(CLI, ['watch', ...REPLAY, '--json', '--export', `ipfix://127.0.0.1:${nf.port}`, '--export-host', 'x-replay'], null);
    expect(await j.exited).toBe(0);
    const flows = endedFlows(parseJson(j.stdout));
    await sleep(300);
    const records = await nf.stop();
    const views = nfViews(records);
    const problems = compareViews(flows, views);
    const natFlows = flows.filter((f) => f.nat.dnat !== null || f.nat.snat !== null);
    console.log(`ipfix replay: ${flows.length} flows compared with nfdump (${natFlows.length} with NAT), ${records.length} records`);
    expect(problems).toEqual([]);
    expect(flows.length).toBeGreaterThanOrEqual(10);
    expect(natFlows.length).toBeGreaterThanOrEqual(3);
    // the NAT event nfdump decoded: NAT44 session delete at the flow's end
    expect(records.filter((r) => r.src4_xlt_ip !== undefined).every((r) => r.nat_event_id === '5')).toBe(true);
    expect(j.stderr.join('\n')).toMatch(new RegExp(`export ipfix://127.0.0.1:${nf.port}: ${flows.length} sent, 0 lost`));
    expect(await nf.info()).toMatch(/Sequence failures: 0/);
    // the repeater's copy: templates first, sequence = data records sent before each message
    const wire = countRecords(nf.datagrams);
    expect(wire.templateSets[0]).toBe(1);
    let seq = 0;
    for (let i = 0; i < wire.records.length; i++) {
      expect(wire.sequences[i]).toBe(seq);
      seq += wire.records[i] as number;
    }
    expect(seq).toBe(flows.length);
  });

  it('serve --export: the same records as watch --json for the same replay', async () => {
    const nf = await collector();
    const w = await runJourney(CLI, ['watch', ...REPLAY, '--json'], null);
    expect(await w.exited).toBe(0);
    const flows = endedFlows(parseJson(w.stdout));
    const s = await runJourney(
      CLI,
      ['serve', ...REPLAY, '--port', '0', '--duration', '30', '--export', `ipfix://127.0.0.1:${nf.port}`],
      /listening on/,
    );
    // /metrics says what the export did while serve runs
    const metricsUrl = `${/listening on (http:\/\/\S+?\/) /.exec(s.stderr.join('\n'))?.[1] ?? ''}metrics`;
    let metrics = '';
    for (let i = 0; i < 100 && !new RegExp(`journey_export_sent\\{target="ipfix://127.0.0.1:${nf.port}"\\} ${flows.length}`).test(metrics); i++) {
      await sleep(100);
      metrics = await (await fetch(metricsUrl)).text();
    }
    expect(metrics).toMatch(new RegExp(`journey_export_sent\\{target="ipfix://127.0.0.1:${nf.port}"\\} ${flows.length}`));
    expect(metrics).toMatch(new RegExp(`journey_export_lost\\{target="ipfix://127.0.0.1:${nf.port}"\\} 0`));
    expect(await s.stop()).toBe(0);
    expect(s.stderr.join('\n')).toMatch(new RegExp(`export ipfix://127.0.0.1:${nf.port}: ${flows.length} sent, 0 lost`));
    await sleep(300);
    expect(compareViews(flows, nfViews(await nf.stop()))).toEqual([]);
    console.log(`ipfix serve --export: ${flows.length} flows compared with nfdump`);
  });

  it('UDP: template refresh, active timeout records that add up, sequence numbers', async () => {
    const nf = await collector();
    const url = new URL(`ipfix://127.0.0.1:${nf.port}?active=1&template-refresh=1`);
    const t = await ipfixTarget.open(url, ctx);
    const t0 = Date.now();
    const flow = (packets: number, lastMs: number): FlowInfo => ({
      id: 'long-1',
      orig: { family: 4, proto: 'udp', protoNum: 17, src: '172.17.0.3', dst: '198.51.100.10', sport: 40000, dport: 53 },
      reply: { family: 4, proto: 'udp', protoNum: 17, src: '198.51.100.10', dst: '10.0.10.26', sport: 53, dport: 40000 },
      nat: { dnat: null, snat: { from: '172.17.0.3', to: '10.0.10.26' } },
      legs: [
        {
          iface: 'docker0',
          direction: 'orig',
          tuple: { family: 4, proto: 'udp', protoNum: 17, src: '172.17.0.3', dst: '198.51.100.10', sport: 40000, dport: 53 },
          firstUs: t0 * 1000,
          lastUs: lastMs * 1000,
          packets,
          bytes: packets * 100,
        },
        {
          iface: 'eth0',
          direction: 'reply',
          tuple: { family: 4, proto: 'udp', protoNum: 17, src: '198.51.100.10', dst: '10.0.10.26', sport: 53, dport: 40000 },
          firstUs: t0 * 1000 + 500,
          lastUs: lastMs * 1000,
          packets: packets * 2,
          bytes: packets * 300,
        },
      ],
      names: [{ addr: '172.17.0.3', container: 'client', network: 'bridge' }],
      ctStatus: ['SEEN_REPLY', 'CONFIRMED', 'SRC_NAT'],
      explanation: null,
      drops: [],
    });
    const ev = (type: FlowEvent['type'], f: FlowInfo, seq: number): FlowEvent => ({
      v: SCHEMA_VERSION,
      seq,
      time: Date.now(),
      type,
      flow: f,
      ...(type === 'flow.end' ? { reason: 'destroyed' } : {}),
    });
    t.write(ev('flow.start', flow(3, t0), 1));
    await sleep(1500);
    t.write(ev('flow.update', flow(7, Date.now()), 2));
    await sleep(1500);
    const last = Date.now();
    t.write(ev('flow.update', flow(12, last), 3));
    t.write(ev('flow.end', flow(12, last), 4));
    await t.close();
    await sleep(300);
    const records = await nf.stop();
    const views = nfViews(records);
    const v = views.get('17 172.17.0.3:40000>198.51.100.10:53');
    // two or three active-timeout records and the final one; their deltas add up to the totals
    expect(records.length).toBeGreaterThanOrEqual(2);
    expect(v?.orig).toBe(`12/1200`);
    expect(v?.reply).toBe(`24/3600`);
    expect(v?.post).toBe('17 10.0.10.26:40000>198.51.100.10:53');
    const wire = countRecords(nf.datagrams);
    expect(wire.templateSets.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2); // refreshed
    let seq = 0;
    for (let i = 0; i < wire.records.length; i++) {
      expect(wire.sequences[i]).toBe(seq);
      seq += wire.records[i] as number;
    }
    expect(seq).toBe(records.length);
    expect(t.stats()).toMatchObject({ sent: records.length, lost: 0 });
    console.log(
      `ipfix udp: ${records.length} records of one flow (active timeout 1 s), ${wire.templateSets.filter((n) => n > 0).length} template sets`,
    );
  });

  it('TCP: templates once per session, sequence from 0 each session, a dropped session re-established without loss', async () => {
    const nf = await collector();
    // a re-framer: TCP messages from journey, each handed as one datagram to nfcapd
    const relay = createSocket('udp4');
    const sessions: Buffer[][] = [];
    const sockets: Socket[] = [];
    const server = createServer((s) => {
      const msgs: Buffer[] = [];
      sessions.push(msgs);
      sockets.push(s);
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        const { messages, rest } = parseMessages(Buffer.concat([buf, d]));
        let o = 0;
        const all = Buffer.concat([buf, d]);
        for (const m of messages) {
          const b = all.subarray(o, o + m.length);
          o += m.length;
          msgs.push(Buffer.from(b));
          relay.send(b, nf.port, '127.0.0.1');
        }
        buf = Buffer.from(rest);
      });
      s.on('error', () => undefined); // the test drops sessions on purpose
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const t = await ipfixTarget.open(new URL(`ipfix://127.0.0.1:${port}?transport=tcp`), ctx);
    const p = await startPipeline({
      read: [`${FIX}eth0.pcap`, `${FIX}docker0.pcap`],
      conntrackSnapshot: `${FIX}conntrack.txt`,
      dockerSnapshot: `${FIX}docker.json`,
      rulesetFiles: { iptablesSave: [`${FIX}iptables-save.txt`], addrs: `${FIX}addrs.json`, routes: `${FIX}routes.json` },
    });
    const events: JourneyEvent[] = [];
    for await (const e of p) events.push(e);
    const ends = events.filter((e) => e.type === 'flow.end');
    const half = Math.floor(ends.length / 2);
    for (const e of ends.slice(0, half)) t.write(e);
    for (let i = 0; i < 50 && countRecords(sessions[0] ?? []).records.reduce((a, b) => a + b, 0) < half; i++) await sleep(100);
    (sockets[0] as Socket).destroy(); // the collector drops the session
    for (let i = 0; i < 50 && t.stats().reconnects < 1; i++) await sleep(100);
    await sleep(200);
    for (const e of ends.slice(half)) t.write(e);
    await t.close();
    await sleep(300);
    server.close();
    relay.close();
    expect(sessions.length).toBe(2);
    for (const msgs of sessions) {
      const w = countRecords(msgs);
      expect(w.templateSets[0]).toBe(1); // the first message of a session carries the templates…
      expect(w.templateSets.slice(1).every((n) => n === 0)).toBe(true); // …and no other
      let seq = 0;
      for (let i = 0; i < w.records.length; i++) {
        expect(w.sequences[i]).toBe(seq);
        seq += w.records[i] as number;
      }
    }
    const records = await nf.stop();
    const flows = ends.map((e) => (e as FlowEvent).flow);
    expect(compareViews(flows, nfViews(records))).toEqual([]);
    expect(t.stats()).toMatchObject({ sent: flows.length, lost: 0, reconnects: 1 });
    console.log(`ipfix tcp: ${flows.length} flows over 2 sessions compared with nfdump`);
  });

  it('TCP: records that cannot be sent while the collector is away are counted as lost', async () => {
    const sockets: Socket[] = [];
    const server = createServer((s) => {
      sockets.push(s);
      s.on('error', () => undefined); // dropped on purpose below
      s.resume();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const t = await ipfixTarget.open(new URL(`ipfix://127.0.0.1:${port}?transport=tcp&queue=5`), ctx);
    // the collector goes away for good: no listener, the session dropped
    const closed = new Promise((r) => server.close(r));
    for (const s of sockets) s.destroy();
    await closed;
    for (let i = 0; i < 50 && t.stats().reconnects < 1; i++) await sleep(100);
    const p = await startPipeline({
      read: [`${FIX}eth0.pcap`, `${FIX}docker0.pcap`],
      conntrackSnapshot: `${FIX}conntrack.txt`,
      dockerSnapshot: `${FIX}docker.json`,
      rulesetFiles: { iptablesSave: [`${FIX}iptables-save.txt`], addrs: `${FIX}addrs.json`, routes: `${FIX}routes.json` },
    });
    const ends: JourneyEvent[] = [];
    for await (const e of p) if (e.type === 'flow.end') ends.push(e);
    for (const e of ends) t.write(e);
    await sleep(200);
    // 5 held for the collector's return, the rest counted at once
    expect(t.stats()).toMatchObject({ sent: 0, lost: ends.length - 5 });
    await t.close();
    // what was still held at exit is counted too
    expect(t.stats()).toMatchObject({ sent: 0, lost: ends.length });
    console.log(`ipfix tcp, collector away: ${ends.length} records counted lost, none sent`);
  });

  it('the live lab: every standard probe, nfdump equals watch --json', async () => {
    await labDown(ID).catch(() => undefined);
    const lab = await labUp({ id: ID, scenario: 'default' });
    const nf = await collector();
    const j = await runJourney(
      CLI,
      [
        'watch',
        '--netns',
        lab.netns.host,
        '--docker-host',
        `unix://${lab.dockerHost as string}`,
        '--json',
        '--stats-interval',
        '1',
        '--export',
        `ipfix://127.0.0.1:${nf.port}?active=30`,
        '--export-host',
        ID,
      ],
      /capturing on/,
    );
    const probes = listProbes('default', lab);
    for (const def of probes) {
      const r = await runProbe(ID, def.name);
      expect(r.asExpected, `${def.name}: ${r.outcome} ${r.output}`).toBe(true);
    }
    await sleep(3000);
    expect(await j.stop()).toBe(0);
    const flows = endedFlows(parseJson(j.stdout));
    await sleep(300);
    const records = await nf.stop();
    const problems = compareViews(flows, nfViews(records));
    const hostAddr = lab.hostAddr;
    const natFlows = flows.filter((f) => f.nat.dnat !== null || f.nat.snat !== null);
    console.log(
      `ipfix live lab: ${probes.length} probes, ${flows.length} flows compared with nfdump (${natFlows.length} with NAT), ${records.length} records`,
    );
    expect(problems).toEqual([]);
    // the published-port probe is there with its DNAT as nfdump decoded it
    expect(records.some((r) => r.dst4_addr === hostAddr && r.dst_port === 8000 && r.dst_xlt_port === '80')).toBe(true);
    // a MASQUERADEd flow from the client container
    expect(records.some((r) => r.src4_xlt_ip === hostAddr && r.src4_addr?.startsWith('172.'))).toBe(true);
    expect(j.stderr.join('\n')).toMatch(/export ipfix:\/\/\S+: \d+ sent, 0 lost/);
    await labDown(ID);
  });
});
