/** Address formatting for kept packets (allocates strings: never on the per-packet hot path). */

export function ipv4ToString(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** RFC 5952 text form (as inet_ntop and conntrack print it), IPv4-mapped as ::ffff:a.b.c.d. */
export function ipv6ToString(d: Uint8Array, o: number): string {
  const w: number[] = new Array<number>(8);
  for (let i = 0; i < 8; i++) w[i] = (((d[o + 2 * i] ?? 0) << 8) | (d[o + 2 * i + 1] ?? 0)) >>> 0;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${d[o + 12] ?? 0}.${d[o + 13] ?? 0}.${d[o + 14] ?? 0}.${d[o + 15] ?? 0}`;
  }
  // longest run of zero words (length >= 2), first one wins
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
  const hex = (i: number): string => (w[i] ?? 0).toString(16);
  if (bestStart < 0) return w.map((_, i) => hex(i)).join(':');
  const head: string[] = [];
  for (let i = 0; i < bestStart; i++) head.push(hex(i));
  const tail: string[] = [];
  for (let i = bestStart + bestLen; i < 8; i++) tail.push(hex(i));
  return `${head.join(':')}::${tail.join(':')}`;
}

export function macToString(d: Uint8Array, o: number): string {
  let s = '';
  for (let i = 0; i < 6; i++) s += (i ? ':' : '') + (d[o + i] ?? 0).toString(16).padStart(2, '0');
  return s;
}
