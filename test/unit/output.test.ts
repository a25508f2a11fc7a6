import { describe, it, expect } from 'vitest';
import { PassThrough, Writable } from 'node:stream';
import { formatFlowEvent, formatEvent, decidingStep, stateLabel, viaLabel } from '../../src/output/terminal.js';
import { formatJourney } from '../../src/output/terminal-explain.js';
import { renderTop } from '../../src/output/terminal-top.js';
import { flowMatches, eventMatches } from '../../src/output/flow-filter.js';
import { JsonLinesWriter, formatJsonLine } from '../../src/output/jsonl.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import { DockerProxyLinker } from '../../src/correlate/proxy-link.js';
import type { Explanation } from '../../src/model/explanation.js';

const T = Date.UTC(2026, 10, 23, 12, 0, 1, 234);
const tcp = (src: string, sport: number, dst: string, dport: number) => ({
  family: 4 as const,
  proto: 'tcp' as const,
  protoNum: 6,
  src,
  dst,
  sport,
  dport,
});
const ACCEPT: Explanation = {
  verdict: 'accept',
  steps: [
    {
      hook: 'prerouting',
      family: 'ip',
      table: 'nat',
      chain: 'DOCKER',
      rule: '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80',
      ruleNumber: 2,
      handle: null,
      verdict: 'dnat',
      meaning: 'published port 8000',
    },
    {
      hook: 'forward',
      family: 'ip',
      table: 'filter',
      chain: 'DOCKER',
      rule: '-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT',
      ruleNumber: 1,
      handle: null,
      verdict: 'accept',
    },
    { hook: 'postrouting', family: 'ip', table: 'nat', chain: 'POSTROUTING', rule: null, ruleNumber: null, handle: null, verdict: 'policy-accept' },
  ],
  nat: { dnat: { from: '10.0.10.26:8000', to: '172.17.0.2:80' }, snat: null },
  packet_out: { proto: 'tcp', src: '10.0.10.5', sport: 40000, dst: '172.17.0.2', dport: 80, iif: 'eth0', oif: 'docker0' },
  indeterminate: [],
};
const WEB: FlowInfo = {
  id: '42',
  orig: tcp('10.0.10.5', 40000, '10.0.10.26', 8000),
  reply: tcp('172.17.0.2', 80, '10.0.10.5', 40000),
  nat: { dnat: { from: '10.0.10.26:8000', to: '172.17.0.2:80' }, snat: null },
  legs: [
    {
      iface: 'eth0',
      direction: 'orig',
      tuple: tcp('10.0.10.5', 40000, '10.0.10.26', 8000),
      firstUs: T * 1000,
      lastUs: T * 1000 + 900,
      packets: 6,
      bytes: 465,
    },
    {
      iface: 'docker0',
      direction: 'orig',
      tuple: tcp('10.0.10.5', 40000, '172.17.0.2', 80),
      firstUs: T * 1000 + 45,
      lastUs: T * 1000 + 950,
      packets: 6,
      bytes: 465,
    },
    {
      iface: 'docker0',
      direction: 'reply',
      tuple: tcp('172.17.0.2', 80, '10.0.10.5', 40000),
      firstUs: T * 1000 + 300,
      lastUs: T * 1000 + 990,
      packets: 4,
      bytes: 538,
    },
  ],
  names: [
    { addr: '172.17.0.2', container: 'web', network: 'bridge' },
    { addr: '10.0.10.26', published: '8000/tcp -> web:80' },
  ],
  tcpState: 'SYN_SENT',
  ctStatus: ['CONFIRMED', 'DST_NAT'],
  legDelayUs: 45,
  explanation: ACCEPT,
  drops: [],
};
const ev = (type: FlowEvent['type'], flow: FlowInfo, extra: Partial<FlowEvent> = {}): FlowEvent => ({
  v: 1,
  seq: 7,
  time: T + 250,
  type,
  flow,
  ...extra,
});
const MASQ: FlowInfo = {
  ...WEB,
  id: '43',
  orig: { family: 4, proto: 'icmp', protoNum: 1, src: '172.17.0.3', dst: '198.51.100.10', sport: 7, dport: 7, icmpType: 8, icmpCode: 0 },
  reply: { family: 4, proto: 'icmp', protoNum: 1, src: '198.51.100.10', dst: '10.0.10.26', sport: 7, dport: 7, icmpType: 0, icmpCode: 0 },
  nat: { dnat: null, snat: { from: '172.17.0.3', to: '10.0.10.26' } },
  legs: [],
  names: [{ addr: '172.17.0.3', container: 'client', network: 'bridge' }],
  tcpState: undefined as never,
  ctStatus: ['CONFIRMED', 'SEEN_REPLY', 'SRC_NAT'],
  explanation: {
    ...ACCEPT,
    steps: [
      {
        hook: 'postrouting',
        family: 'ip',
        table: 'nat',
        chain: 'POSTROUTING',
        rule: '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
        ruleNumber: 1,
        handle: null,
        verdict: 'masquerade',
      },
      {
        hook: 'forward',
        family: 'ip',
        table: 'filter',
        chain: 'FORWARD',
        rule: '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT',
        ruleNumber: 5,
        handle: null,
        verdict: 'accept',
      },
    ],
  },
};
delete (MASQ as { tcpState?: string }).tcpState;
const DROP: FlowInfo = {
  ...WEB,
  id: 'pkt:tcp 10.0.10.5:34180>172.17.0.2:81',
  orig: tcp('10.0.10.5', 34180, '172.17.0.2', 81),
  reply: null,
  nat: { dnat: null, snat: null },
  legs: [WEB.legs[0]!],
  ctStatus: [],
  tcpState: 'SYN_SENT',
  explanation: {
    ...ACCEPT,
    verdict: 'drop',
    steps: [{ hook: 'forward', family: 'ip', table: 'filter', chain: 'FORWARD', rule: null, ruleNumber: null, handle: null, verdict: 'policy-drop' }],
    packet_out: null,
  },
};

describe('terminal printer (golden lines)', () => {
  it('the issue example, START/UPDATE/END, counters and reason', () => {
    expect(formatFlowEvent(ev('flow.start', WEB))).toBe(
      '12:00:01.234 START  web(172.17.0.2):80 ← 10.0.10.5:40000 tcp via eth0→docker0 DNAT 10.0.10.26:8000 ACCEPTED filter DOCKER#1 SYN_SENT',
    );
    expect(formatFlowEvent(ev('flow.end', { ...WEB, tcpState: 'TIME_WAIT' }, { reason: 'destroyed' }))).toBe(
      '12:00:01.484 END    web(172.17.0.2):80 ← 10.0.10.5:40000 tcp via eth0→docker0 DNAT 10.0.10.26:8000 ACCEPTED filter DOCKER#1 TIME_WAIT ↑6/465B ↓4/538B destroyed',
    );
    expect(formatFlowEvent(ev('flow.update', WEB), { counters: true })).toMatch(/^12:00:01\.484 UPDATE .* ↑6\/465B ↓4\/538B$/);
  });
  it('MASQUERADE, ICMP, no legs, replied', () => {
    expect(formatFlowEvent(ev('flow.start', MASQ))).toBe(
      '12:00:01.484 START  198.51.100.10 ← client(172.17.0.3) icmp echo MASQUERADE 10.0.10.26 ACCEPTED filter FORWARD#5 replied',
    );
  });
  it('a drop without conntrack', () => {
    expect(formatFlowEvent(ev('flow.start', DROP))).toBe(
      '12:00:01.234 START  web(172.17.0.2):81 ← 10.0.10.5:34180 tcp via eth0 DROPPED filter FORWARD:policy no-conntrack SYN_SENT',
    );
  });
  it('docker-proxy halves say so', () => {
    const f: FlowInfo = { ...WEB, nat: { dnat: null, snat: null }, explanation: null, proxiedBy: { pid: 4242, peerFlowId: '99' } };
    expect(formatFlowEvent(ev('flow.start', f))).toContain('docker-proxy[4242] ⇄ 99');
  });
  it('an IPv6 client half of docker-proxy: the line and the journey say who the container sees, and that the IPv6 address is lost', () => {
    const linker = new DockerProxyLinker({
      proxies: () => [{ pid: 76, proto: 'tcp', hostIp: '::', hostPort: 8000, containerIp: '172.17.0.2', containerPort: 80 }],
      gateways: () => new Set(['172.17.0.1']),
      isLocal: (a) => a === 'fd00:10::26',
    });
    const c6 = { ...tcp('fd00:10::5', 34998, 'fd00:10::26', 8000), family: 6 as const };
    const front: FlowInfo = { ...WEB, id: 'f6', orig: c6, reply: null, nat: { dnat: null, snat: null }, legs: [], ctStatus: [], explanation: null };
    const back: FlowInfo = {
      ...front,
      id: 'b4',
      orig: tcp('172.17.0.1', 50940, '172.17.0.2', 80),
      reply: tcp('172.17.0.2', 80, '172.17.0.1', 50940),
    };
    expect(linker.onFlow(front, 1_000)).toHaveLength(1);
    const links = linker.onFlow(back, 2_000);
    const pb = links.find((l) => l.flowId === 'f6')?.proxiedBy;
    const f: FlowInfo = { ...front, ...(pb ? { proxiedBy: pb } : {}) };
    expect(formatFlowEvent(ev('flow.start', f))).toContain(
      '[fd00:10::26]:8000 ← [fd00:10::5]:34998 tcp docker-proxy[76] ⇄ b4 (container sees 172.17.0.1:50940)',
    );
    expect(formatJourney(f)).toContain(
      "  docker-proxy (pid 76) ends [fd00:10::5]:34998 -> [fd00:10::26]:8000 and opens 172.17.0.1:50940 -> 172.17.0.2:80 (IPv6 in, IPv4 out): the container sees 172.17.0.1:50940, never the client; the client's IPv6 address fd00:10::5 is lost to it (flow b4)",
    );
  });
  it('colour only when asked', () => {
    expect(formatFlowEvent(ev('flow.start', WEB))).not.toContain('\x1b[');
    const c = formatFlowEvent(ev('flow.start', WEB), { color: true });
    expect(c).toContain('\x1b[32mACCEPTED\x1b[0m');
    expect(c.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '')).toBe(formatFlowEvent(ev('flow.start', WEB)));
  });
  it('notices, stats and lost events', () => {
    expect(formatEvent({ v: 1, seq: 1, time: T, type: 'notice', message: 'no Docker names' })).toBe('12:00:01.234 NOTICE no Docker names');
    expect(
      formatEvent({
        v: 1,
        seq: 2,
        time: T,
        type: 'capture.stats',
        stats: [{ iface: 'eth0', received: 10, kernelDropped: 1, ifDropped: 0, ownDropped: 2, skipped: { 'truncated-ip': 3 } }],
        flows: { live: 4, evicted: 5 },
      }),
    ).toBe(
      'capture statistics (4 live flows, 5 evicted):\n  eth0: 10 packets received, 1 dropped by kernel, 0 dropped by interface, 2 dropped by journey, skipped truncated-ip=3',
    );
    expect(formatEvent({ v: 1, seq: 3, time: T, type: 'lost', count: 9 })).toBe('LOST 9 events (output too slow)');
  });
  it('deciding step prefers the filter decision over nat policies; drops win', () => {
    expect(decidingStep(ACCEPT.steps)?.chain).toBe('DOCKER');
    expect(decidingStep([...ACCEPT.steps, { ...ACCEPT.steps[1]!, verdict: 'drop', chain: 'DOCKER-USER', ruleNumber: 1 }])?.chain).toBe('DOCKER-USER');
    expect(stateLabel({ ...MASQ, ctStatus: ['CONFIRMED'] })).toBe('unreplied');
    expect(viaLabel({ ...WEB, legs: [WEB.legs[2]!] })).toBe('(reply only: docker0)');
  });
});

describe('--explain and --top', () => {
  it('prints the whole journey', () => {
    const text = formatJourney(WEB);
    expect(text.split('\n')).toEqual([
      'journey of 42: web(172.17.0.2):80 ← 10.0.10.5:40000 tcp via eth0→docker0 DNAT 10.0.10.26:8000',
      '       +0µs  eth0         orig  10.0.10.5:40000 → 10.0.10.26:8000  6 pkts 465 B',
      '      +45µs  docker0      orig  10.0.10.5:40000 → 172.17.0.2:80  6 pkts 465 B',
      '     +300µs  docker0      reply 172.17.0.2:80 → 10.0.10.5:40000  4 pkts 538 B',
      '  delay between the first two legs: 45µs',
      '  DNAT 10.0.10.26:8000 → 172.17.0.2:80',
      '  172.17.0.2: container web, network bridge',
      '  10.0.10.26: published 8000/tcp -> web:80',
      '  conntrack: CONFIRMED DST_NAT; state SYN_SENT',
      '  verdict: ACCEPTED filter DOCKER#1',
      '    prerouting/ip nat DOCKER #2              dnat          -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80  — published port 8000',
      '    forward/ip filter DOCKER #1              accept        -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT',
      '    postrouting/ip nat POSTROUTING policy    policy-accept ',
    ]);
    expect(formatJourney(DROP)).toContain('conntrack: no entry (dropped before confirmation, or untracked)');
  });
  it('renders the table busiest first', () => {
    const text = renderTop([DROP, WEB], { nowMs: T + 5000, width: 200, rows: 10, header: 'top' });
    const lines = text.split('\n');
    expect(lines[0]).toBe('top');
    expect(lines[1]).toMatch(/PKTS +BYTES +IDLE STATE +FLOW/);
    expect(lines[2]).toMatch(/^ +10 +1003 +5s SYN_SENT +web\(172\.17\.0\.2\):80 ← 10\.0\.10\.5:40000 .*ACCEPTED filter DOCKER#1$/);
    expect(lines[3]).toMatch(/DROPPED filter FORWARD:policy$/);
    expect(renderTop([WEB, WEB, WEB, WEB], { nowMs: T, rows: 5 }).split('\n').at(-1)).toBe('… 2 more');
  });
});

describe('display filters', () => {
  it('container, port (either side of NAT), proto, verdict, nat, addr', () => {
    expect(flowMatches({ container: ['web'] }, WEB)).toBe(true);
    expect(flowMatches({ container: ['db'] }, WEB)).toBe(false);
    expect(flowMatches({ port: [8000] }, WEB)).toBe(true);
    expect(flowMatches({ port: [80] }, WEB)).toBe(true);
    expect(flowMatches({ port: [81] }, WEB)).toBe(false);
    expect(flowMatches({ protocol: ['udp'] }, WEB)).toBe(false);
    expect(flowMatches({ verdict: ['drop'] }, DROP)).toBe(true);
    expect(flowMatches({ verdict: ['drop'] }, WEB)).toBe(false);
    expect(flowMatches({ natOnly: true }, DROP)).toBe(false);
    expect(flowMatches({ natOnly: true, addr: ['10.0.10.26'] }, MASQ)).toBe(true);
    const notice: JourneyEvent = { v: 1, seq: 1, time: T, type: 'notice', message: 'x' };
    expect(eventMatches({ container: ['nobody'] }, notice)).toBe(true);
  });
});

describe('JSON lines', () => {
  it('one event per line, the same object', () => {
    const e = ev('flow.start', WEB);
    expect(JSON.parse(formatJsonLine(e))).toEqual(e);
    expect(formatJsonLine(e).endsWith('\n')).toBe(true);
    expect(formatJsonLine(e).split('\n')).toHaveLength(2);
  });
  it('a slow reader: bounded buffer, then a counted `lost` event in band', async () => {
    let release: (() => void) | null = null;
    const chunks: string[] = [];
    const slow = new Writable({
      highWaterMark: 64,
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk.toString());
        release = cb;
      },
    });
    const w = new JsonLinesWriter(slow, 5, 1);
    for (let i = 0; i < 50; i++) w.write({ v: 1, seq: i + 1, time: T, type: 'notice', message: `n${i}` });
    expect(w.lost).toBeGreaterThan(0);
    const lost = w.lost;
    for (let k = 0; k < 200 && release; k++) {
      const r = release as () => void;
      release = null;
      r();
      await new Promise((res) => setImmediate(res));
    }
    await w.flush();
    const lines = chunks
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as JourneyEvent);
    const lostEv = lines.find((l) => l.type === 'lost');
    expect(lostEv).toMatchObject({ type: 'lost', count: lost });
    expect(lines.filter((l) => l.type === 'notice').length + lost).toBe(50);
  });
  it('the lines of one turn go out as one write (and at once past the chunk size)', async () => {
    const writes: string[] = [];
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        writes.push(chunk.toString());
        cb();
      },
    });
    const w = new JsonLinesWriter(out);
    for (let i = 0; i < 100; i++) w.write({ v: 1, seq: i, time: T, type: 'notice', message: 'x' });
    expect(writes).toHaveLength(0); // nothing before the end of the turn
    await new Promise((r) => setImmediate(r));
    expect(writes).toHaveLength(1);
    expect(
      writes[0]
        ?.trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as JourneyEvent).seq),
    ).toEqual([...Array(100).keys()]);
    const small = new JsonLinesWriter(out, 10_000, 200);
    for (let i = 0; i < 10; i++) small.write({ v: 1, seq: i, time: T, type: 'notice', message: 'y'.repeat(60) });
    expect(writes.length).toBeGreaterThan(3); // each ~120-byte pair of lines reached 200 bytes: written at once
    await small.flush();
    expect(writes.slice(1).join('').trim().split('\n')).toHaveLength(10);
    expect(w.written + small.written).toBe(110);
  });
  it('a fast reader gets everything', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const w = new JsonLinesWriter(out);
    for (let i = 0; i < 100; i++) w.write({ v: 1, seq: i, time: T, type: 'notice', message: 'x' });
    await w.flush();
    expect(text.trim().split('\n')).toHaveLength(100);
  });
});
