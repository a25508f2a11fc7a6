/**
 * IPFIX on the wire (RFC 7011): the message header, template sets and data sets, with
 * enterprise-specific and variable-length fields. Pure encoding: no sockets, no clocks.
 */
import { isIPv4, isIPv6 } from 'node:net';

export const IPFIX_VERSION = 10;
export const MESSAGE_HEADER_BYTES = 16;
export const SET_HEADER_BYTES = 4;
export const TEMPLATE_SET_ID = 2;
/** RFC 7011 §7: a length of 65535 in a field specifier marks a variable-length field. */
export const VARIABLE_LENGTH = 0xffff;
/** RFC 5103: the reverse direction of an IANA element is the same id under this enterprise number. */
export const REVERSE_PEN = 29305;

/** How a value is written. */
export const FIELD_KINDS = ['u8', 'u16', 'u32', 'u64', 'ip4', 'ip6', 'string'] as const;
export type FieldKind = (typeof FIELD_KINDS)[number];
const FIXED: Record<Exclude<FieldKind, 'string'>, number> = { u8: 1, u16: 2, u32: 4, u64: 8, ip4: 4, ip6: 16 };

/** One field specifier of a template: an Information Element and how its value is encoded. */
export interface FieldSpec {
  readonly name: string;
  readonly id: number;
  /** Private Enterprise Number; 0 (or absent) for IANA elements. */
  readonly pen?: number;
  readonly kind: FieldKind;
}

export interface Template {
  /** 256..65535 (RFC 7011 §3.4.1). */
  readonly id: number;
  readonly fields: readonly FieldSpec[];
}

export type FieldValue = number | bigint | string;
export type DataRecord = Readonly<Record<string, FieldValue>>;

const fieldLength = (f: FieldSpec): number => (f.kind === 'string' ? VARIABLE_LENGTH : FIXED[f.kind]);

/** The bytes of a template record (without set header). */
export function encodeTemplateRecord(t: Template): Buffer {
  const size = 4 + t.fields.reduce((n, f) => n + ((f.pen ?? 0) !== 0 ? 8 : 4), 0);
  const b = Buffer.alloc(size);
  b.writeUInt16BE(t.id, 0);
  b.writeUInt16BE(t.fields.length, 2);
  let o = 4;
  for (const f of t.fields) {
    const pen = f.pen ?? 0;
    b.writeUInt16BE((pen !== 0 ? 0x8000 : 0) | f.id, o);
    b.writeUInt16BE(fieldLength(f), o + 2);
    o += 4;
    if (pen !== 0) {
      b.writeUInt32BE(pen, o);
      o += 4;
    }
  }
  return b;
}

/** A set: header (id, length) and its records, padded to nothing (records are self-delimiting). */
export function encodeSet(setId: number, records: readonly Buffer[]): Buffer {
  const body = Buffer.concat(records as Buffer[]);
  const head = Buffer.alloc(SET_HEADER_BYTES);
  head.writeUInt16BE(setId, 0);
  head.writeUInt16BE(SET_HEADER_BYTES + body.length, 2);
  return Buffer.concat([head, body]);
}

function ip4Bytes(addr: string): Buffer {
  const b = Buffer.alloc(4);
  if (!isIPv4(addr)) return b;
  addr.split('.').forEach((p, i) => {
    b.writeUInt8(Number(p) & 0xff, i);
  });
  return b;
}

/** 16 bytes of an IPv6 address (also "::ffff:a.b.c.d" and "::"); zeros for what is not one. */
export function ip6Bytes(addr: string): Buffer {
  const b = Buffer.alloc(16);
  if (!isIPv6(addr)) return b;
  let s = addr.split('%')[0] as string;
  let tail: number[] = [];
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (m?.[1] !== undefined && m[2] !== undefined) {
    const q = ip4Bytes(m[2]);
    tail = [q.readUInt16BE(0), q.readUInt16BE(2)];
    s = m[1].endsWith('::') ? m[1] : m[1].slice(0, -1);
  }
  const hex = (part: string | undefined): number[] => (part ? part.split(':').map((h) => Number.parseInt(h, 16)) : []);
  const halves = s.split('::');
  const left = hex(halves[0]);
  const right = hex(halves[1]);
  const groups =
    halves.length === 1
      ? [...left, ...tail]
      : [...left, ...new Array<number>(8 - left.length - right.length - tail.length).fill(0), ...right, ...tail];
  if (groups.length !== 8) return b;
  groups.forEach((g, i) => {
    b.writeUInt16BE(g & 0xffff, i * 2);
  });
  return b;
}

/** Bytes a data record takes under template `t`. */
export function dataRecordLength(t: Template, r: DataRecord): number {
  let n = 0;
  for (const f of t.fields) {
    if (f.kind !== 'string') n += FIXED[f.kind];
    else {
      const len = Buffer.byteLength(String(r[f.name] ?? ''), 'utf8');
      n += Math.min(len, 0xffff - 3) + (len < 255 ? 1 : 3);
    }
  }
  return n;
}

/** Writes one data record into `b` at `o`; returns the offset after it. A missing value is zero/empty. */
export function writeDataRecord(b: Buffer, o: number, t: Template, r: DataRecord): number {
  for (const f of t.fields) {
    const v = r[f.name];
    switch (f.kind) {
      case 'u8':
        b.writeUInt8(Number(v ?? 0) & 0xff, o);
        o += 1;
        break;
      case 'u16':
        b.writeUInt16BE(Number(v ?? 0) & 0xffff, o);
        o += 2;
        break;
      case 'u32':
        b.writeUInt32BE(Number(v ?? 0) >>> 0, o);
        o += 4;
        break;
      case 'u64':
        b.writeBigUInt64BE(BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(Math.trunc(Number(v ?? 0)))), o);
        o += 8;
        break;
      case 'ip4':
        ip4Bytes(String(v ?? '')).copy(b, o);
        o += 4;
        break;
      case 'ip6':
        ip6Bytes(String(v ?? '')).copy(b, o);
        o += 16;
        break;
      case 'string': {
        let s = Buffer.from(String(v ?? ''), 'utf8');
        if (s.length > 0xffff - 3) s = s.subarray(0, 0xffff - 3);
        if (s.length < 255) {
          b.writeUInt8(s.length, o);
          o += 1;
        } else {
          b.writeUInt8(255, o);
          b.writeUInt16BE(s.length, o + 1);
          o += 3;
        }
        s.copy(b, o);
        o += s.length;
        break;
      }
    }
  }
  return o;
}

/** The 16-byte message header (RFC 7011 §3.1). */
export function writeMessageHeader(b: Buffer, length: number, exportTimeS: number, sequence: number, domainId: number): void {
  b.writeUInt16BE(IPFIX_VERSION, 0);
  b.writeUInt16BE(length, 2);
  b.writeUInt32BE(exportTimeS >>> 0, 4);
  b.writeUInt32BE(sequence >>> 0, 8);
  b.writeUInt32BE(domainId >>> 0, 12);
}

/** A whole message from already encoded sets. */
export function encodeMessage(sets: readonly Buffer[], exportTimeS: number, sequence: number, domainId: number): Buffer {
  const length = MESSAGE_HEADER_BYTES + sets.reduce((n, s) => n + s.length, 0);
  const head = Buffer.alloc(MESSAGE_HEADER_BYTES);
  writeMessageHeader(head, length, exportTimeS, sequence, domainId);
  return Buffer.concat([head, ...sets]);
}
