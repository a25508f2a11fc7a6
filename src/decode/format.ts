/** Address formatting for kept packets (allocates strings: never on the per-packet hot path). */

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
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${d[o + 12] ?? 0}.${d[o + 13] ?? 0}.${d[o + 14] ?? 0}.${d[o + 15] ?? 0}`;
  }
  // longest run of zero words (length >= 2), the first one on a tie
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-compatible (::a.b.c.d, deprecated) as glibc's inet_ntop prints it
  if (bestStart === 0 && bestLen === 6) return `::${d[o + 12] ?? 0}.${d[o + 13] ?? 0}.${d[o + 14] ?? 0}.${d[o + 15] ?? 0}`;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += (w[i] as number).toString(16);
  }
  return out;
}

export function macToString(d: Uint8Array, o: number): string {
  let s = '';
  for (let i = 0; i < 6; i++) s += (i ? ':' : '') + (d[o + i] ?? 0).toString(16).padStart(2, '0');
  return s;
}
