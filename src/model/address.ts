/**
 * The one spelling of an IPv6 address used everywhere in the model: RFC 5952 exactly as glibc's
 * inet_ntop prints it (and so as conntrack, ip and nft print it): lower case, the longest run of
 * two or more zero groups compressed (the first on a tie), `::ffff:a.b.c.d` for IPv4-mapped and
 * `::a.b.c.d` for IPv4-compatible addresses. Decoders, the native event reader and the conntrack
 * parser all produce addresses through it, so the same address always joins.
 */
export function ip6WordsToString(w: ArrayLike<number>): string {
  const dotted = (): string => `${(w[6] ?? 0) >>> 8}.${(w[6] ?? 0) & 0xff}.${(w[7] ?? 0) >>> 8}.${(w[7] ?? 0) & 0xff}`;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) return `::ffff:${dotted()}`;
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
  if (bestStart === 0 && bestLen === 6) return `::${dotted()}`;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += (w[i] ?? 0).toString(16);
  }
  return out;
}
