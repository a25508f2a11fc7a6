/** Address formatting for kept packets (allocates strings: never on the per-packet hot path). */
import { ip6WordsToString } from '../model/address.js';

/** Addresses repeat: a small cache of their text (cleared when full, so bounded). */
const v4Cache = new Map<number, string>();

export function ipv4ToString(a: number): string {
  const hit = v4Cache.get(a);
  if (hit !== undefined) return hit;
  const s = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
  if (v4Cache.size >= 8192) v4Cache.clear();
  v4Cache.set(a, s);
  return s;
}

const words = new Uint16Array(8);

/** RFC 5952 text form exactly as glibc's inet_ntop prints it (conntrack -L): ::ffff:a.b.c.d for mapped. */
export function ipv6ToString(d: Uint8Array, o: number): string {
  const w = words;
  for (let i = 0; i < 8; i++) w[i] = ((d[o + 2 * i] ?? 0) << 8) | (d[o + 2 * i + 1] ?? 0);
  return ip6WordsToString(w);
}

export function macToString(d: Uint8Array, o: number): string {
  let s = '';
  for (let i = 0; i < 6; i++) s += (i ? ':' : '') + (d[o + i] ?? 0).toString(16).padStart(2, '0');
  return s;
}
