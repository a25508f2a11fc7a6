import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readCaptureFiles } from '../../src/capture/pcap-file.js';
import { createPcapngWriter } from '../../src/capture/pcapng-writer.js';
import { PacketView, decodeFrame, observationFromView } from '../../src/decode/index.js';
import type { FrameBatch } from '../../src/model/observation.js';
import { JourneyError } from '../../src/model/errors.js';

const fixture = (n: string): string => new URL(`../fixtures/pcap/${n}`, import.meta.url).pathname;
const ETH = fixture('c1b-eth.pcap'); // tcpdump -i c1b -w, 38 packets
const SLL2 = fixture('any-sll2.pcap'); // tcpdump -i any -y LINUX_SLL2 -w, 38 packets
const tmp = mkdtempSync(join(tmpdir(), 'journey-pcap-'));

async function collect(inputs: Parameters<typeof readCaptureFiles>[0], skipped: Record<string, number> = {}): Promise<FrameBatch[]> {
  const out: FrameBatch[] = [];
  for await (const b of readCaptureFiles(inputs, { skipped, batchFrames: 16 })) out.push(b);
  return out;
}
const frames = (bs: FrameBatch[]): Array<{ iface: string; lt: number; t: number; hex: string; wire: number }> =>
  bs.flatMap((b) =>
    Array.from({ length: b.count }, (_, i) => ({
      iface: b.iface,
      lt: b.linkType,
      t: b.timesUs[i] as number,
      wire: b.wireLengths[i] as number,
      hex: Buffer.from(b.data.subarray(b.offsets[i], (b.offsets[i] as number) + (b.lengths[i] as number))).toString('hex'),
    })),
  );

/** Rewrites a little-endian µs pcap as big-endian and/or nanosecond. */
function convertPcap(src: Buffer, be: boolean, nano: boolean): Buffer {
  const out = Buffer.alloc(src.length);
  const w32 = (v: number, o: number): number => (be ? out.writeUInt32BE(v, o) : out.writeUInt32LE(v, o));
  w32(nano ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  be ? out.writeUInt16BE(2, 4) : out.writeUInt16LE(2, 4);
  be ? out.writeUInt16BE(4, 6) : out.writeUInt16LE(4, 6);
  w32(0, 8);
  w32(0, 12);
  w32(src.readUInt32LE(16), 16);
  w32(src.readUInt32LE(20), 20);
  for (let o = 24; o < src.length; ) {
    const cap = src.readUInt32LE(o + 8);
    w32(src.readUInt32LE(o), o);
    w32(src.readUInt32LE(o + 4) * (nano ? 1000 : 1), o + 4);
    w32(cap, o + 8);
    w32(src.readUInt32LE(o + 12), o + 12);
    src.copy(out, o + 16, o + 16, o + 16 + cap);
    o += 16 + cap;
  }
  return out;
}

describe('pcap reading', () => {
  it('reads a tcpdump capture with its timestamps (tcpdump -tt: 1795407381.882512 … 1795407383.182967)', async () => {
    const got = frames(await collect([ETH]));
    expect(got).toHaveLength(38);
    expect(got[0]).toMatchObject({ iface: 'c1b-eth', lt: 1, t: 1795407381882512 });
    expect(got[37]?.t).toBe(1795407383182967);
    const v = new PacketView();
    const bs = await collect([{ path: ETH, iface: 'c1b' }]);
    expect(bs[0]?.iface).toBe('c1b');
    expect(decodeFrame(bs[0]!, 2, v)).toBe(true);
    expect(observationFromView(v, 'c1b')).toMatchObject({ tuple: { proto: 'icmp', src: '10.9.0.1', dst: '10.9.0.2', sport: 10626 }, wireLen: 98 });
  });

  it('reads big-endian and nanosecond pcaps to the same frames', async () => {
    const src = readFileSync(ETH);
    const ref = frames(await collect([ETH]));
    for (const [be, nano] of [
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const p = join(tmp, `conv-${be}-${nano}.pcap`);
      writeFileSync(p, convertPcap(src, be, nano));
      const got = frames(await collect([{ path: p, iface: 'c1b-eth' }]));
      expect(got).toEqual(ref);
    }
  });

  it('merges one file per interface into one timeline', async () => {
    const got = frames(await collect([ETH, SLL2]));
    expect(got).toHaveLength(76);
    for (let i = 1; i < got.length; i++) expect(got[i]!.t).toBeGreaterThanOrEqual(got[i - 1]!.t);
    expect(new Set(got.map((f) => `${f.iface}/${f.lt}`))).toEqual(new Set(['c1b-eth/1', 'any-sll2/276']));
    // SLL2 saw the ARP request 2 µs before the Ethernet capture
    expect(got[0]).toMatchObject({ iface: 'any-sll2', t: 1795407381882510 });
  });
});

describe('pcapng writing and reading', () => {
  it('round-trips frames with interface names, link types, times and wire lengths', async () => {
    const ref = frames(
      await collect([
        { path: ETH, iface: 'docker0' },
        { path: SLL2, iface: 'eth0' },
      ]),
    );
    const out = join(tmp, 'rt.pcapng');
    const w = createPcapngWriter(out);
    for await (const b of readCaptureFiles([
      { path: ETH, iface: 'docker0' },
      { path: SLL2, iface: 'eth0' },
    ]))
      w.writeBatch(b);
    await w.close();
    expect(w.written).toBe(76);
    expect(w.dropped).toBe(0);
    const got = frames(await collect([out]));
    expect(got).toEqual(ref);
  });

  it('reads a big-endian pcapng with ns resolution, a time offset, SPB, unknown blocks and two sections', async () => {
    const eth = Buffer.from(frames(await collect([ETH]))[2]!.hex, 'hex');
    const p = join(tmp, 'be.pcapng');
    writeFileSync(p, bigEndianPcapng(eth));
    const skipped: Record<string, number> = {};
    const got = frames(await collect([p], skipped));
    expect(got.map((f) => [f.iface, f.lt, f.t, f.hex])).toEqual([
      ['uplink', 1, 1_700_000_000_123_456 + 5_000_000, eth.toString('hex')],
      ['uplink', 1, 0, eth.toString('hex')],
      ['be#1', 101, 2_000_000, eth.subarray(14).toString('hex')],
      ['again', 1, 7, eth.toString('hex')],
    ]);
    expect(skipped).toEqual({ 'ignored-block': 1, 'unknown-interface': 1 });
  });
});

function bigEndianPcapng(frame: Buffer): Buffer {
  const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  const blk = (type: number, body: Buffer): Buffer => {
    const len = 12 + body.length;
    const h = Buffer.alloc(8);
    h.writeUInt32BE(type, 0);
    h.writeUInt32BE(len, 4);
    const t = Buffer.alloc(4);
    t.writeUInt32BE(len, 0);
    return Buffer.concat([h, body, t]);
  };
  const opt = (code: number, v: Buffer): Buffer => {
    const h = Buffer.alloc(4);
    h.writeUInt16BE(code, 0);
    h.writeUInt16BE(v.length, 2);
    return Buffer.concat([h, pad(v)]);
  };
  const shb = (): Buffer => {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(0x1a2b3c4d, 0);
    b.writeUInt16BE(1, 4);
    b.writeInt32BE(-1, 8);
    b.writeInt32BE(-1, 12);
    return blk(0x0a0d0d0a, b);
  };
  const idb = (lt: number, opts: Buffer[]): Buffer => {
    const b = Buffer.alloc(8);
    b.writeUInt16BE(lt, 0);
    b.writeUInt32BE(65535, 4);
    return blk(1, Buffer.concat([b, ...opts, Buffer.alloc(4)]));
  };
  const epb = (id: number, ts: bigint, f: Buffer): Buffer => {
    const b = Buffer.alloc(20);
    b.writeUInt32BE(id, 0);
    b.writeUInt32BE(Number(ts >> 32n), 4);
    b.writeUInt32BE(Number(ts & 0xffffffffn), 8);
    b.writeUInt32BE(f.length, 12);
    b.writeUInt32BE(f.length, 16);
    return blk(6, Buffer.concat([b, pad(f)]));
  };
  const spb = (f: Buffer): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(f.length, 0);
    return blk(3, Buffer.concat([b, pad(f)]));
  };
  const off = Buffer.alloc(8);
  off.writeBigInt64BE(5n);
  return Buffer.concat([
    shb(),
    idb(1, [opt(2, Buffer.from('uplink')), opt(9, Buffer.from([9])), opt(14, off)]),
    idb(101, [opt(9, Buffer.from([0x80 | 20]))]), // 2^-20 s
    epb(0, 1_700_000_000_123_456_789n, frame),
    blk(5, Buffer.alloc(8)), // interface statistics: ignored
    spb(frame),
    epb(1, 2n << 20n, frame.subarray(14)),
    epb(7, 0n, frame), // no such interface
    shb(),
    idb(1, [opt(2, Buffer.from('again'))]),
    epb(0, 7n, frame),
  ]);
}

describe('garbage and truncated capture files', () => {
  const expectParse = async (p: string, re: RegExp): Promise<void> => {
    const err = await collect([p]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(JourneyError);
    expect((err as JourneyError).code).toBe('E_PARSE');
    expect((err as JourneyError).message).toMatch(re);
  };
  it('rejects non-capture files, empty files and missing files with E_PARSE naming the file', async () => {
    const g = join(tmp, 'garbage.bin');
    writeFileSync(g, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expectParse(g, /garbage\.bin: not a pcap or pcapng file \(magic 0x20544547\)/);
    const e = join(tmp, 'empty.pcap');
    writeFileSync(e, '');
    await expectParse(e, /empty\.pcap: empty/);
    await expectParse(join(tmp, 'missing.pcap'), /missing\.pcap: cannot open/);
  });

  it('rejects a record with an absurd length and a pcapng block with a bad length, with the offset', async () => {
    const src = Buffer.from(readFileSync(ETH));
    src.writeUInt32LE(0x7fffffff, 24 + 8);
    const p = join(tmp, 'huge.pcap');
    writeFileSync(p, src);
    await expectParse(p, /record claims 2147483647 captured bytes .* \(at byte 24\)/);
    const w = createPcapngWriter(join(tmp, 'ok.pcapng'));
    for await (const b of readCaptureFiles([ETH])) w.writeBatch(b);
    await w.close();
    const ng = Buffer.from(readFileSync(join(tmp, 'ok.pcapng')));
    const shbLen = ng.readUInt32LE(4);
    ng.writeUInt32LE(13, shbLen + 4);
    writeFileSync(join(tmp, 'badlen.pcapng'), ng);
    await expectParse(join(tmp, 'badlen.pcapng'), new RegExp(`bad pcapng block length 13 .*at byte ${shbLen}\\)`));
  });

  it('counts a truncated tail as a skip and keeps the packets before it', async () => {
    const src = readFileSync(ETH);
    const p = join(tmp, 'cut.pcap');
    writeFileSync(p, src.subarray(0, src.length - 10));
    const skipped: Record<string, number> = {};
    expect(frames(await collect([p], skipped))).toHaveLength(37);
    expect(skipped).toEqual({ 'truncated-record': 1 });
  });

  it('fuzz: truncated and mutated pcap/pcapng files end in frames, counted skips or E_PARSE, never anything else', async () => {
    const pcap = readFileSync(ETH);
    const ng = readFileSync(join(tmp, 'rt.pcapng'));
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(pcap, ng),
        fc.nat(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        async (file, cut, muts) => {
          const b = Buffer.from(file.subarray(0, cut % (file.length + 1)));
          for (const [pos, val] of muts) if (b.length > 0) b[pos % b.length] = val;
          const p = join(tmp, `fuzz-${n++ % 4}.bin`);
          writeFileSync(p, b);
          try {
            await collect([p]);
          } catch (e) {
            expect(e).toBeInstanceOf(JourneyError);
            expect((e as JourneyError).code).toBe('E_PARSE');
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('hostile capture files (issue: input that cannot hurt)', () => {
  const readAll = async (p: string): Promise<{ n: number; skipped: Record<string, number>; details: string[] }> => {
    const skipped: Record<string, number> = {};
    const details: string[] = [];
    let n = 0;
    for await (const b of readCaptureFiles([p], { skipped, onSkip: (r, w) => details.push(`${r}@${w.offset}: ${w.detail ?? ''}`) })) n += b.count;
    return { n, skipped, details };
  };
  /** Offsets of the records of a little-endian pcap. */
  const recordOffsets = (b: Buffer): number[] => {
    const out: number[] = [];
    for (let o = 24; o + 16 <= b.length; o += 16 + b.readUInt32LE(o + 8)) out.push(o);
    return out;
  };

  it('snaplen 0xffffffff and a first record of 0x80000000 bytes: E_PARSE, nothing allocated for it', async () => {
    const src = Buffer.from(readFileSync(ETH));
    src.writeUInt32LE(0xffffffff, 16);
    src.writeUInt32LE(0x80000000, 24 + 8);
    const p = join(tmp, 'snap-huge.pcap');
    writeFileSync(p, src);
    const before = process.memoryUsage().rss;
    await expect(readAll(p)).rejects.toMatchObject({
      code: 'E_PARSE',
      message: expect.stringMatching(/record claims 2147483648 captured bytes .*maximum is 262144/),
    });
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('snaplen 0xffffffff with sane records reads every packet (libpcap clamps the snaplen)', async () => {
    const src = Buffer.from(readFileSync(ETH));
    src.writeUInt32LE(0xffffffff, 16);
    const p = join(tmp, 'snap-only.pcap');
    writeFileSync(p, src);
    expect((await readAll(p)).n).toBe(38);
  });

  it('a record of 0x48000000 bytes in a sparse 1.2 GB file: a counted skip in bounded memory, not 3 GiB', async () => {
    const src = Buffer.from(readFileSync(ETH));
    const offs = recordOffsets(src);
    src.writeUInt32LE(0x48000000, (offs[5] as number) + 8);
    const p = join(tmp, 'sparse.pcap');
    writeFileSync(p, src);
    const { truncateSync } = await import('node:fs');
    truncateSync(p, 0x48000000 + 4096);
    const before = process.memoryUsage().rss;
    const r = await readAll(p);
    expect(process.memoryUsage().rss - before).toBeLessThan(128 * 1024 * 1024);
    // the five records before it, then every record after it is found again
    expect(r.n).toBe(37);
    expect(r.skipped).toEqual({ 'corrupt-record': 2 });
    expect(r.details[1]).toMatch(/bytes to the end of the file not read/);
  }, 120_000);

  it('a corrupt record length mid-file is resynchronised: the records after it are read, the bytes lost are said', async () => {
    const src = Buffer.from(readFileSync(ETH));
    const offs = recordOffsets(src);
    const at = offs[10] as number;
    // a length that runs past the end of the file (the case: the rest became one skip)
    src.writeUInt32LE(src.length, at + 8);
    const p = join(tmp, 'midcorrupt.pcap');
    writeFileSync(p, src);
    const r = await readAll(p);
    expect(r.n).toBe(37);
    expect(r.skipped).toEqual({ 'corrupt-record': 1 });
    expect(r.details[0]).toMatch(new RegExp(`^corrupt-record@${at}: \\d+ bytes skipped`));
    // a length inside the file that swallows the next records, then garbage: resynchronised too
    const src2 = Buffer.from(readFileSync(ETH));
    src2.writeUInt32LE(0xdeadbeef, at + 8);
    writeFileSync(p, src2);
    const r2 = await readAll(p);
    expect(r2.n).toBe(37);
    expect(r2.skipped).toEqual({ 'corrupt-record': 1 });
  });

  it('garbage after the last good record: the bytes not read are counted and said', async () => {
    const src = readFileSync(ETH);
    const p = join(tmp, 'tailgarbage.pcap');
    writeFileSync(p, Buffer.concat([src, Buffer.alloc(4000, 0xff)]));
    const r = await readAll(p);
    expect(r.n).toBe(38);
    expect(r.skipped).toEqual({ 'corrupt-record': 1 });
    expect(r.details[0]).toMatch(/4000 bytes to the end of the file not read/);
    // more garbage than a record could hide: the scan stops and says how much was not read
    writeFileSync(p, Buffer.concat([src, Buffer.alloc(3_000_000, 0xff)]));
    const r2 = await readAll(p);
    expect(r2.n).toBe(38);
    expect(r2.details[0]).toMatch(new RegExp(`^corrupt-record@${src.length}: 3000000 bytes to the end of the file not read`));
  });
});
