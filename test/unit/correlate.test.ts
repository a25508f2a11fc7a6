import { describe, it, expect } from 'vitest';
import { Correlator, type FlowExplainer } from '../../src/correlate/correlator.js';
import { DockerProxyLinker } from '../../src/correlate/proxy-link.js';
import type { ConntrackEntry, ConntrackEvent } from '../../src/model/conntrack.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import type { Observation } from '../../src/model/observation.js';
import type { Tuple } from '../../src/model/tuple.js';
import type { Explanation } from '../../src/model/explanation.js';

const T0 = 1_700_000_000_000; // ms
const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });
const entry = (id: string, orig: Tuple, reply: Tuple, extra: Partial<ConntrackEntry> = {}): ConntrackEntry => ({
  id,
  orig,
  reply,
  status: ['CONFIRMED'],
  mark: 0,
  zone: 0,
  timeout: 100,
  source: 'proc',
  tcpState: 'SYN_SENT',
  ...extra,
});
const ev = (type: ConntrackEvent['type'], e: ConntrackEntry, ms: number): ConntrackEvent => ({ type, time: ms, entry: e });
const pkt = (iface: string, tuple: Tuple, ms: number, len = 60, extra: Partial<Observation> = {}): Observation => ({
  timeUs: ms * 1000,
  iface,
  tuple,
  wireLen: len,
  tcpFlags: 2,
  ...extra,
});

// the example: 10.0.10.5:40000 -> 10.0.10.26:8000 DNATed to web 172.17.0.2:80
const UP = tcp('10.0.10.5', 40000, '10.0.10.26', 8000);
const BR = tcp('10.0.10.5', 40000, '172.17.0.2', 80);
const WEB = entry('ct1', UP, tcp('172.17.0.2', 80, '10.0.10.5', 40000));

function harness(opts: Partial<ConstructorParameters<typeof Correlator>[0]> = {}) {
  const events: JourneyEvent[] = [];
  const c = new Correlator({ emit: (e) => events.push(e), ...opts });
  const flows = (type?: FlowEvent['type']) =>
    events.filter((e): e is FlowEvent => e.type.startsWith('flow.') && (type === undefined || e.type === type));
  return { c, events, flows };
}

describe('Correlator', () => {
  it('joins the pre-NAT uplink packet and the post-NAT bridge packet into one flow, both directions', () => {
    const { c, flows } = harness({ names: (addr) => (addr === '172.17.0.2' ? { addr, container: 'web', network: 'bridge' } : null) });
    c.onConntrack([ev('new', WEB, T0)]);
    c.onObservation(pkt('eth0', UP, T0));
    c.onObservation(pkt('docker0', BR, T0 + 0.05));
    c.onObservation(pkt('docker0', tcp('172.17.0.2', 80, '10.0.10.5', 40000), T0 + 0.2, 60, { tcpFlags: 18 }));
    c.onObservation(pkt('eth0', tcp('10.0.10.26', 8000, '10.0.10.5', 40000), T0 + 0.25, 60, { tcpFlags: 18 }));
    c.tick(T0 + 300);
    const starts = flows('flow.start');
    expect(starts).toHaveLength(1);
    const f = starts[0]!.flow;
    expect(f.id).toBe('ct1');
    expect(f.nat).toEqual({ dnat: { from: '10.0.10.26:8000', to: '172.17.0.2:80' }, snat: null });
    expect(f.legs.map((l) => `${l.iface}/${l.direction}/${l.tuple.dst}:${l.tuple.dport}`)).toEqual([
      'eth0/orig/10.0.10.26:8000',
      'docker0/orig/172.17.0.2:80',
      'docker0/reply/10.0.10.5:40000',
      'eth0/reply/10.0.10.5:40000',
    ]);
    expect(f.legDelayUs).toBe(50);
    expect(f.names).toEqual([{ addr: '172.17.0.2', container: 'web', network: 'bridge' }]);
    expect(f.tcpState).toBe('SYN_SENT');
    // conntrack moves on, then destroys: an update then an end with the counters
    c.onConntrack([ev('update', { ...WEB, tcpState: 'ESTABLISHED', status: ['CONFIRMED', 'SEEN_REPLY', 'ASSURED'] }, T0 + 400)]);
    c.tick(T0 + 500);
    expect(flows('flow.update').at(-1)?.flow.tcpState).toBe('ESTABLISHED');
    c.onConntrack([ev('destroy', WEB, T0 + 600)]);
    // a late packet still joins during the grace period, then the flow ends
    c.onObservation(pkt('eth0', UP, T0 + 700, 60, { tcpFlags: 17 }));
    c.tick(T0 + 800);
    expect(flows('flow.end')).toHaveLength(0);
    c.tick(T0 + 2200);
    const end = flows('flow.end');
    expect(end).toHaveLength(1);
    expect(end[0]!.reason).toBe('destroyed');
    expect(end[0]!.flow.legs.find((l) => l.iface === 'eth0' && l.direction === 'orig')?.packets).toBe(2);
    // seq is strictly increasing
    const seqs = flows().map((e) => e.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it('holds packets that arrive before their conntrack event, then joins them', () => {
    const { c, flows } = harness();
    c.onObservation(pkt('eth0', UP, T0));
    c.onObservation(pkt('docker0', BR, T0 + 0.05));
    expect(c.stats().pendingNow).toBe(2);
    c.tick(T0 + 500);
    expect(flows()).toHaveLength(0);
    c.onConntrack([ev('new', WEB, T0 + 600)]);
    expect(c.stats()).toMatchObject({ pendingNow: 0, packetsHeld: 2, packetsHeldMatched: 2, packetsUnmatched: 0 });
    c.tick(T0 + 900);
    expect(flows('flow.start')[0]?.flow.legs).toHaveLength(2);
  });

  it('a packet that never gets an entry becomes a flow without conntrack after the hold, counted', () => {
    const { c, flows } = harness({ holdMs: 1000 });
    const drop = tcp('10.0.10.5', 34180, '172.17.0.2', 81);
    c.onObservation(pkt('eth0', drop, T0));
    c.onObservation(pkt('eth0', drop, T0 + 1000)); // SYN retransmit
    c.tick(T0 + 1100);
    c.tick(T0 + 1400);
    const s = flows('flow.start');
    expect(s).toHaveLength(1);
    expect(s[0]!.flow).toMatchObject({ id: 'pkt:tcp 10.0.10.5:34180>172.17.0.2:81', ctStatus: [], reply: null, tcpState: 'SYN_SENT' });
    expect(s[0]!.flow.legs.map((l) => l.iface)).toEqual(['eth0']); // never reached the bridge
    c.tick(T0 + 2100);
    // the first expired unmatched; the retransmit then joined the conntrack-less flow
    expect(c.stats().packetsUnmatched).toBe(1);
    c.flush();
    expect(flows('flow.end')[0]!.flow.legs[0]!.packets).toBe(2);
  });

  it('bounded: a full hold queue lets its oldest packets stop waiting (shown, counted), never loses the new one', () => {
    const { c, flows } = harness({ maxPending: 4 });
    // four tuples wait; the fifth packet finds the queue full: the oldest stops waiting and becomes its flow
    for (let i = 0; i < 5; i++) c.onObservation(pkt('eth0', tcp('1.1.1.1', 1000 + i, '2.2.2.2', 80), T0 + i));
    expect(c.stats()).toMatchObject({ pendingNow: 4, pendingEarly: 1, pendingOverflow: 0, packetsUnmatched: 1 });
    c.tick(T0 + 300); // the start delay
    expect(flows('flow.start').map((e) => e.flow.id)).toEqual(['pkt:tcp 1.1.1.1:1000>2.2.2.2:80']);
    // a later packet of that tuple joins its flow at once (a flood of untracked tuples stops filling the queue)
    c.onObservation(pkt('eth0', tcp('1.1.1.1', 1000, '2.2.2.2', 80), T0 + 310));
    expect(c.stats()).toMatchObject({ pendingNow: 4, pendingEarly: 1, packetsHeld: 5 });
    // an entry that comes for a packet still held is joined as usual
    const o = tcp('1.1.1.1', 1004, '2.2.2.2', 80);
    c.onConntrack([ev('new', entry('e4', o, tcp('2.2.2.2', 80, '1.1.1.1', 1004)), T0 + 311)]);
    expect(c.stats()).toMatchObject({ pendingNow: 3 });
    c.flush();
    const ends = flows('flow.end');
    expect(ends.find((e) => e.flow.id === 'pkt:tcp 1.1.1.1:1000>2.2.2.2:80')?.flow.legs[0]?.packets).toBe(2);
    expect(ends.find((e) => e.flow.id === 'e4')?.flow.legs[0]?.packets).toBe(1);
    // every packet is in a flow: 5 + 1
    expect(ends.reduce((n, e) => n + e.flow.legs.reduce((m, l) => m + l.packets, 0), 0)).toBe(6);
  });

  it('bounded: a packet over the hold queue byte budget is counted lost', () => {
    const { c } = harness({ maxPending: 3, maxPendingBytes: 100 });
    c.onObservation({ ...pkt('eth0', tcp('1.1.1.1', 1000, '2.2.2.2', 80), T0), wireLen: 200 });
    expect(c.stats()).toMatchObject({ pendingNow: 0, pendingOverflow: 1 });
  });

  it('bounded: the flow table evicts the oldest', () => {
    const { c, flows } = harness({ maxFlows: 2 });
    for (let i = 0; i < 4; i++) {
      const o = tcp('3.3.3.3', 2000 + i, '4.4.4.4', 80);
      c.onConntrack([ev('new', entry(`e${i}`, o, tcp('4.4.4.4', 80, '3.3.3.3', 2000 + i)), T0 + i)]);
      c.onObservation(pkt('eth0', o, T0 + i));
    }
    expect(c.stats()).toMatchObject({ flowsLive: 2, flowsEvicted: 2 });
    expect(flows('flow.end').map((e) => [e.flow.id, e.reason])).toEqual([
      ['e0', 'evicted'],
      ['e1', 'evicted'],
    ]);
  });

  it('idle flows end after the idle timeout', () => {
    const { c, flows } = harness({ idleTimeoutMs: 1000 });
    c.onConntrack([ev('new', WEB, T0)]);
    c.tick(T0 + 300);
    expect(flows('flow.start')).toHaveLength(0); // no packet yet: waits up to 4x the start delay
    c.tick(T0 + 1100);
    expect(flows('flow.start')).toHaveLength(1);
    c.tick(T0 + 2500);
    expect(flows('flow.end')[0]?.reason).toBe('idle');
    expect(c.stats().flowsIdled).toBe(1);
  });

  it('ICMP errors join the connection of the packet they carry', () => {
    const { c, flows } = harness();
    const udp: Tuple = { family: 4, proto: 'udp', protoNum: 17, src: '172.17.0.3', dst: '198.51.100.10', sport: 5000, dport: 53 };
    const e = entry('u1', udp, { ...udp, src: '198.51.100.10', dst: '10.0.10.26', sport: 53, dport: 5000 }, { tcpState: undefined as never });
    c.onConntrack([ev('new', e, T0)]);
    // port unreachable from outside, to the MASQUERADEd address, embedding the uplink packet
    const icmp: Tuple = {
      family: 4,
      proto: 'icmp',
      protoNum: 1,
      src: '198.51.100.10',
      dst: '10.0.10.26',
      sport: 0,
      dport: 0,
      icmpType: 3,
      icmpCode: 3,
    };
    c.onObservation(pkt('eth0', icmp, T0 + 1, 90, { inner: { ...udp, src: '10.0.10.26' } }));
    c.tick(T0 + 300);
    const f = flows('flow.start')[0]!.flow;
    expect(f.id).toBe('u1');
    expect(f.legs).toMatchObject([{ iface: 'eth0', direction: 'reply' }]);
  });

  it('explains each flow once, and again when the ruleset generation changes', () => {
    let calls = 0;
    const explainer = {
      generation: 1,
      explain: (_f: FlowInfo): Explanation => ({
        verdict: 'accept',
        steps: [],
        nat: { dnat: null, snat: null },
        packet_out: null,
        indeterminate: [],
      }),
    };
    const counting: FlowExplainer = {
      get generation() {
        return explainer.generation;
      },
      explain: (f) => {
        calls++;
        return explainer.explain(f);
      },
    };
    const { c, flows } = harness({ explainer: counting });
    c.onConntrack([ev('new', WEB, T0)]);
    c.onObservation(pkt('eth0', UP, T0));
    c.tick(T0 + 300);
    c.tick(T0 + 400);
    c.tick(T0 + 500);
    expect(calls).toBe(1);
    expect(flows('flow.start')[0]?.flow.explanation?.verdict).toBe('accept');
    explainer.generation = 2;
    explainer.explain = () => ({ verdict: 'drop', steps: [], nat: { dnat: null, snat: null }, packet_out: null, indeterminate: [] });
    c.tick(T0 + 600);
    expect(calls).toBe(2);
    expect(flows('flow.update').at(-1)?.flow.explanation?.verdict).toBe('drop');
  });

  it('links the two halves of a docker-proxy journey, and not the host talking to a container', () => {
    const linker = new DockerProxyLinker({
      proxies: () => [{ pid: 77, proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8000, containerIp: '172.17.0.2', containerPort: 80 }],
      gateways: () => new Set(['172.17.0.1']),
    });
    const { c, flows } = harness({ proxyLinker: linker });
    const front = entry('front', tcp('172.17.0.3', 34148, '10.0.10.26', 8000), tcp('10.0.10.26', 8000, '172.17.0.3', 34148));
    const back = entry('back', tcp('172.17.0.1', 36322, '172.17.0.2', 80), tcp('172.17.0.2', 80, '172.17.0.1', 36322));
    const host = entry('host', tcp('172.17.0.1', 39322, '172.17.0.2', 80), tcp('172.17.0.2', 80, '172.17.0.1', 39322));
    c.onConntrack([ev('new', front, T0)]);
    c.onConntrack([ev('new', back, T0 + 2)]);
    c.tick(T0 + 300);
    c.onConntrack([ev('new', host, T0 + 5000)]);
    c.tick(T0 + 5300);
    c.tick(T0 + 5400);
    const last = new Map(flows().map((e) => [e.flow.id, e.flow]));
    expect(last.get('front')?.proxiedBy).toMatchObject({ pid: 77, peerFlowId: 'back' });
    expect(last.get('back')?.proxiedBy).toMatchObject({ pid: 77, peerFlowId: 'front' });
    expect(last.get('host')?.proxiedBy).toBeUndefined();
    // both halves name the whole journey and the source web sees: docker-proxy's end, not the client
    for (const id of ['front', 'back'])
      expect(last.get(id)?.proxiedBy).toMatchObject({
        half: id === 'front' ? 'client' : 'container',
        client: front.orig,
        container: back.orig,
        containerSees: { addr: '172.17.0.1', port: 36322 },
      });
    expect(last.get('front')?.proxiedBy?.note).toBe(
      "docker-proxy (pid 77) ends 172.17.0.3:34148 -> 10.0.10.26:8000 and opens 172.17.0.1:36322 -> 172.17.0.2:80: the container sees 172.17.0.1:36322, never the client; the client's address 172.17.0.3 is lost to it",
    );
  });

  const v6 = (src: string, sport: number, dst: string, dport: number): Tuple => ({ ...tcp(src, sport, dst, dport), family: 6 });
  const PROXIES = [
    { pid: 70, proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8000, containerIp: '172.17.0.2', containerPort: 80 },
    { pid: 76, proto: 'tcp', hostIp: '::', hostPort: 8000, containerIp: '172.17.0.2', containerPort: 80 },
  ];

  it('an IPv6 client of docker-proxy on [::] and its IPv4 connection to the container: one journey, the IPv6 address lost', () => {
    const linker = new DockerProxyLinker({
      proxies: () => PROXIES,
      gateways: () => new Set(['172.17.0.1']),
      isLocal: (a) => a === 'fd00:10::26' || a === '10.0.10.26',
      // the backend socket is docker-proxy 76's; 70 (the 0.0.0.0 listener) sees it among the others
      sockets: (pid) => {
        const k = new Set(['tcp 172.17.0.1:50940>172.17.0.2:80']);
        return pid === 76 ? { owned: k, others: new Set() } : { owned: new Set(), others: k };
      },
    });
    const { c, flows } = harness({ proxyLinker: linker });
    const cl = v6('fd00:10::5', 34998, 'fd00:10::26', 8000);
    const front = entry('front6', cl, v6('fd00:10::26', 8000, 'fd00:10::5', 34998));
    const back = entry('back4', tcp('172.17.0.1', 50940, '172.17.0.2', 80), tcp('172.17.0.2', 80, '172.17.0.1', 50940));
    c.onConntrack([ev('new', front, T0), ev('new', back, T0 + 2)]);
    c.tick(T0 + 1100);
    const last = new Map(flows().map((e) => [e.flow.id, e.flow]));
    expect(last.get('front6')?.proxiedBy).toMatchObject({
      pid: 76,
      peerFlowId: 'back4',
      half: 'client',
      containerSees: { addr: '172.17.0.1', port: 50940 },
    });
    expect(last.get('back4')?.proxiedBy).toMatchObject({ pid: 76, peerFlowId: 'front6', half: 'container', client: cl });
    expect(last.get('front6')?.proxiedBy?.note).toBe(
      "docker-proxy (pid 76) ends [fd00:10::5]:34998 -> [fd00:10::26]:8000 and opens 172.17.0.1:50940 -> 172.17.0.2:80 (IPv6 in, IPv4 out): the container sees 172.17.0.1:50940, never the client; the client's IPv6 address fd00:10::5 is lost to it",
    );
    expect(linker).toMatchObject({ confirmed: 1, refuted: 0, linked: 1 });
  });

  it('a [::] listener alone is dual-stack: it takes IPv4 clients too; beside a 0.0.0.0 listener it does not', () => {
    const only6 = new DockerProxyLinker({ proxies: () => [PROXIES[1]!], gateways: () => new Set(['172.17.0.1']), isLocal: () => true });
    const both = new DockerProxyLinker({ proxies: () => PROXIES, gateways: () => new Set(['172.17.0.1']), isLocal: () => true });
    const f4 = (id: string): FlowInfo => ({
      id,
      orig: tcp('10.0.10.5', 41000, '10.0.10.26', 8000),
      reply: tcp('10.0.10.26', 8000, '10.0.10.5', 41000),
      nat: { dnat: null, snat: null },
      legs: [],
      names: [],
      ctStatus: ['CONFIRMED'],
      explanation: null,
      drops: [],
    });
    expect(only6.onFlow(f4('a'), 0)[0]?.proxiedBy.pid).toBe(76);
    expect(both.onFlow(f4('b'), 0)[0]?.proxiedBy.pid).toBe(70);
    // and an IPv6 client never goes to the 0.0.0.0 listener
    const f6: FlowInfo = { ...f4('c'), orig: v6('fd00:10::5', 41000, 'fd00:10::26', 8000), reply: null };
    expect(both.onFlow(f6, 0)[0]?.proxiedBy.pid).toBe(76);
    expect(new DockerProxyLinker({ proxies: () => [PROXIES[0]!], gateways: () => new Set(), isLocal: () => true }).onFlow(f6, 0)).toEqual([]);
  });

  it('an IPv6 client with no conntrack entry (no ip6 rule tracks IPv6): its packets still join the IPv4 backend that came first', () => {
    const linker = new DockerProxyLinker({
      proxies: () => PROXIES,
      gateways: () => new Set(['172.17.0.1']),
      isLocal: (a) => a === 'fd00:10::26' || a === '10.0.10.26',
    });
    const { c, flows } = harness({ proxyLinker: linker });
    const cl = v6('fd00:10::5', 35000, 'fd00:10::26', 8000);
    const back = entry('back4', tcp('172.17.0.1', 50942, '172.17.0.2', 80), tcp('172.17.0.2', 80, '172.17.0.1', 50942));
    c.onObservation(pkt('eth0', cl, T0));
    c.onConntrack([ev('new', back, T0 + 3)]);
    // an IPv4 client of the same port meanwhile: its own docker-proxy (70), its own half
    const front4 = entry('front4', tcp('10.0.10.5', 41000, '10.0.10.26', 8000), tcp('10.0.10.26', 8000, '10.0.10.5', 41000));
    c.onConntrack([ev('new', front4, T0 + 1500)]);
    c.tick(T0 + 3000); // the IPv6 packet's hold expires: a flow of its own
    c.tick(T0 + 3500);
    const last = new Map(flows().map((e) => [e.flow.id, e.flow]));
    const f6 = [...last.values()].find((f) => f.orig.src === 'fd00:10::5');
    expect(f6?.ctStatus).toEqual([]);
    expect(f6?.proxiedBy).toMatchObject({ pid: 76, peerFlowId: 'back4', half: 'client', containerSees: { addr: '172.17.0.1', port: 50942 } });
    expect(last.get('back4')?.proxiedBy).toMatchObject({ pid: 76, peerFlowId: f6?.id, half: 'container' });
    expect(last.get('front4')?.proxiedBy).toMatchObject({ pid: 70, peerFlowId: null, half: 'client', containerSees: null });
  });

  it("with -p 80:80 a container's outbound HTTP and direct access to a container are not docker-proxy's", () => {
    const local = new Set(['10.0.10.26', '127.0.0.1', '172.17.0.1']);
    const linker = new DockerProxyLinker({
      proxies: () => [{ pid: 77, proto: 'tcp', hostIp: '0.0.0.0', hostPort: 80, containerIp: '172.17.0.2', containerPort: 80 }],
      gateways: () => new Set(['172.17.0.1']),
      isLocal: (a) => local.has(a),
    });
    const { c, flows } = harness({ proxyLinker: linker });
    const out = entry('out', tcp('172.17.0.3', 40100, '198.51.100.10', 80), tcp('198.51.100.10', 80, '10.0.10.26', 40100));
    const direct = entry('direct', tcp('10.0.10.5', 40200, '172.17.0.2', 80), tcp('172.17.0.2', 80, '10.0.10.5', 40200));
    const front = entry('front', tcp('172.17.0.3', 40300, '10.0.10.26', 80), tcp('10.0.10.26', 80, '172.17.0.3', 40300));
    c.onConntrack([ev('new', out, T0), ev('new', direct, T0 + 1), ev('new', front, T0 + 2)]);
    c.tick(T0 + 1100);
    const last = new Map(flows().map((e) => [e.flow.id, e.flow]));
    expect(last.get('out')?.proxiedBy).toBeUndefined();
    expect(last.get('direct')?.proxiedBy).toBeUndefined();
    expect(last.get('front')?.proxiedBy).toMatchObject({ pid: 77, peerFlowId: null });
  });

  it('the socket tables refute a backend half held by another process (live)', () => {
    const linker = new DockerProxyLinker({
      proxies: () => [{ pid: 77, proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8000, containerIp: '172.17.0.2', containerPort: 80 }],
      gateways: () => new Set(['172.17.0.1']),
      sockets: () => ({ owned: new Set(['tcp 172.17.0.1:36322>172.17.0.2:80']), others: new Set(['tcp 172.17.0.1:39322>172.17.0.2:80']) }),
    });
    const { c, flows } = harness({ proxyLinker: linker });
    const front = entry('front', tcp('172.17.0.3', 34148, '10.0.10.26', 8000), tcp('10.0.10.26', 8000, '172.17.0.3', 34148));
    const other = entry('other', tcp('172.17.0.1', 39322, '172.17.0.2', 80), tcp('172.17.0.2', 80, '172.17.0.1', 39322));
    const back = entry('back', tcp('172.17.0.1', 36322, '172.17.0.2', 80), tcp('172.17.0.2', 80, '172.17.0.1', 36322));
    c.onConntrack([ev('new', front, T0), ev('new', other, T0 + 1), ev('new', back, T0 + 2)]);
    c.tick(T0 + 1100);
    const last = new Map(flows().map((e) => [e.flow.id, e.flow]));
    expect(last.get('other')?.proxiedBy).toBeUndefined();
    expect(last.get('front')?.proxiedBy?.peerFlowId).toBe('back');
    expect(linker).toMatchObject({ confirmed: 1, refuted: 1, linked: 1 });
  });

  it('flush ends every flow once, starting the ones never shown', () => {
    const { c, flows } = harness();
    c.onConntrack([ev('new', WEB, T0)]);
    c.onObservation(pkt('eth0', UP, T0));
    c.flush('shutdown');
    expect(flows().map((e) => e.type)).toEqual(['flow.start', 'flow.end']);
    expect(flows('flow.end')[0]?.reason).toBe('shutdown');
    expect(c.liveFlows).toBe(0);
  });

  it('joins kernel drops to their flow, also when the flow appears later (held packets)', () => {
    const { c, flows } = harness({ holdMs: 500 });
    const drop = tcp('10.0.10.5', 34180, '172.17.0.2', 81);
    const d = {
      timeUs: T0 * 1000 + 10,
      reason: 'NETFILTER_DROP',
      iface: 'eth0',
      tuple: drop,
      rule: { table: 'filter', chain: 'FORWARD', rule: null },
    };
    c.onObservation(pkt('eth0', drop, T0));
    expect(c.onDrop(d, drop)).toBeNull(); // the packet is still held: the drop waits with it
    c.tick(T0 + 600);
    c.tick(T0 + 900);
    expect(flows('flow.start')[0]?.flow.drops).toEqual([d]);
    // a drop of a known connection joins at once, by its conntrack original tuple
    c.onConntrack([ev('new', WEB, T0 + 1000)]);
    expect(c.onDrop({ ...d, tuple: BR }, UP)).toBe('ct1');
    expect(c.stats()).toMatchObject({ drops: 2, dropsUnjoined: 0 });
  });

  it('ignores link-local control traffic without conntrack (ND, MLD), counted', () => {
    const { c, flows } = harness();
    const rs: Tuple = { family: 6, proto: 'icmpv6', protoNum: 58, src: 'fe80::1', dst: 'ff02::2', sport: 0, dport: 0, icmpType: 133, icmpCode: 0 };
    c.onObservation(pkt('eth0', rs, T0));
    c.flush();
    expect(flows()).toHaveLength(0);
    expect(c.stats().linkControl).toBe(1);
  });
});
