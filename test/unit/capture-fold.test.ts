/**
 * Folding in the native capture addon (native-bindings/capture/src/capture-fold.c): runs of one
 * IPv4 TCP/UDP tuple's packets become one batch entry. Checked on a designed sequence (what is
 * folded, what goes alone and why), then as a property: on random streams of several tuples on
 * two interfaces (interleaved runs, true copies of a frame less and more than 1 ms later, TCP
 * SYN/FIN/RST, packets without a conntrack entry, fragments), the correlator fed the folded batches
 * ends with exactly the flows, legs, counters and per-interface account it ends with fed every
 * frame. The files are read by the addon (openOffline) through the pipe's MessageReader, as the
 * worker's batches are; the reference by journey's own pcap reader.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadCaptureAddon } from '../../src/capture/native-addon.js';
import { readCaptureFiles } from '../../src/capture/pcap-file.js';
import { MSG_BATCH_FOLDED, MessageReader } from '../../src/capture/protocol.js';
import { Correlator } from '../../src/correlate/correlator.js';
import { FragmentPorts, PacketView, SkipCounters } from '../../src/decode/index.js';
import type { ConntrackEntry } from '../../src/model/conntrack.js';
import type { JourneyEvent } from '../../src/model/events.js';
import { FOLD_VOUCHED, type FrameBatch } from '../../src/model/observation.js';
import type { Tuple } from '../../src/model/tuple.js';
import { intakeBatch } from '../../src/pipeline/frame-intake.js';
import { LossLedger } from '../../src/pipeline/loss-ledger.js';
import { pcapBytes } from './pcap-bytes.js';

const tmp = mkdtempSync(join(tmpdir(), 'journey-fold-'));
const T0 = 1_795_407_381_000_000;

interface Pkt {
  proto: 6 | 17;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** IP id: distinct packets differ in it; a true copy repeats the whole frame. */
  id: number;
  flags?: number;
  fragment?: boolean;
  payload?: number;
}

/** Ethernet + IPv4 + TCP/UDP, checksums made up (journey reads, never verifies them). */
function frame(p: Pkt): Buffer {
  const l4 = p.proto === 6 ? 20 : 8;
  const pay = p.payload ?? 6;
  const b = Buffer.alloc(14 + 20 + l4 + pay);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(20 + l4 + pay, 16);
  b.writeUInt16BE(p.id, 18);
  if (p.fragment) b.writeUInt16BE(0x2000, 20); // more fragments
  b[22] = 64;
  b[23] = p.proto;
  b.writeUInt16BE((p.id * 31 + 7) & 0xffff, 24);
  Buffer.from(p.src.split('.').map(Number)).copy(b, 26);
  Buffer.from(p.dst.split('.').map(Number)).copy(b, 30);
  b.writeUInt16BE(p.sport, 34);
  b.writeUInt16BE(p.dport, 36);
  if (p.proto === 6) {
    b.writeUInt32BE(p.id * 1000, 38);
    b.writeUInt32BE(7, 42);
    b[46] = 0x50;
    b[47] = p.flags ?? 0x10;
    b.writeUInt16BE((p.id * 17) & 0xffff, 50);
  } else {
    b.writeUInt16BE(8 + pay, 38);
    b.writeUInt16BE((p.id * 13) & 0xffff, 40);
  }
  return b;
}

function pcapFile(name: string, frames: { f: Buffer; us: number }[]): string {
  const path = join(tmp, name);
  writeFileSync(path, pcapBytes(frames.map(({ f, us }) => [us, f] as const)));
  return path;
}

/** The file as the worker's batches: read by the addon with folding, through the pipe's reader. */
function foldedBatches(path: string, iface: string, maxFrames = 1024): FrameBatch[] {
  const l = loadCaptureAddon();
  if (!l.ok) throw new Error(`the native capture addon must be built (scripts/setup): ${l.reason}`);
  const a = l.addon;
  const o = a.openOffline(path, { msgType: MSG_BATCH_FOLDED, fold: true });
  const got: FrameBatch[] = [];
  const reader = new MessageReader(
    () => iface,
    () => o.linkType,
    () => undefined,
    (b) => got.push(b),
  );
  let taken = 0;
  let open = 0;
  for (;;) {
    const r = a.nextBatchSync(o.handle, maxFrames, 1 << 20, 0);
    taken += r.count;
    open = r.open;
    if (r.data === null) break;
    reader.push(r.data);
  }
  a.close(o.handle);
  // every packet taken from the file is in an entry once the file has ended: no run left behind
  expect(open).toBe(0);
  let inEntries = 0;
  for (const b of got) for (let i = 0; i < b.count; i++) inEntries += b.folds?.packets[i] as number;
  expect(inEntries).toBe(taken);
  return got;
}

async function plainBatches(path: string, iface: string): Promise<FrameBatch[]> {
  const out: FrameBatch[] = [];
  for await (const b of readCaptureFiles([{ path, iface }])) out.push(b);
  return out;
}

const udp = (id: number, more: Partial<Pkt> = {}): Pkt => ({ proto: 17, src: '10.0.0.1', sport: 40000, dst: '10.0.0.2', dport: 53, id, ...more });
const tcpA = (id: number, flags: number): Pkt => ({ proto: 6, src: '10.0.0.1', sport: 40001, dst: '10.0.0.2', dport: 80, id, flags });

describe('folding runs in the capture addon', () => {
  it('keeps the run of a tuple across packets of other tuples, hands it over before its next packet that goes alone, and sends copies, SYN/FIN/RST and fragments alone', () => {
    const seq: Array<[Pkt, number]> = [
      [udp(1), 0], // first of its tuple: alone, not vouched
      [udp(2), 10], // vouched: opens the tuple's run
      [udp(3, { payload: 100 }), 20],
      [udp(4), 30], // the run: 3 packets, its frame the latest's
      [udp(4), 35], // the same frame 5 µs later: a possible copy, alone (the run goes before it)
      [udp(5), 40], // a run again
      [udp(6, { sport: 40002 }), 45], // another tuple: alone (its first), the run stays open
      [udp(7), 50], // joins the run across the other tuple's packet
      [tcpA(1, 0x02), 60], // SYN: alone
      [tcpA(2, 0x10), 70],
      [tcpA(3, 0x18), 80], // ACK, PSH|ACK: one run, flags 0x18
      [tcpA(4, 0x11), 90], // FIN|ACK: alone, vouched (the run goes before it)
      [tcpA(5, 0x10), 100], // a run again
      [udp(8, { fragment: true }), 110], // a fragment: every open run goes before it, in the order they opened
      [udp(4), 2_000], // the frame of id 4 again, 2 ms later: not a copy (a retransmission), vouched: a run
      [udp(9), 1_003_000], // the tuple quiet for a second: alone, not vouched (a new connection may reuse the tuple)
      [udp(10), 1_003_010], // a run again, handed over at the end of the file
    ];
    const path = pcapFile(
      'designed.pcap',
      seq.map(([p, us]) => ({ f: frame(p), us: T0 + us })),
    );
    const bs = foldedBatches(path, 'eth0');
    const b = bs[0]!;
    const f = b.folds!;
    const rows = bs.flatMap((b) =>
      Array.from({ length: b.count }, (_, i) => [
        b.folds!.packets[i],
        (b.timesUs[i] as number) - T0,
        (b.folds!.firstUs[i] as number) - T0,
        b.wireLengths[i],
        (b.folds!.aux[i] as number) & FOLD_VOUCHED ? 'vouched' : '-',
        (b.folds!.aux[i] as number) & 0xff,
      ]),
    );
    const u = 14 + 20 + 8 + 6;
    const t = 14 + 20 + 20 + 6;
    expect(rows).toEqual([
      [1, 0, 0, u, '-', 0],
      [3, 30, 10, u + (u + 94) + u, 'vouched', 0],
      [1, 35, 35, u, '-', 0],
      [1, 45, 45, u, '-', 0],
      [1, 60, 60, t, '-', 0],
      [2, 80, 70, 2 * t, 'vouched', 0x18],
      [1, 90, 90, t, 'vouched', 0x11],
      [2, 50, 40, 2 * u, 'vouched', 0],
      [1, 100, 100, t, 'vouched', 0x10],
      [1, 110, 110, u, '-', 0],
      [1, 2000, 2000, u, 'vouched', 0],
      [1, 1_003_000, 1_003_000, u, '-', 0],
      [1, 1_003_010, 1_003_010, u, 'vouched', 0],
    ]);
    // a run's frame is its latest packet's, byte for byte
    const at = (i: number): string => Buffer.from(b.data.subarray(b.offsets[i], (b.offsets[i] as number) + (b.lengths[i] as number))).toString('hex');
    expect(at(1)).toBe(frame(udp(4)).toString('hex'));
    expect(at(5)).toBe(frame(tcpA(3, 0x18)).toString('hex'));
    expect(f.packets.length).toBe(b.count);
  });

  it('hands a run over 50 ms after its first packet (by the packets clock), also while its tuple is quiet', () => {
    const seq: Array<[Pkt, number]> = [
      [udp(1), 0],
      [udp(2), 10], // opens the run
      [udp(3), 20],
      [udp(4, { sport: 40009 }), 30_000], // another tuple, 30 ms on: the run is 30 ms old, kept
      [udp(5, { sport: 40010 }), 70_000], // 70 ms: the run (opened at 10 µs) is due
    ];
    const path = pcapFile(
      'window.pcap',
      seq.map(([p, us]) => ({ f: frame(p), us: T0 + us })),
    );
    // one entry a call: each call ends after one packet that goes alone, and looks at the open runs then
    const rows = foldedBatches(path, 'eth0', 1).flatMap((b) =>
      Array.from({ length: b.count }, (_, i) => [b.folds!.packets[i], (b.folds!.firstUs[i] as number) - T0, (b.timesUs[i] as number) - T0]),
    );
    expect(rows).toEqual([
      [1, 0, 0],
      [1, 30_000, 30_000],
      [1, 70_000, 70_000],
      [2, 10, 20],
    ]);
  });

  it('gives the correlator the same flows, legs, counters and account as every frame does (random streams, 2 interfaces)', async () => {
    const tuples: Array<Omit<Pkt, 'id'>> = [
      { proto: 17, src: '10.0.0.1', sport: 40000, dst: '10.0.0.2', dport: 53 },
      { proto: 17, src: '10.0.0.2', sport: 53, dst: '10.0.0.1', dport: 40000 },
      { proto: 6, src: '10.0.0.1', sport: 40001, dst: '10.0.0.2', dport: 80 },
      { proto: 6, src: '10.0.0.2', sport: 80, dst: '10.0.0.1', dport: 40001 },
      { proto: 17, src: '10.0.0.9', sport: 1234, dst: '10.0.0.2', dport: 9 }, // no conntrack entry: a flow of its own
    ];
    const tup = (p: Omit<Pkt, 'id'>): Tuple => ({
      family: 4,
      proto: p.proto === 6 ? 'tcp' : 'udp',
      protoNum: p.proto,
      src: p.src,
      dst: p.dst,
      sport: p.sport,
      dport: p.dport,
    });
    const entries: ConntrackEntry[] = [0, 2].map((k) => ({
      id: String(k + 1),
      orig: tup(tuples[k]!),
      reply: tup(tuples[k + 1]!),
      status: ['SEEN_REPLY', 'CONFIRMED'],
      mark: 0,
      zone: 0,
      timeout: 100,
      source: 'netlink',
    }));
    const step = fc.record({
      tuple: fc.integer({ min: 0, max: tuples.length - 1 }),
      run: fc.integer({ min: 1, max: 5 }),
      gapUs: fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.constant(60_000), fc.constant(1_200_000)),
      copy: fc.constantFrom('none', 'none', 'none', 'soon', 'late'),
      flags: fc.constantFrom(0x10, 0x10, 0x18, 0x02, 0x11, 0x04),
      fragment: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      payload: fc.integer({ min: 0, max: 40 }),
      iface: fc.constantFrom('eth0', 'docker0'),
    });
    let trial = 0;
    let foldedAway = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 60 }), async (steps) => {
        trial++;
        const byIface = new Map<string, { f: Buffer; us: number }[]>([
          ['eth0', []],
          ['docker0', []],
        ]);
        let us = T0;
        let id = 1;
        for (const s of steps) {
          const list = byIface.get(s.iface)!;
          for (let k = 0; k < s.run; k++) {
            us += s.gapUs;
            const f = frame({ ...tuples[s.tuple]!, id: id++, flags: s.flags, fragment: s.fragment, payload: s.payload });
            list.push({ f, us });
            if (s.copy !== 'none' && k === s.run - 1) list.push({ f, us: us + (s.copy === 'soon' ? 3 : 1500) });
          }
          if (s.copy === 'late') us += 1500;
          us += 3;
        }
        const result = async (fold: boolean) => {
          const events: JourneyEvent[] = [];
          const c = new Correlator({ emit: (e) => events.push(e), startDelayMs: 0 });
          c.onConntrack(entries.map((entry) => ({ type: 'new' as const, time: T0 / 1000, entry })));
          const state = { view: new PacketView(), skips: new SkipCounters(), fragments: new FragmentPorts() };
          const ledger = new LossLedger();
          for (const [iface, frames] of byIface) {
            if (frames.length === 0) continue;
            const path = pcapFile(`t${trial}-${iface}.pcap`, frames);
            const bs = fold ? foldedBatches(path, iface, 4) : await plainBatches(path, iface);
            if (fold) foldedAway += frames.length - bs.reduce((n, b) => n + b.count, 0);
            for (const b of bs) intakeBatch(b, state, c, ledger.of(iface));
          }
          c.flush();
          const ends = events
            .filter((e): e is Extract<JourneyEvent, { type: 'flow.end' }> => e.type === 'flow.end')
            .map((e) => ({ id: e.flow.id, legs: e.flow.legs, tcpFlags: e.flow.tcpFlags }))
            .sort((x, y) => x.id.localeCompare(y.id));
          const { pendingNow: _p, ...stats } = c.stats();
          return { ends, stats, account: ledger.report([], c.ifaceTallies()) };
        };
        const every = await result(false);
        const folded = await result(true);
        expect(folded).toEqual(every);
      }),
      { numRuns: 150, seed: 20261206 },
    );
    // the streams did fold: the property compared runs, not only single frames
    expect(foldedAway).toBeGreaterThan(500);
  });
});
