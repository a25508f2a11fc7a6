/**
 * Classic pcap records, read synchronously from a buffered cursor over the file: the header in
 * either byte order and time unit, each record checked and resynchronised past corrupt headers.
 * Also what the pcapng reader shares: the cursor, the record shape and the parser interface.
 */
import type { FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { JourneyError } from '../model/errors.js';

export interface CaptureRecord {
  iface: string;
  linkType: number;
  data: Uint8Array;
  capLen: number;
  wireLen: number;
  timeUs: number;
}

/** Largest pcapng block we accept. */
export const MAX_RECORD = 256 * 1024 * 4;
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

export class Cursor {
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

export interface Iface {
  name: string;
  linkType: number;
  snapLen: number;
  /** Timestamp: units per second as divisor to µs, and offset in µs. */
  resolPow10: number; // -1 when power of two
  resolPow2: number;
  offsetUs: number;
}

export function parseError(path: string, offset: number, what: string): JourneyError {
  return new JourneyError('E_PARSE', `${path}: ${what} (at byte ${offset})`, { path, offset });
}

export function baseName(path: string): string {
  return basename(path).replace(/\.(pcapng|pcap|cap|ntar)(\.\w+)?$/i, '') || path;
}

export type SkipFn = (reason: string, offset: number, detail?: string) => void;

/**
 * A synchronous parser over a Cursor: `next()` returns the next record while its bytes are
 * buffered, else undefined with `need` set to the bytes it wants (the caller fills the cursor
 * and calls again; at end of file it calls `atEnd()`). One record object is reused.
 */
export interface RecordParser {
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
export class PcapParser implements RecordParser {
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
