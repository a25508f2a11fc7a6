import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BatchBuilder, linkTypeFromName } from '../../src/capture/batch.js';
import { bridgeNames, containerBridges, LinkWatcher, matchesPattern, selectInterfaces, type LinkInfo } from '../../src/capture/devices.js';
import { MSG_STATS, MessageReader, encodeBatch, encodeJson } from '../../src/capture/protocol.js';
import { createPcapngWriter } from '../../src/capture/pcapng-writer.js';
import { readCaptureFiles } from '../../src/capture/pcap-file.js';
import { promiscuousFor } from '../../src/capture/capture-options.js';
import type { FrameBatch } from '../../src/model/observation.js';

/** Encodes frames with the worker's encoder (columns as worker-entry.ts keeps them). */
function encodeFrames(frames: Array<{ data: Uint8Array; wire: number; t: number }>): Buffer {
  const n = frames.length;
  const data = Buffer.concat(frames.map((f) => f.data));
  return encodeBatch(
    n,
    Float64Array.from(frames, (f) => f.t),
    Uint32Array.from(frames, (f) => f.data.length),
    Uint32Array.from(frames, (f) => f.wire),
    data,
    data.length,
  );
}

describe('worker pipe protocol', () => {
  it('rebuilds batches and JSON messages from any split of the stream', () => {
    const frameArb = fc.record({
      data: fc.uint8Array({ minLength: 0, maxLength: 90 }),
      wire: fc.nat({ max: 70000 }),
      t: fc.integer({ min: 0, max: 2 ** 52 }),
    });
    fc.assert(
      fc.property(
        fc.array(fc.array(frameArb, { maxLength: 12 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat({ max: 60 }), { maxLength: 30 }),
        (batches, cuts) => {
          const stream = Buffer.concat([
            encodeJson(MSG_STATS, { received: 1 }),
            ...batches.map((b) => encodeFrames(b)),
            encodeJson(MSG_STATS, { received: 2 }),
          ]);
          const got: FrameBatch[] = [];
          const json: unknown[] = [];
          const r = new MessageReader(
            () => 'eth0',
            () => 1,
            (t, v) => json.push([t, v]),
            (b) => got.push(b),
          );
          let at = 0;
          for (const c of cuts) {
            const end = Math.min(stream.length, at + c);
            r.push(stream.subarray(at, end));
            at = end;
          }
          r.push(stream.subarray(at));
          expect(json).toEqual([
            [MSG_STATS, { received: 1 }],
            [MSG_STATS, { received: 2 }],
          ]);
          expect(got.length).toBe(batches.length);
          got.forEach((b, k) => {
            const src = batches[k]!;
            expect(b).toMatchObject({ iface: 'eth0', linkType: 1, count: src.length });
            src.forEach((f, i) => {
              const o = b.offsets[i]!;
              expect(Buffer.from(b.data.subarray(o, o + b.lengths[i]!))).toEqual(Buffer.from(f.data));
              expect(b.wireLengths[i]).toBe(f.wire);
              expect(b.timesUs[i]).toBe(f.t);
            });
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('reads from one reused buffer (onread): detach() keeps an incomplete message of its own', () => {
    const frames = Array.from({ length: 40 }, (_, i) => ({
      data: Uint8Array.from({ length: 20 + i }, (_, k) => (i * 7 + k) & 0xff),
      wire: 100 + i,
      t: 1e15 + i,
    }));
    const stream = Buffer.concat([encodeFrames(frames.slice(0, 15)), encodeJson(MSG_STATS, { received: 15 }), encodeFrames(frames.slice(15))]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 40 }), (cuts) => {
        const got: FrameBatch[] = [];
        const json: unknown[] = [];
        const r = new MessageReader(
          () => 'eth0',
          () => 1,
          (t, v) => json.push([t, v]),
          (b) => got.push(b),
        );
        const readBuf = Buffer.alloc(1024);
        let at = 0;
        let k = 0;
        while (at < stream.length) {
          const n = Math.min(cuts[k++ % cuts.length] as number, stream.length - at, readBuf.length);
          stream.copy(readBuf, 0, at, at + n);
          r.push(readBuf.subarray(0, n));
          r.detach();
          readBuf.fill(0xee); // the next read overwrites it
          at += n;
        }
        expect(json).toEqual([[MSG_STATS, { received: 15 }]]);
        const all = got.flatMap((b) =>
          Array.from({ length: b.count }, (_, i) => Array.from(b.data.subarray(b.offsets[i]!, b.offsets[i]! + b.lengths[i]!))),
        );
        expect(all).toEqual(frames.map((f) => Array.from(f.data)));
        expect(got.flatMap((b) => Array.from(b.wireLengths))).toEqual(frames.map((f) => f.wire));
      }),
      { numRuns: 200 },
    );
  });

  it('ignores a batch whose header claims more than the message holds', () => {
    const bad = encodeFrames([{ data: new Uint8Array(10), wire: 10, t: 1 }]);
    bad.writeUInt32LE(1000, 9); // dataLen
    const got: FrameBatch[] = [];
    new MessageReader(
      () => 'x',
      () => 1,
      () => undefined,
      (b) => got.push(b),
    ).push(bad);
    expect(got).toEqual([]);
  });
});

describe('BatchBuilder', () => {
  it('packs frames and reports overflow by frames and by bytes', () => {
    const b = new BatchBuilder('docker0', 1, 3, 100);
    expect(b.wouldOverflow(50)).toBe(false);
    b.push(Uint8Array.of(1, 2, 3, 4), 1, 2, 60, 10);
    b.push(new Uint8Array(90), 0, 90, 90, 11);
    expect(b.wouldOverflow(20)).toBe(true);
    const batch = b.take();
    expect(batch.count).toBe(2);
    expect(Array.from(batch.data.subarray(0, 2))).toEqual([2, 3]);
    expect(Array.from(batch.offsets)).toEqual([0, 2]);
    expect(Array.from(batch.wireLengths)).toEqual([60, 90]);
    expect(b.count).toBe(0);
    // a frame larger than the buffer still fits (the buffer grows)
    b.push(new Uint8Array(300), 0, 300, 300, 12);
    expect(b.take().lengths[0]).toBe(300);
  });

  it("maps the addons' link type names", () => {
    expect(linkTypeFromName('LINKTYPE_ETHERNET')).toBe(1);
    expect(linkTypeFromName('ETHERNET')).toBe(1);
    expect(linkTypeFromName('LINKTYPE_LINUX_SLL')).toBe(113);
    expect(linkTypeFromName('Unknown linktype 276')).toBe(276);
    expect(linkTypeFromName('whatever')).toBe(-1);
  });
});

describe('interface selection', () => {
  const links: LinkInfo[] = ['lo', 'eth0', 'docker0', 'br-1a2b3c4d5e6f', 'br-lan', 'veth12ab', 'docker1', 'wg0'].map((name, i) => ({
    name,
    ifindex: i + 1,
    up: true,
  }));
  it("auto: docker0, br-<id> bridges, the uplink and the caller's names", () => {
    expect(selectInterfaces(links, ['eth0'], { patterns: [], extra: [] })).toEqual(['eth0', 'docker0', 'br-1a2b3c4d5e6f']);
    expect(selectInterfaces(links, ['wg0'], { patterns: [], extra: ['docker1'] })).toEqual(['docker0', 'br-1a2b3c4d5e6f', 'docker1', 'wg0']);
  });
  it('auto: a bridge of any name with a container veth as a port (com.docker.network.bridge.name)', () => {
    const live: LinkInfo[] = [
      { name: 'eth0', ifindex: 2, up: true, kind: 'veth' },
      { name: 'docker1', ifindex: 3, up: true, kind: 'bridge' },
      { name: 'lanbr', ifindex: 4, up: true, kind: 'bridge' },
      { name: 'veth9f', ifindex: 5, up: true, kind: 'veth', master: 'docker1' },
      { name: 'tap0', ifindex: 6, up: true, kind: 'tun', master: 'lanbr' },
      { name: 'br-1a2b3c4d5e6f', ifindex: 7, up: true, kind: 'bridge' },
    ];
    expect(containerBridges(live)).toEqual(['docker1', 'br-1a2b3c4d5e6f']);
    expect(bridgeNames(live)).toEqual(['docker1', 'lanbr', 'br-1a2b3c4d5e6f']);
    expect(selectInterfaces(live, ['eth0'], { patterns: [], extra: [] })).toEqual(['eth0', 'docker1', 'br-1a2b3c4d5e6f']);
  });
  it('-i: names and globs as given; any', () => {
    expect(selectInterfaces(links, ['eth0'], { patterns: ['veth*', 'docker?'], extra: [] })).toEqual(['docker0', 'veth12ab', 'docker1']);
    expect(selectInterfaces(links, [], { patterns: ['any'], extra: [] })).toEqual(['any']);
    // names added later (a new Docker network) join an explicit list
    expect(selectInterfaces(links, ['eth0'], { patterns: ['eth0'], extra: ['br-lan'] })).toEqual(['eth0', 'br-lan']);
    expect(matchesPattern('br-lan', 'br-*')).toBe(true);
    expect(matchesPattern('br.lan', 'br-*')).toBe(false);
    expect(matchesPattern('a+b', 'a+b')).toBe(true);
  });
});

describe('LinkWatcher', () => {
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  it('does not poll while `ip monitor` runs, and polls every pollMs when it cannot or the namespace is gone', async () => {
    // a live monitor (this namespace): the 40 ms poll is held back
    let withMonitor = 0;
    const a = new LinkWatcher(undefined, () => withMonitor++, 40);
    // no such namespace (its path is gone, its monitor cannot start): the poll runs every 40 ms
    let without = 0;
    const b = new LinkWatcher('jl-no-such-namespace', () => without++, 40);
    a.start();
    b.start();
    try {
      await sleep(600);
    } finally {
      a.stop();
      b.stop();
    }
    expect(withMonitor).toBe(0);
    expect(without).toBeGreaterThanOrEqual(5);
  });

  it('reads again when the monitor says it lost events (its error line), and only then', async () => {
    // a monitor that stays silent, then reports a receive error as `ip monitor` does on ENOBUFS
    const monitor = ['sh', '-c', 'sleep 0.3; echo "netlink receive error No buffer space available (105)" >&2; sleep 5'];
    const seen: number[] = [];
    const t0 = Date.now();
    const w = new LinkWatcher(undefined, () => seen.push(Date.now() - t0), 40, monitor);
    w.start();
    try {
      await sleep(900);
    } finally {
      w.stop();
    }
    // one read (debounced), after the error line and not before: no poll while the monitor runs
    expect(seen.length).toBe(1);
    expect(seen[0]).toBeGreaterThanOrEqual(300);
  });
});

describe('promiscuous mode', () => {
  it('default: bridges only (frames bridged between ports, e.g. hairpin NAT, need it); --promisc/--no-promisc force it', () => {
    expect(promiscuousFor(undefined, 'bridge')).toBe(true);
    expect(promiscuousFor(undefined, undefined)).toBe(false); // a physical uplink has no link kind
    expect(promiscuousFor(undefined, 'veth')).toBe(false);
    expect(promiscuousFor(false, 'bridge')).toBe(false);
    expect(promiscuousFor(true, undefined)).toBe(true);
  });
});

describe('pcapng writer', () => {
  it('drops and counts frames when the disk is behind instead of buffering without bound', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'journey-w-'));
    const w = createPcapngWriter(join(dir, 'w.pcapng'), { maxBufferedBytes: 64 * 1024 });
    const b = new BatchBuilder('eth0', 1, 1024, 1 << 20);
    for (let i = 0; i < 1000; i++) b.push(new Uint8Array(1000).fill(i & 0xff), 0, 1000, 1000, i);
    const batch = b.take();
    for (let k = 0; k < 10; k++) w.writeBatch(batch); // 10 MB at once
    expect(w.written + w.dropped).toBe(10_000);
    expect(w.dropped).toBeGreaterThan(0);
    await w.close();
    let n = 0;
    for await (const got of readCaptureFiles([join(dir, 'w.pcapng')])) n += got.count;
    expect(n).toBe(w.written);
    expect(readFileSync(join(dir, 'w.pcapng')).length).toBeGreaterThan(w.written * 1000);
  });
});
