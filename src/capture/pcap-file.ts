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

/** Largest pcapng block we accept. */
const MAX_RECORD = 256 * 1024 * 4;
/**
 * Largest classic pcap record (libpcap's MAXIMUM_SNAPLEN, 262144): like libpcap, a larger snaplen
 * in the file header is clamped to it, and a record that claims more is corrupt, never allocated.
 */
export const MAX_PCAP_RECORD = 262_144;
/** A record whose time is further than this from the previous one is not taken when resynchronising. */
const RESYNC_WINDOW_S = 86_400;
/**
 * How far resynchronising looks: one corrupt header hides at most one record (≤ the maximum
 * record) before the next real header, so twice that covers it; beyond it the rest of the file
 * is said to be unread instead of scanned (a sparse file of garbage would take minutes).
 */
const RESYNC_LIMIT = 2 * MAX_PCAP_RECORD + 32;
const CHUNK = 1 << 20;

class Cursor {
  private buf = Buffer.alloc(CHUNK);
  private start = 0;
  private end = 0;
  /** File offset of buf[start]. */
  pos = 0;
  private eof = false;
  /** The file's size when it is a regular file, else 0. */
  size = 0;
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
  /** True once the file has no more bytes than those buffered. */
  get atEof(): boolean {
    return this.eof;
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

type SkipFn = (reason: string, offset: number, detail?: string) => void;

/**
 * A synchronous parser over a Cursor: `next()` returns the next record while its bytes are
 * buffered, else undefined with `need` set to the bytes it wants (the caller fills the cursor
 * and calls again; at end of file it calls `atEnd()`). One record object is reused.
 */
interface RecordParser {
  need: number;
  /** True when the parser will read no more of the file (it gave up on corrupt data). */
  readonly finished?: boolean;
  next(): CaptureRecord | undefined;
  atEnd(): void;
}

/**
 * Classic pcap. A record header that cannot be right (a length above the limit, or a record running
 * past the end of the file while more records could follow) is resynchronised: the bytes are
 * skipped one by one until a plausible header (length within the limit, no more captured than
 * on the wire, fraction in range, time near the previous record) that is followed by another
 * plausible header or the end of the file; the skip is counted (`corrupt-record`) with the bytes
 * it cost. A corrupt first record is an E_PARSE error, as in tcpdump.
 */
class PcapParser implements RecordParser {
  need = 24;
  private header = true;
  private le = true;
  private nano = false;
  private snapLen = 0;
  private records = 0;
  private lastSec = -1;
  /** While resynchronising: where the corrupt header was, and how many bytes were skipped. */
  private resyncFrom = -1;
  private resyncBytes = 0;
  finished = false;
  private readonly rec: CaptureRecord;
  constructor(
    private readonly c: Cursor,
    private readonly path: string,
    iface: string,
    private readonly skip: SkipFn,
  ) {
    this.rec = { iface, linkType: 0, data: c.b, capLen: 0, wireLen: 0, timeUs: 0 };
  }

  next(): CaptureRecord | undefined {
    const c = this.c;
    if (this.header) {
      if (c.available < 24) {
        this.need = 24;
        return undefined;
      }
      const m = c.b.readUInt32LE(c.i);
      this.le = m === 0xa1b2c3d4 || m === 0xa1b23c4d;
      this.nano = m === 0xa1b23c4d || m === 0x4d3cb2a1;
      const major = this.le ? c.b.readUInt16LE(c.i + 4) : c.b.readUInt16BE(c.i + 4);
      if (major !== 2) throw parseError(this.path, 4, `unsupported pcap version ${major}`);
      const snap = this.r32(c.b, c.i + 16);
      this.snapLen = snap === 0 || snap > MAX_PCAP_RECORD ? MAX_PCAP_RECORD : snap;
      // the low 16 bits are the link type; above them libpcap keeps the FCS-length bits
      // (0x04000001 is Ethernet with an FCS-length field), which do not change the decoding
      this.rec.linkType = this.r32(c.b, c.i + 20) & 0xffff;
      c.advance(24);
      this.header = false;
    }
    for (;;) {
      if (c.available < 16) {
        this.need = 16;
        return undefined;
      }
      if (this.resyncFrom >= 0 && !this.resynced()) return undefined;
      const b = c.b;
      const i = c.i;
      const capLen = this.r32(b, i + 8);
      if (capLen > MAX_PCAP_RECORD || (this.records > 0 && !this.plausible(i))) {
        if (this.records === 0)
          throw parseError(this.path, c.pos, `record claims ${capLen} captured bytes (the maximum is ${MAX_PCAP_RECORD}): corrupt file`);
        this.startResync();
        continue;
      }
      if (c.available < 16 + capLen) {
        if (!c.atEof) {
          this.need = 16 + capLen;
          return undefined;
        }
        // runs past the end: a cut tail, or a corrupt length with records after it
        if (this.records > 0 && c.available >= 32 && this.findInTail()) continue;
        return undefined;
      }
      const rec = this.rec;
      const frac = this.r32(b, i + 4);
      // libpcap keeps at most the snaplen of a longer record
      const keep = Math.min(capLen, this.snapLen);
      rec.data = b.subarray(i + 16, i + 16 + keep);
      rec.capLen = keep;
      rec.wireLen = Math.max(this.r32(b, i + 12), capLen);
      this.lastSec = this.r32(b, i);
      rec.timeUs = this.lastSec * 1e6 + (this.nano ? Math.floor(frac / 1000) : frac);
      c.advance(16 + capLen);
      this.records++;
      return rec;
    }
  }

  private startResync(): void {
    this.resyncFrom = this.c.pos;
    this.resyncBytes = 1;
    this.c.advance(1);
  }

  /** A header at offset o of the buffer that a writer could have written. */
  private plausible(o: number): boolean {
    const b = this.c.b;
    const capLen = this.r32(b, o + 8);
    const wire = this.r32(b, o + 12);
    if (capLen > MAX_PCAP_RECORD || capLen > wire || wire > 16 * MAX_PCAP_RECORD) return false;
    if (this.r32(b, o + 4) >= (this.nano ? 1e9 : 1e6)) return false;
    return this.lastSec < 0 || Math.abs(this.r32(b, o) - this.lastSec) <= RESYNC_WINDOW_S;
  }

  /**
   * Skips bytes until a plausible header followed by another (or by the end of the file);
   * true when found (the skip is counted), false when more bytes are needed first.
   */
  private resynced(): boolean {
    const c = this.c;
    while (c.available >= 16) {
      if (this.resyncBytes > RESYNC_LIMIT) {
        this.finished = true;
        return false;
      }
      if (this.plausible(c.i)) {
        const after = 16 + this.r32(c.b, c.i + 8);
        if (c.available >= after + 16 ? this.plausible(c.i + after) : c.atEof && c.available === after) {
          this.skip('corrupt-record', this.resyncFrom, `${this.resyncBytes} bytes skipped to the next plausible record`);
          this.resyncFrom = -1;
          return true;
        }
        if (c.available < after + 16 && !c.atEof) {
          this.need = after + 16;
          return false;
        }
      }
      c.advance(1);
      this.resyncBytes++;
    }
    this.need = 16;
    return false;
  }

  /** At the end of the file, a record too long for what is left: looks for records behind it. */
  private findInTail(): boolean {
    const c = this.c;
    const from = c.pos;
    const i0 = c.i;
    for (let k = 1; k + 16 <= c.available; k++) {
      const o = i0 + k;
      if (!this.plausible(o)) continue;
      const after = 16 + this.r32(c.b, o + 8);
      const left = c.available - k;
      if (left === after || (left >= after + 16 && this.plausible(o + after))) {
        this.skip('corrupt-record', from, `${k} bytes skipped to the next plausible record`);
        c.advance(k);
        return true;
      }
    }
    return false;
  }

  atEnd(): void {
    if (this.header) throw parseError(this.path, 0, 'truncated pcap file header');
    const c = this.c;
    if (this.resyncFrom >= 0) {
      const rest = this.finished
        ? c.size > 0
          ? `${c.size - this.resyncFrom} bytes`
          : 'the rest of the input'
        : `${this.resyncBytes + c.available} bytes`;
      this.skip(
        'corrupt-record',
        this.resyncFrom,
        `${rest} to the end of the file not read: no plausible record within ${this.finished ? RESYNC_LIMIT : this.resyncBytes + c.available} bytes after a corrupt one`,
      );
    } else if (c.available >= 16)
      this.skip('truncated-record', c.pos, `record of ${this.r32(c.b, c.i + 8)} bytes cut at end of file (${c.available} bytes not read)`);
    else if (c.available > 0) this.skip('truncated-record', c.pos, `${c.available} bytes of a record header at the end`);
  }

  private r32(b: Buffer, o: number): number {
    return this.le ? b.readUInt32LE(o) : b.readUInt32BE(o);
  }
}

const SHB = 0x0a0d0d0a;
const IDB = 1;
const OPB = 2;
const SPB = 3;
const EPB = 6;

class PcapngParser implements RecordParser {
  need = 12;
  private le = true;
  private ifaces: Iface[] = [];
  private section = 0;
  private readonly rec: CaptureRecord;
  constructor(
    private readonly c: Cursor,
    private readonly path: string,
    private readonly base: string,
    private readonly skip: SkipFn,
  ) {
    this.rec = { iface: '', linkType: 0, data: c.b, capLen: 0, wireLen: 0, timeUs: 0 };
  }

  private r16(o: number): number {
    return this.le ? this.c.b.readUInt16LE(o) : this.c.b.readUInt16BE(o);
  }
  private r32(o: number): number {
    return this.le ? this.c.b.readUInt32LE(o) : this.c.b.readUInt32BE(o);
  }

  next(): CaptureRecord | undefined {
    const c = this.c;
    const path = this.path;
    for (;;) {
      if (c.available < 12) {
        this.need = 12;
        return undefined;
      }
      const at = c.pos;
      const i = c.i;
      const rawType = c.b.readUInt32LE(i);
      let le = this.le;
      if (rawType === SHB) {
        const bom = c.b.readUInt32LE(i + 8);
        if (bom === 0x1a2b3c4d) le = true;
        else if (bom === 0x4d3c2b1a) le = false;
        else throw parseError(path, at + 8, `bad pcapng byte-order magic 0x${bom.toString(16)}`);
      }
      const len = le ? c.b.readUInt32LE(i + 4) : c.b.readUInt32BE(i + 4);
      const type = le ? c.b.readUInt32LE(i) : c.b.readUInt32BE(i);
      if (len < 12 || len % 4 !== 0 || len > MAX_RECORD + 64) {
        throw parseError(path, at, `bad pcapng block length ${len} (block type 0x${type.toString(16)})`);
      }
      if (c.available < len) {
        this.need = len;
        return undefined;
      }
      if (rawType === SHB) {
        this.le = le;
        this.ifaces = [];
        this.section++;
      }
      if (this.r32(i + len - 4) !== len) throw parseError(path, at, `pcapng block trailer length differs from ${len}: corrupt file`);
      const rec = this.block(type, i, len, at);
      c.advance(len);
      if (rec !== undefined) return rec;
    }
  }

  /** Interprets one complete block; a packet record, or undefined for other blocks. */
  private block(type: number, i: number, len: number, at: number): CaptureRecord | undefined {
    const c = this.c;
    const path = this.path;
    const bodyEnd = i + len - 4;
    const rec = this.rec;
    if (type === SHB) return undefined;
    if (type === IDB) {
      if (len < 20) throw parseError(path, at, 'interface description block too short');
      const ifc: Iface = { name: '', linkType: this.r16(i + 8), snapLen: this.r32(i + 12), resolPow10: 6, resolPow2: 0, offsetUs: 0 };
      for (let o = i + 16; o + 4 <= bodyEnd; ) {
        const code = this.r16(o);
        const olen = this.r16(o + 2);
        if (code === 0) break;
        if (o + 4 + olen > bodyEnd) {
          this.skip('bad-option', o - i + at, `IDB option ${code} overruns its block`);
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
          const hi = this.r32(this.le ? o + 8 : o + 4);
          const lo = this.r32(this.le ? o + 4 : o + 8);
          ifc.offsetUs = (hi * 4294967296 + lo) * 1e6;
        }
        o += 4 + ((olen + 3) & ~3);
      }
      if (ifc.name === '') ifc.name = this.section > 1 || this.ifaces.length > 0 ? `${this.base}#${this.ifaces.length}` : this.base;
      this.ifaces.push(ifc);
      return undefined;
    }
    if (type === EPB || type === OPB) {
      if (len < 32) throw parseError(path, at, 'packet block too short');
      const id = type === EPB ? this.r32(i + 8) : this.r16(i + 8);
      const ifc = this.ifaces[id];
      const capLen = this.r32(i + 20);
      if (ifc === undefined) {
        this.skip('unknown-interface', at, `packet for interface ${id}, which no IDB described`);
        return undefined;
      }
      if (28 + capLen > len - 4) {
        this.skip('bad-block', at, `packet claims ${capLen} bytes in a ${len}-byte block`);
        return undefined;
      }
      rec.iface = ifc.name;
      rec.linkType = ifc.linkType;
      rec.capLen = capLen;
      rec.wireLen = Math.max(this.r32(i + 24), capLen);
      rec.timeUs = toUs(ifc, this.r32(i + 12), this.r32(i + 16));
      rec.data = c.b.subarray(i + 28, i + 28 + capLen);
      return rec;
    }
    if (type === SPB) {
      const ifc = this.ifaces[0];
      if (ifc === undefined) {
        this.skip('unknown-interface', at, 'simple packet block before any IDB');
        return undefined;
      }
      const wireLen = this.r32(i + 8);
      const capLen = Math.min(wireLen, len - 16, ifc.snapLen > 0 ? ifc.snapLen : Infinity);
      rec.iface = ifc.name;
      rec.linkType = ifc.linkType;
      rec.capLen = capLen;
      rec.wireLen = wireLen;
      rec.timeUs = 0;
      rec.data = c.b.subarray(i + 12, i + 12 + capLen);
      return rec;
    }
    // name resolution, statistics, decryption secrets, custom blocks: not needed
    this.skip('ignored-block', at, `block type 0x${type.toString(16)}`);
    return undefined;
  }

  atEnd(): void {
    const c = this.c;
    if (c.available > 0) this.skip('truncated-block', c.pos, `${c.available} bytes of a block cut at end of file`);
  }
}

/** An open capture file: its cursor and parser. */
class CaptureSource {
  private done = false;
  private constructor(
    private readonly fh: FileHandle,
    private readonly cursor: Cursor,
    readonly parser: RecordParser,
  ) {}

  static async open(input: string | CaptureFileInput, opts: ReadCaptureOptions): Promise<CaptureSource> {
    const path = typeof input === 'string' ? input : input.path;
    const given = (typeof input === 'string' ? undefined : input.iface) ?? (path === '-' ? 'stdin' : undefined);
    let fh: FileHandle;
    try {
      // "-" reads standard input (a pipe from tcpdump -w -, say), as tcpdump -r - does
      fh = await open(path === '-' ? '/dev/stdin' : path, 'r');
    } catch (e) {
      throw new JourneyError('E_PARSE', `${path}: cannot open (${(e as Error).message})`, { path }, { cause: e });
    }
    const skip: SkipFn = (reason, offset, detail) => {
      if (opts.skipped) opts.skipped[reason] = (opts.skipped[reason] ?? 0) + 1;
      opts.onSkip?.(reason, detail === undefined ? { path, offset } : { path, offset, detail });
    };
    try {
      const c = new Cursor(fh);
      const st = await fh.stat();
      if (st.isFile()) c.size = st.size;
      if (!(await c.ensure(4))) throw parseError(path, 0, 'empty or too short to be a pcap or pcapng file');
      const m = c.b.readUInt32LE(c.i);
      let parser: RecordParser;
      if (m === SHB) parser = new PcapngParser(c, path, given ?? baseName(path), skip);
      else if (m === 0xa1b2c3d4 || m === 0xd4c3b2a1 || m === 0xa1b23c4d || m === 0x4d3cb2a1)
        parser = new PcapParser(c, path, given ?? baseName(path), skip);
      else throw parseError(path, 0, `not a pcap or pcapng file (magic 0x${m.toString(16).padStart(8, '0')})`);
      return new CaptureSource(fh, c, parser);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** The next record, reading the file when needed; undefined at the end. */
  async pull(): Promise<CaptureRecord | undefined> {
    for (;;) {
      if (this.done) return undefined;
      const r = this.parser.next();
      if (r !== undefined) return r;
      // the parser has seen every byte there is and found no more records, or gave up
      if (this.cursor.atEof || this.parser.finished === true) {
        this.done = true;
        this.parser.atEnd();
        return undefined;
      }
      await this.cursor.ensure(this.parser.need);
    }
  }

  /** The next record if its bytes are already buffered (no await): the fast path. */
  nextBuffered(): CaptureRecord | undefined {
    return this.done || this.parser.finished === true ? undefined : this.parser.next();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** Reads the records of one capture file, in file order (`data` valid until the next record). */
export async function* readCaptureRecords(input: string | CaptureFileInput, opts: ReadCaptureOptions = {}): AsyncGenerator<CaptureRecord> {
  const src = await CaptureSource.open(input, opts);
  try {
    for (;;) {
      const r = src.nextBuffered() ?? (await src.pull());
      if (r === undefined) return;
      yield r;
    }
  } finally {
    await src.close();
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
export async function* readCaptureFiles(inputs: ReadonlyArray<string | CaptureFileInput>, opts: ReadCaptureOptions = {}): AsyncGenerator<FrameBatch> {
  const maxFrames = opts.batchFrames ?? 1024;
  const srcs: CaptureSource[] = [];
  try {
    for (const inp of inputs) srcs.push(await CaptureSource.open(inp, opts));
    const heads: Array<CaptureRecord | undefined> = [];
    for (const s of srcs) heads.push(await s.pull());
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
      let keep = true;
      if (opts.counts) opts.counts.read++;
      if (filter !== undefined) {
        let prog = programs.get(r.linkType);
        if (prog === undefined) {
          prog = await compileFilter(filter, r.linkType);
          programs.set(r.linkType, prog);
        }
        if (bpfRun(prog, r.data, 0, r.capLen, r.wireLen) === 0) {
          keep = false;
          if (opts.counts) opts.counts.filteredOut++;
        }
      }
      if (keep) {
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
      }
      const src = srcs[best] as CaptureSource;
      heads[best] = src.nextBuffered() ?? (await src.pull());
    }
    if (builder !== undefined && builder.count > 0) yield builder.take();
  } finally {
    await Promise.all(srcs.map((s) => s.close().catch(() => undefined)));
  }
}
