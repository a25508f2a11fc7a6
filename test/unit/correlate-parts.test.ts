/**
 * The correlator's parts, each on its own (hold queue, drop stash, legs and true copies, the
 * FlowInfo view), and "packets that merely look alike are counted once" through a whole replay.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Correlator } from '../../src/correlate/correlator.js';
import { DropStash } from '../../src/correlate/drop-stash.js';
import { flowInfo, legsOf, newFlowState } from '../../src/correlate/flow-state.js';
import { HoldQueue } from '../../src/correlate/hold-queue.js';
import { isCopy, recordLeg } from '../../src/correlate/legs.js';
import { decodeFrame, observationFromView, PacketView } from '../../src/decode/index.js';
import type { DropInfo, FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import type { Explanation } from '../../src/model/explanation.js';
import type { FrameBatch, Observation } from '../../src/model/observation.js';
import type { Tuple } from '../../src/model/tuple.js';
import { startPipeline } from '../../src/pipeline/pipeline.js';
import { pcapBytes } from './pcap-bytes.js';

const T0 = 1_700_000_000_000;
const udp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'udp', protoNum: 17, src, dst, sport, dport });
const U = udp('10.0.0.1', 49152, '10.0.0.2', 3784);
const obs = (ms: number, fp: number | undefined, extra: Partial<Observation> = {}): Observation => ({
  timeUs: ms * 1000,
  iface: 'eth0',
  tuple: U,
  wireLen: 66,
  ipId: 0,
  ...(fp !== undefined ? { fingerprint: fp } : {}),
  ...extra,
});

/** An Ethernet + IPv4 + UDP frame (DF, IP id 0, as Linux sends UDP), checksums computed. */
function udpFrame(payload: Buffer, id = 0): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip.writeUInt16BE(id, 4);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 255;
  ip[9] = 17;
  Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]).copy(ip, 12);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  const u = Buffer.alloc(8);
  u.writeUInt16BE(49152, 0);
  u.writeUInt16BE(3784, 2);
  u.writeUInt16BE(8 + payload.length, 4);
  let s2 = 0;
  const body = Buffer.concat([u, payload, payload.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
  for (let i = 0; i < body.length; i += 2) s2 += body.readUInt16BE(i);
  s2 += 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 8 + payload.length;
  while (s2 > 0xffff) s2 = (s2 & 0xffff) + (s2 >>> 16);
  u.writeUInt16BE(~s2 & 0xffff || 0xffff, 6);
  const eth = Buffer.from('020000000002020000000001' + '0800', 'hex');
  return Buffer.concat([eth, ip, u, payload]);
}

function observe(frame: Buffer): Observation {
  const b: FrameBatch = {
    iface: 'eth0',
    linkType: 1,
    data: frame,
    offsets: Uint32Array.of(0),
    lengths: Uint32Array.of(frame.length),
    wireLengths: Uint32Array.of(frame.length),
    timesUs: Float64Array.of(T0 * 1000),
    count: 1,
  };
  const v = new PacketView();
  expect(decodeFrame(b, 0, v)).toBe(true);
  return observationFromView(v, 'eth0') as Observation;
}

describe('HoldQueue', () => {
  it('is bounded by packets and by bytes; take() gives back every key in arrival order; expire() the oldest first', () => {
    const q = new HoldQueue(3, 200);
    expect(q.hold(obs(0, 1), 'a', 0)).toBe(true);
    expect(q.hold(obs(1, 2, { tuple: udp('10.0.0.2', 3784, '10.0.0.1', 49152) }), 'b', 1)).toBe(true);
    expect(q.hold(obs(2, 3), 'a', 2)).toBe(true);
    expect(q.hold(obs(3, 4), 'a', 3)).toBe(false); // 3 packets
    expect(q.size).toBe(3);
    expect(q.bytes).toBe(198);
    const big = new HoldQueue(10, 100);
    expect(big.hold(obs(0, 1, { wireLen: 60 }), 'a', 0)).toBe(true);
    expect(big.hold(obs(0, 1, { wireLen: 60 }), 'a', 0)).toBe(false); // 120 bytes > 100
    // both directions of one connection come out in the order they came in
    expect(q.take(['b', 'a']).map((h) => h.obs.fingerprint)).toEqual([1, 2, 3]);
    expect(q.size).toBe(0);
    q.hold(obs(10, 5), 'a', 10);
    q.hold(obs(11, 6), 'c', 11);
    expect(q.expire(1010, 1000).map((h) => h.obs.fingerprint)).toEqual([5]);
    expect(q.expire(1011, 1000).map((h) => h.obs.fingerprint)).toEqual([6]);
    expect(q.take(['a', 'c'])).toEqual([]);
  });
});

describe('DropStash', () => {
  const drop = (n: number): DropInfo => ({ timeUs: n, reason: 'NETFILTER_DROP', iface: 'eth0', tuple: U, rule: null });
  it('keeps the last drops per key, counts what it gives up, and expires the oldest keys', () => {
    const s = new DropStash(2, 2);
    s.add('a', drop(1), 0);
    s.add('a', drop(2), 0);
    s.add('a', drop(3), 0);
    expect(s.unjoined).toBe(1);
    s.add('b', drop(4), 5);
    s.add('c', drop(5), 6); // a third key: the oldest (a, 2 drops) goes
    expect(s.unjoined).toBe(3);
    expect(s.take(['b']).map((d) => d.timeUs)).toEqual([4]);
    s.expire(7);
    expect(s.unjoined).toBe(4);
    expect(s.size).toBe(0);
  });
});

describe('legs: what is on the wire is counted; only a true copy of one frame is counted once', () => {
  it('fingerprints tell distinct packets with the same IP id and length apart, and match a true copy', () => {
    const a = observe(udpFrame(Buffer.from('BFD control packet #1')));
    const b = observe(udpFrame(Buffer.from('BFD control packet #2')));
    const a2 = observe(udpFrame(Buffer.from('BFD control packet #1')));
    expect(a.ipId).toBe(b.ipId);
    expect(a.wireLen).toBe(b.wireLen);
    expect(a.fingerprint).not.toBe(b.fingerprint);
    expect(a.fingerprint).toBe(a2.fingerprint);
  });

  it('a copy is the same fingerprint less than 1 ms later on the same leg, never earlier', () => {
    const f = newFlowState('x', null, U, null, undefined, T0);
    expect(recordLeg(f, obs(T0, 7), 'orig')).toBe('new-leg');
    const leg = f.firstLeg;
    expect(isCopy(f, leg, obs(T0 + 0.5, 7))).toBe(true);
    expect(isCopy(f, leg, obs(T0 + 0.5, 8))).toBe(false); // another packet, same id and length
    expect(isCopy(f, leg, obs(T0 + 1000, 7))).toBe(false); // a second later: a new packet
    expect(isCopy(f, leg, obs(T0 - 0.5, 7))).toBe(false); // a negative gap never passes
    expect(isCopy(f, leg, obs(T0 + 0.5, undefined))).toBe(false); // nothing to compare
    expect(recordLeg(f, obs(T0 + 0.5, 7), 'orig')).toBe('copy');
    expect(recordLeg(f, obs(T0 + 0.6, 8), 'orig')).toBe('counted');
    expect(recordLeg(f, obs(T0 + 1000, 8), 'orig')).toBe('counted');
    expect(legsOf(f)).toMatchObject([{ packets: 3, bytes: 198, firstUs: T0 * 1000, lastUs: (T0 + 1000) * 1000 }]);
  });

  it('a copy is of the latest packet of the leg: a fingerprint of -1 on a new leg is counted, a packet without one has no copy', () => {
    const f = newFlowState('y', null, U, null, undefined, T0);
    expect(recordLeg(f, obs(T0, -1), 'orig')).toBe('new-leg');
    expect(recordLeg(f, obs(T0 + 0.2, -1), 'orig')).toBe('copy');
    expect(recordLeg(f, obs(T0 + 0.3, undefined), 'orig')).toBe('counted');
    expect(recordLeg(f, obs(T0 + 0.4, undefined), 'orig')).toBe('counted');
    // a late packet (out of order) is counted and leaves the latest packet's fingerprint in place
    expect(recordLeg(f, obs(T0 + 0.5, 9), 'orig')).toBe('counted');
    expect(recordLeg(f, obs(T0 + 0.1, 5), 'orig')).toBe('counted');
    expect(recordLeg(f, obs(T0 + 0.6, 9), 'orig')).toBe('copy');
    expect(legsOf(f)).toMatchObject([{ packets: 5, firstUs: T0 * 1000, lastUs: (T0 + 0.5) * 1000 }]);
  });
});

describe('flowInfo', () => {
  it('is a copy of the flow: legs, the delay between the first two original legs, a TCP state from flags without conntrack', () => {
    const t: Tuple = { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 };
    const f = newFlowState('pkt:x', null, t, null, undefined, T0);
    recordLeg(f, { timeUs: 2000, iface: 'docker0', tuple: t, wireLen: 60, tcpFlags: 2 }, 'orig');
    recordLeg(f, { timeUs: 1000, iface: 'eth0', tuple: t, wireLen: 60, tcpFlags: 2 }, 'orig');
    const info = flowInfo(f);
    expect(info.legDelayUs).toBe(1000);
    expect(info.tcpState).toBe('SYN_SENT');
    recordLeg(f, { timeUs: 3000, iface: 'eth0', tuple: t, wireLen: 60, tcpFlags: 4 }, 'orig');
    expect(info.legs.map((l) => l.packets)).toEqual([1, 1]);
    expect(flowInfo(f).tcpState).toBe('RST');
  });
});

describe('Correlator: held packets keep their order', () => {
  it('five equal packets a second apart, waiting for an entry that never comes, are five packets', () => {
    const events: JourneyEvent[] = [];
    const c = new Correlator({ emit: (e) => events.push(e), holdMs: 1000 });
    for (let i = 0; i < 5; i++) {
      c.onObservation(obs(T0 + i * 500, 42));
      c.tick(T0 + i * 500);
    }
    c.flush();
    const end = events.filter((e): e is FlowEvent => e.type === 'flow.end');
    expect(end).toHaveLength(1);
    expect(end[0]!.flow.legs[0]).toMatchObject({ packets: 5, firstUs: T0 * 1000, lastUs: (T0 + 2000) * 1000 });
    expect(c.stats().sameTwice).toBe(0);
  });

  it('flow.start comes with the first packet when there is no start delay', () => {
    const events: JourneyEvent[] = [];
    const c = new Correlator({ emit: (e) => events.push(e), startDelayMs: 0 });
    c.onConntrack([
      {
        type: 'new',
        time: T0,
        entry: { id: 'c1', orig: U, reply: udp('10.0.0.2', 3784, '10.0.0.1', 49152), status: [], mark: 0, zone: 0, timeout: 30, source: 'proc' },
      },
    ]);
    expect(events).toHaveLength(0);
    c.onObservation(obs(T0 + 1, 1));
    expect(events.map((e) => e.type)).toEqual(['flow.start']);
    c.onObservation(obs(T0 + 2, 2, { iface: 'docker0' }));
    c.tick(T0 + 100);
    expect(events.map((e) => e.type)).toEqual(['flow.start', 'flow.update']);
    expect((events[1] as FlowEvent).flow.legs).toHaveLength(2);
  });
});

describe('pipeline: flow.start as soon as the first packet joins its conntrack entry', () => {
  it('by default flow.start carries the first leg and the later legs come as flow.update', async () => {
    const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;
    const p = await startPipeline({ read: [`${DIR}eth0.pcap`, `${DIR}docker0.pcap`], conntrackSnapshot: `${DIR}conntrack.txt`, dockerHost: false });
    const evs: JourneyEvent[] = [];
    p.on('event', (e) => evs.push(e));
    await p.done;
    const flows = evs.filter((e): e is FlowEvent => e.type.startsWith('flow.'));
    const start = flows.find((e) => e.type === 'flow.start' && e.flow.orig.dport === 8000 && e.flow.orig.src === '10.0.10.5');
    expect(start?.flow.legs).toHaveLength(1);
    const later = flows.filter((e) => e.flow.id === start?.flow.id && e.seq > (start?.seq ?? 0));
    expect(later.some((e) => e.type === 'flow.update' && e.flow.legs.some((l) => l.iface === 'docker0'))).toBe(true);
    // the start comes with the packets (no 250 ms wait)
    expect(Math.abs(start!.time - start!.flow.legs[0]!.firstUs / 1000)).toBeLessThan(5);
  });
});

describe('Correlator: explained where the first packet came in', () => {
  it('a leg captured earlier but delivered later (another interface, another batch) is explained again', () => {
    const events: JourneyEvent[] = [];
    const asked: string[] = [];
    const explainer = {
      generation: 1,
      explain: (f: FlowInfo): Explanation | null => {
        const first = [...f.legs].filter((l) => l.direction === 'orig').sort((a, b) => a.firstUs - b.firstUs)[0];
        asked.push(first?.iface ?? '-');
        return {
          verdict: 'accept',
          steps: [],
          nat: { dnat: null, snat: null },
          packet_out: null,
          indeterminate: [],
          notes: [`from ${first?.iface}`],
        } as unknown as Explanation;
      },
    };
    const c = new Correlator({ emit: (e) => events.push(e), startDelayMs: 0, explainer });
    const inside = udp('172.17.0.3', 5000, '198.51.100.10', 53);
    const masq = udp('10.0.10.26', 5000, '198.51.100.10', 53);
    const e = {
      id: 'm1',
      orig: inside,
      reply: udp('198.51.100.10', 53, '10.0.10.26', 5000),
      status: [],
      mark: 0,
      zone: 0,
      timeout: 30,
      source: 'proc' as const,
    };
    c.onConntrack([{ type: 'new', time: T0, entry: e }]);
    c.onObservation(obs(T0 + 0.2, 1, { iface: 'eth0', tuple: masq })); // the uplink's batch first
    c.onObservation(obs(T0 + 0.1, 2, { iface: 'docker0', tuple: inside })); // captured earlier on the bridge
    c.tick(T0 + 100);
    expect(asked).toEqual(['eth0', 'docker0']);
    const last = events.filter((x): x is FlowEvent => x.type.startsWith('flow.')).at(-1)!;
    expect(last.flow.explanation?.notes).toEqual(['from docker0']);
  });
});

describe('a replay counts what is on the wire', () => {
  it('distinct packets under 1 ms apart, equal packets a second apart and a negative gap are all counted; a true copy once', async () => {
    const d = mkdtempSync(join(tmpdir(), 'jp-copies-'));
    try {
      const t = T0 * 1000;
      const recs: [number, Buffer][] = [
        [t, udpFrame(Buffer.from('payload number one'))],
        [t + 100, udpFrame(Buffer.from('payload number two'))], // same id and length, 100 µs later
        [t + 150, udpFrame(Buffer.from('payload number two'))], // a true copy of the one before: counted once
        [t + 1_000_000, udpFrame(Buffer.from('BFD 0000000000000'))],
        [t + 2_000_000, udpFrame(Buffer.from('BFD 0000000000000'))], // equal, a second later
        [t + 1_999_900, udpFrame(Buffer.from('BFD 0000000000000'))], // equal, 100 µs EARLIER (out of order)
      ];
      writeFileSync(join(d, 'eth0.pcap'), pcapBytes(recs));
      const p = await startPipeline({ read: [join(d, 'eth0.pcap')], dockerHost: false, explain: false, kernel: false });
      const evs: JourneyEvent[] = [];
      p.on('event', (e) => evs.push(e));
      await p.done;
      const ends = evs.filter((e): e is FlowEvent => e.type === 'flow.end');
      const packets = ends.reduce((n, e) => n + e.flow.legs.reduce((m, l) => m + l.packets, 0), 0);
      expect(packets).toBe(recs.length - 1);
      expect(p.stats().flows.sameTwice).toBe(1);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
