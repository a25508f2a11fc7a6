/**
 * IPv4 tuples as numbers, so that a packet's headers, read from the decode view, find their
 * conntrack entry without building a string: the addresses as int32, the protocol as the index of
 * its name (the string keys compare names: UDP-Lite and UDP share one, as do all "other" protocols),
 * and a 30-bit hash of the five as the key of a Map (a small integer: no allocation, no string).
 */
import type { L4Proto } from '../model/tuple.js';

export const PROTO_CODES = ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'other'] as const satisfies readonly L4Proto[];

export function protoCode(p: L4Proto): number {
  return PROTO_CODES.indexOf(p);
}

/** The address as an int32 when it is a dotted quad in its one spelling (no leading zeros), else NaN. */
export function packIpv4(s: string): number {
  let a = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 255 || parts === 4) return Number.NaN;
      a = (a << 8) | part;
      parts++;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return Number.NaN; // a leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3) return Number.NaN;
    } else return Number.NaN;
  }
  return parts === 4 ? a | 0 : Number.NaN;
}

/**
 * The Map key of a packed IPv4 tuple: a 30-bit hash (a small integer); equal tuples, equal keys.
 * It is the same for a tuple and its reverse (each endpoint is hashed alone and the two are
 * added), so a conntrack entry's key and the same key read backwards share one Map entry: an
 * entry without NAT takes one, a NATed one two, instead of two and four.
 */
export function hash4(proto: number, src: number, dst: number, sport: number, dport: number): number {
  let h = (endpointHash(src, sport) + endpointHash(dst, dport)) | 0;
  h = Math.imul(h ^ (h >>> 15), 0x27d4eb2f);
  h ^= proto + (h >>> 16);
  return h & 0x3fffffff;
}

function endpointHash(addr: number, port: number): number {
  let h = Math.imul(addr ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ port, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** protoCode of an IP protocol number (as decode/observation.ts names it). */
export function protoCodeOfNumber(n: number): number {
  switch (n) {
    case 6:
      return 0;
    case 17:
    case 136:
      return 1;
    case 1:
      return 2;
    case 58:
      return 3;
    case 132:
      return 4;
    default:
      return 5;
  }
}
