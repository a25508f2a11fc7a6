/**
 * Reads pcap (both byte orders, µs and ns) and pcapng (several sections and interfaces, if_name,
 * if_tsresol, if_tsoffset; EPB, SPB and the obsolete PB) files into FrameBatches, streaming.
 * Several files (one per interface) are merged into one timeline. Garbage raises
 * JourneyError('E_PARSE') naming the file and byte offset; a truncated tail is a counted skip.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { JourneyError } from '../model/errors.js';
import type { FrameBatch } from '../model/observation.js';
import { BatchBuilder } from './batch.js';
import { bpfRun, compileFilter, type BpfProgram } from './bpf.js';

export interface CaptureFileInput {
  readonly path: string;
  /** Interface name for a classic pcap (default: the file name without extension). */
  readonly iface?: string;
}

export interface ReadCaptureOptions {
  /** Frames per batch (default 1024). */
  readonly batchFrames?: number;
  /** Called for every skipped record or block (truncated tail, unknown interface, ...). */
  readonly onSkip?: (reason: string, where: { path: string; offset: number; detail?: string }) => void;
  /** Counts skips by reason (shared with the caller). */
  readonly skipped?: Record<string, number>;
  /** Capture filter in tcpdump syntax, compiled by libpcap (tcpdump -ddd) per link type. */
  readonly filter?: string;
  /** Filled while reading: frames read and frames the filter rejected. */
  readonly counts?: { read: number; filteredOut: number };
}

/** One packet record; `data` is valid only until the next record of the same file is read. */
export interface CaptureRecord {
  iface: string;
  linkType: number;
  data: Uint8Array;
  capLen: number;
  wireLen: number;
  timeUs: number;
}

/** Largest record we accept (tcpdump's MAXIMUM_SNAPLEN is 262144). */
const MAX_RECORD = 256 * 1024 * 4;
const CHUNK = 1 << 20;

class Cursor {
  private buf = Buffer.alloc(CHUNK);
  private start = 0;
  private end = 0;
  /** File offset of buf[start]. */
  pos = 0;
  private eof = false;
  constructor(private readonly fh: FileHandle) {}

  /** Ensures n bytes are buffered; false at end of file with fewer available. */
  async ensure(n: number): Promise<boolean> {
    if (this.end - this.start >= n) return true;
    if (this.eof) return false;
    if (this.buf.length < n) {
      const b = Buffer.alloc(Math.max(n, this.buf.length * 2));
      this.buf.copy(b, 0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
      this.buf = b;
    } else if (this.start > 0) {
      this.buf.copy(this.buf, 0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    while (this.end - this.start < n && !this.eof) {
      const { bytesRead } = await this.fh.read(this.buf, this.end, this.buf.length - this.end, null);
      if (bytesRead === 0) this.eof = true;
      this.end += bytesRead;
    }
    return this.end - this.start >= n;
  }
  get available(): number {
    return this.end - this.start;
  }
  /** Buffer and index of the current position (valid until the next ensure). */
  get b(): Buffer {
    return this.buf;
  }
  get i(): number {
    return this.start;
  }
  advance(n: number): void {
    this.start += n;
    this.pos += n;
  }
}

interface Iface {
  name: string;
  linkType: number;
  snapLen: number;
  /** Timestamp: units per second as divisor to µs, and offset in µs. */
  resolPow10: number; // -1 when power of two
  resolPow2: number;
  offsetUs: number;
}

function parseError(path: string, offset: number, what: string): JourneyError {
  return new JourneyError('E_PARSE', `${path}: ${what} (at byte ${offset})`, { path, offset });
}

function baseName(path: string): string {
  return basename(path).replace(/\.(pcapng|pcap|cap|ntar)(\.\w+)?$/i, '') || path;
}

/** Reads the records of one capture file, in file order. */
export async function* readCaptureRecords(
  input: string | CaptureFileInput,
  opts: ReadCaptureOptions = {},
): AsyncGenerator<CaptureRecord> {
  const path = typeof input === 'string' ? input : input.path;
  const given = typeof input === 'string' ? undefined : input.iface;
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new JourneyError('E_PARSE', `${path}: cannot open (${(e as Error).message})`, { path }, { cause: e });
  }
  const skip = (reason: string, offset: number, detail?: string): void => {
    if (opts.skipped) opts.skipped[reason] = (opts.skipped[reason] ?? 0) + 1;
    opts.onSkip?.(reason, detail === undefined ? { path, offset } : { path, offset, detail });
  };
  try {
    const c = new Cursor(fh);
    if (!(await c.ensure(4))) throw parseError(path, 0, 'empty or too short to be a pcap or pcapng file');
    const m = c.b.readUInt32LE(c.i);
    if (m === 0x0a0d0d0a) {
      yield* readPcapng(c, path, given ?? baseName(path), skip);
    } else if (m === 0xa1b2c3d4 || m === 0xd4c3b2a1 || m === 0xa1b23c4d || m === 0x4d3cb2a1) {
      yield* readPcap(c, path, given ?? baseName(path), skip);
    } else {
      throw parseError(path, 0, `not a pcap or pcapng file (magic 0x${m.toString(16).padStart(8, '0')})`);
    }
  } finally {
    await fh.close();
  }
}

async function* readPcap(
  c: Cursor,
  path: string,
  iface: string,
  skip: (reason: string, offset: number, detail?: string) => void,
): AsyncGenerator<CaptureRecord> {
  if (!(await c.ensure(24))) throw parseError(path, 0, 'truncated pcap file header');
  const m = c.b.readUInt32LE(c.i);
  const le = m === 0xa1b2c3d4 || m === 0xa1b23c4d;
  const nano = m === 0xa1b23c4d || m === 0x4d3cb2a1;
  const r32 = (b: Buffer, o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const major = le ? c.b.readUInt16LE(c.i + 4) : c.b.readUInt16BE(c.i + 4);
  if (major !== 2) throw parseError(path, 4, `unsupported pcap version ${major}`);
  const snapLen = r32(c.b, c.i + 16);
  const linkType = r32(c.b, c.i + 20) & 0x0fffffff;
  c.advance(24);
  const rec: CaptureRecord = { iface, linkType, data: c.b, capLen: 0, wireLen: 0, timeUs: 0 };
  const limit = Math.max(MAX_RECORD, snapLen);
  for (;;) {
    if (!(await c.ensure(16))) {
      if (c.available > 0) skip('truncated-record', c.pos, `${c.available} bytes of a record header at the end`);
      return;
    }
    const b = c.b;
    const i = c.i;
    const sec = r32(b, i);
    const frac = r32(b, i + 4);
    const capLen = r32(b, i + 8);
    const wireLen = r32(b, i + 12);
    if (capLen > limit) throw parseError(path, c.pos, `record claims ${capLen} captured bytes (snaplen ${snapLen}): corrupt file`);
    const at = c.pos;
    if (!(await c.ensure(16 + capLen))) {
      skip('truncated-record', at, `record of ${capLen} bytes cut at end of file`);
      return;
    }
    rec.data = c.b;
    rec.capLen = capLen;
    rec.wireLen = Math.max(wireLen, capLen);
    rec.timeUs = sec * 1e6 + (nano ? Math.floor(frac / 1000) : frac);
    // data is at c.i + 16
    yield withOffset(rec, c.i + 16);
    c.advance(16 + capLen);
  }
}

/** Records carry their frame as data.subarray; made lazily to keep one object per record. */
function withOffset(rec: CaptureRecord, off: number): CaptureRecord {
  rec.data = rec.data.subarray(off, off + rec.capLen);
  return rec;
}

const SHB = 0x0a0d0d0a;
const IDB = 1;
const OPB = 2;
const SPB = 3;
const EPB = 6;

async function* readPcapng(
  c: Cursor,
  path: string,
  base: string,
  skip: (reason: string, offset: number, detail?: string) => void,
): AsyncGenerator<CaptureRecord> {
  let le = true;
  let ifaces: Iface[] = [];
  let section = 0;
  const rec: CaptureRecord = { iface: '', linkType: 0, data: c.b, capLen: 0, wireLen: 0, timeUs: 0 };
  for (;;) {
    if (!(await c.ensure(12))) {
      if (c.available > 0) skip('truncated-block', c.pos, `${c.available} bytes at the end`);
      return;
    }
    const at = c.pos;
    const rawType = c.b.readUInt32LE(c.i);
    if (rawType === SHB) {
      const bom = c.b.readUInt32LE(c.i + 8);
      if (bom === 0x1a2b3c4d) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else throw parseError(path, at + 8, `bad pcapng byte-order magic 0x${bom.toString(16)}`);
      ifaces = [];
      section++;
    }
    const r16 = (o: number): number => (le ? c.b.readUInt16LE(o) : c.b.readUInt16BE(o));
    const r32 = (o: number): number => (le ? c.b.readUInt32LE(o) : c.b.readUInt32BE(o));
    const type = r32(c.i);
    const len = r32(c.i + 4);
    if (len < 12 || len % 4 !== 0 || len > MAX_RECORD + 64) {
      throw parseError(path, at, `bad pcapng block length ${len} (block type 0x${type.toString(16)})`);
    }
    if (!(await c.ensure(len))) {
      skip('truncated-block', at, `block of ${len} bytes cut at end of file`);
      return;
    }
    const i = c.i;
    if (r32(i + len - 4) !== len) throw parseError(path, at, `pcapng block trailer length differs from ${len}: corrupt file`);
    const bodyEnd = i + len - 4;
    if (type === SHB) {
      // nothing more to read
    } else if (type === IDB) {
      if (len < 20) throw parseError(path, at, 'interface description block too short');
      const ifc: Iface = {
        name: '',
        linkType: r16(i + 8),
        snapLen: r32(i + 12),
        resolPow10: 6,
        resolPow2: 0,
        offsetUs: 0,
      };
      for (let o = i + 16; o + 4 <= bodyEnd; ) {
        const code = r16(o);
        const olen = r16(o + 2);
        if (code === 0) break;
        if (o + 4 + olen > bodyEnd) {
          skip('bad-option', o - i + at, `IDB option ${code} overruns its block`);
          break;
        }
        if (code === 2) ifc.name = c.b.toString('utf8', o + 4, o + 4 + olen).replace(/\0+$/, '');
        else if (code === 9 && olen >= 1) {
          const v = c.b[o + 4] as number;
          if (v & 0x80) {
            ifc.resolPow10 = -1;
            ifc.resolPow2 = v & 0x7f;
          } else ifc.resolPow10 = v;
        } else if (code === 14 && olen >= 8) {
          const hi = r32(le ? o + 8 : o + 4);
          const lo = r32(le ? o + 4 : o + 8);
          ifc.offsetUs = (hi * 4294967296 + lo) * 1e6;
        }
        o += 4 + ((olen + 3) & ~3);
      }
      if (ifc.name === '') ifc.name = section > 1 || ifaces.length > 0 ? `${base}#${ifaces.length}` : base;
      ifaces.push(ifc);
    } else if (type === EPB || type === OPB) {
      if (len < 32) throw parseError(path, at, 'packet block too short');
      const id = type === EPB ? r32(i + 8) : r16(i + 8);
      const ifc = ifaces[id];
      const capLen = r32(i + 20);
      const wireLen = r32(i + 24);
      if (ifc === undefined) skip('unknown-interface', at, `packet for interface ${id}, which no IDB described`);
      else if (28 + capLen > len - 4) skip('bad-block', at, `packet claims ${capLen} bytes in a ${len}-byte block`);
      else {
        rec.iface = ifc.name;
        rec.linkType = ifc.linkType;
        rec.capLen = capLen;
        rec.wireLen = Math.max(wireLen, capLen);
        rec.timeUs = toUs(ifc, r32(i + 12), r32(i + 16));
        rec.data = c.b.subarray(i + 28, i + 28 + capLen);
        yield rec;
      }
    } else if (type === SPB) {
      const ifc = ifaces[0];
      const wireLen = r32(i + 8);
      if (ifc === undefined) skip('unknown-interface', at, 'simple packet block before any IDB');
      else {
        const capLen = Math.min(wireLen, len - 16, ifc.snapLen > 0 ? ifc.snapLen : Infinity);
        rec.iface = ifc.name;
        rec.linkType = ifc.linkType;
        rec.capLen = capLen;
        rec.wireLen = wireLen;
        rec.timeUs = 0;
        rec.data = c.b.subarray(i + 12, i + 12 + capLen);
        yield rec;
      }
    } else {
      // name resolution, statistics, decryption secrets, custom blocks: not needed
      skip('ignored-block', at, `block type 0x${type.toString(16)}`);
    }
    c.advance(len);
  }
}

function toUs(ifc: Iface, hi: number, lo: number): number {
  let us: number;
  if (ifc.resolPow10 === 6) us = hi * 4294967296 + lo;
  else if (ifc.resolPow10 >= 0) {
    const units = (BigInt(hi) << 32n) | BigInt(lo);
    const p = ifc.resolPow10;
    us = p > 6 ? Number(units / 10n ** BigInt(p - 6)) : Number(units * 10n ** BigInt(6 - p));
  } else {
    const units = (BigInt(hi) << 32n) | BigInt(lo);
    us = Number((units * 1_000_000n) >> BigInt(ifc.resolPow2));
  }
  return us + ifc.offsetUs;
}

/**
 * Reads one or more capture files as FrameBatches (one interface per batch). Several files are
 * merged by timestamp into one timeline; inside a file the order is kept. Batches are cut when
 * the interface changes, so the sequence of batches preserves packet order across interfaces.
 */
export async function* readCaptureFiles(
  inputs: ReadonlyArray<string | CaptureFileInput>,
  opts: ReadCaptureOptions = {},
): AsyncGenerator<FrameBatch> {
  const maxFrames = opts.batchFrames ?? 1024;
  const its = inputs.map((inp) => readCaptureRecords(inp, opts)[Symbol.asyncIterator]());
  const heads: Array<CaptureRecord | undefined> = [];
  try {
    for (const it of its) {
      const r = await it.next();
      heads.push(r.done ? undefined : r.value);
    }
    const builders = new Map<string, BatchBuilder>();
    const filter = opts.filter !== undefined && opts.filter.trim() !== '' ? opts.filter : undefined;
    const programs = new Map<number, BpfProgram>();
    let builder: BatchBuilder | undefined;
    for (;;) {
      let best = -1;
      for (let k = 0; k < heads.length; k++) {
        const h = heads[k];
        if (h !== undefined && (best < 0 || h.timeUs < (heads[best] as CaptureRecord).timeUs)) best = k;
      }
      if (best < 0) break;
      const r = heads[best] as CaptureRecord;
      if (opts.counts) opts.counts.read++;
      if (filter !== undefined) {
        let prog = programs.get(r.linkType);
        if (prog === undefined) {
          prog = await compileFilter(filter, r.linkType);
          programs.set(r.linkType, prog);
        }
        if (bpfRun(prog, r.data, 0, r.capLen, r.wireLen) === 0) {
          if (opts.counts) opts.counts.filteredOut++;
          const n = await (its[best] as AsyncIterator<CaptureRecord>).next();
          heads[best] = n.done ? undefined : n.value;
          continue;
        }
      }
      if (builder === undefined || builder.iface !== r.iface || builder.linkType !== r.linkType) {
        if (builder !== undefined && builder.count > 0) yield builder.take();
        const key = `${r.linkType}/${r.iface}`;
        builder = builders.get(key);
        if (builder === undefined) {
          builder = new BatchBuilder(r.iface, r.linkType, maxFrames, 256 * 1024);
          builders.set(key, builder);
        }
      } else if (builder.wouldOverflow(r.capLen)) {
        yield builder.take();
      }
      builder.push(r.data, 0, r.capLen, r.wireLen, r.timeUs);
      const n = await (its[best] as AsyncIterator<CaptureRecord>).next();
      heads[best] = n.done ? undefined : n.value;
    }
    if (builder !== undefined && builder.count > 0) yield builder.take();
  } finally {
    await Promise.all(its.map((it) => it.return?.(undefined)));
  }
}
