/** IP address arithmetic for the loaders and the simulator: IPv4 as uint32 numbers, IPv6 as bigint. */

export type IpVersion = 4 | 6;

export interface Ip {
  readonly v: IpVersion;
  /** IPv4: uint32 in a bigint as well, so that prefix code is shared. */
  readonly n: bigint;
  /** IPv4 only: the address as a uint32 number (fast path of the simulator); 0 for IPv6. */
  readonly n4: number;
}

export function parseIpv4(s: string): bigint | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const b = Number(p);
    if (b > 255) return null;
    n = (n << 8n) | BigInt(b);
  }
  return n;
}

export function parseIpv6(s: string): bigint | null {
  let str = s;
  const pct = str.indexOf('%');
  if (pct >= 0) str = str.slice(0, pct);
  if (!/^[0-9a-fA-F:.]+$/.test(str) || str.length < 2) return null;
  const lastColon = str.lastIndexOf(':');
  if (str.slice(lastColon + 1).includes('.')) {
    const v4 = parseIpv4(str.slice(lastColon + 1));
    if (v4 === null) return null;
    str = `${str.slice(0, lastColon + 1)}${((v4 >> 16n) & 0xffffn).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const dbl = str.split('::');
  if (dbl.length > 2) return null;
  const parseGroups = (g: string): bigint[] | null => {
    if (g === '') return [];
    const out: bigint[] = [];
    for (const h of g.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(h)) return null;
      out.push(BigInt(parseInt(h, 16)));
    }
    return out;
  };
  const head = parseGroups(dbl[0] ?? '');
  const rest = dbl.length === 2 ? parseGroups(dbl[1] ?? '') : [];
  if (head === null || rest === null) return null;
  const restAll = rest;
  let groups: bigint[];
  if (dbl.length === 2) {
    const fill = 8 - head.length - restAll.length;
    if (fill < 0) return null;
    groups = [...head, ...new Array<bigint>(fill).fill(0n), ...restAll];
  } else {
    groups = [...head, ...restAll];
  }
  if (groups.length !== 8) return null;
  let n = 0n;
  for (const g of groups) n = (n << 16n) | g;
  return n;
}

/** Parsed addresses by their text: the simulator parses the same few addresses for every packet. */
const parsedIps = new Map<string, Ip | null>();
const PARSED_IPS_MAX = 4096;

/** The address in `s` (an Ip is never changed, so one object serves every caller), or null. */
export function parseIp(s: string): Ip | null {
  let ip = parsedIps.get(s);
  if (ip === undefined) {
    ip = parseIpText(s);
    if (parsedIps.size >= PARSED_IPS_MAX) parsedIps.clear();
    parsedIps.set(s, ip);
  }
  return ip;
}

function parseIpText(s: string): Ip | null {
  if (s.includes(':')) {
    const n = parseIpv6(s);
    return n === null ? null : { v: 6, n, n4: 0 };
  }
  const n = parseIpv4(s);
  return n === null ? null : { v: 4, n, n4: Number(n) };
}

export function bits(v: IpVersion): number {
  return v === 4 ? 32 : 128;
}

export function maskOf(v: IpVersion, len: number): bigint {
  const b = BigInt(bits(v));
  const l = BigInt(Math.max(0, Math.min(Number(b), len)));
  return ((1n << b) - 1n) ^ ((1n << (b - l)) - 1n);
}

export interface Cidr {
  readonly v: IpVersion;
  readonly net: bigint;
  readonly mask: bigint;
  readonly len: number;
}

/** "10.0.0.0/8", "fd00::/64", "1.2.3.4" (host), or an iptables netmask "10.0.0.0/255.0.0.0". */
export function parseCidr(s: string): Cidr | null {
  const slash = s.indexOf('/');
  const addr = slash >= 0 ? s.slice(0, slash) : s;
  const ip = parseIp(addr);
  if (ip === null) return null;
  let len = bits(ip.v);
  if (slash >= 0) {
    const l = s.slice(slash + 1);
    if (/^\d{1,3}$/.test(l)) len = Number(l);
    else {
      const m = parseIp(l);
      if (m === null || m.v !== ip.v) return null;
      // dotted netmask: count leading ones
      const b = bits(ip.v);
      let c = 0;
      for (let i = b - 1; i >= 0; i--) {
        if ((m.n >> BigInt(i)) & 1n) c++;
        else break;
      }
      len = c;
    }
    if (len > bits(ip.v)) return null;
  }
  const mask = maskOf(ip.v, len);
  return { v: ip.v, net: ip.n & mask, mask, len };
}

export function cidrContains(c: Cidr, ip: Ip): boolean {
  return c.v === ip.v && (ip.n & c.mask) === c.net;
}

/** Whether the address text `ip` is inside `cidr` ("172.17.0.0/16", or a bare address); false when either does not parse. */
export function addrInCidr(ip: string, cidr: string): boolean {
  const c = parseCidr(cidr);
  const a = parseIp(ip);
  return c !== null && a !== null && cidrContains(c, a);
}

export function formatIp(ip: Ip): string {
  if (ip.v === 4) {
    const n = ip.n;
    return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
  }
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((ip.n >> BigInt(i * 16)) & 0xffffn).toString(16));
  // compress the longest run of zeros
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Canonical text of an address string (so that "::ffff:1.2.3.4" and zero-compression compare). */
export function canonicalIp(s: string): string {
  const ip = parseIp(s);
  return ip === null ? s : formatIp(ip);
}
