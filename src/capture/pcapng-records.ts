/**
 * pcapng records: sections in either byte order, interfaces with their name, time resolution and
 * offset, and the packet blocks (EPB, SPB, the obsolete PB), read from the cursor of pcap-records.ts.
 */
import { type CaptureRecord, type Cursor, type Iface, MAX_RECORD, type RecordParser, type SkipFn, parseError } from './pcap-records.js';

/** The pcapng section header block type, also the magic at the start of a pcapng file. */
export const SHB = 0x0a0d0d0a;
const IDB = 1;
const OPB = 2;
const SPB = 3;
const EPB = 6;

export class PcapngParser implements RecordParser {
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
