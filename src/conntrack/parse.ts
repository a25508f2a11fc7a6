/**
 * Parses conntrack entries in the text format shared by `/proc/net/nf_conntrack`,
 * `conntrack -L -o extended[,id]` and `conntrack -E -o extended,id[,timestamp]` — e.g.
 *
 *   ipv4 2 tcp 6 431999 ESTABLISHED src=10.0.10.5 dst=10.0.10.26 sport=40000 dport=8000
 *        src=172.17.0.2 dst=10.0.10.5 sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2
 *   [1795407369.445107]   [NEW] ipv4 2 icmp 1 30 src=.. type=8 code=0 id=9860 [UNREPLIED] src=.. id=9860 id=2560203762
 *
 * Never throws: a line it cannot read returns null (callers count it).
 * These formats carry no SNAT/DNAT status bits: NAT is derived from the tuples (nat.ts), and the
 * SRC_NAT/DST_NAT bits are filled in from that derivation so consumers see one shape.
 */
import type { ConntrackEntry, ConntrackEventType, CtStatusBit } from '../model/conntrack.js';
import type { IpFamily, L4Proto, Tuple } from '../model/tuple.js';
import { natOf } from './nat.js';
import { ip6WordsToString } from '../model/address.js';

export interface ParsedLine {
  readonly entry: ConntrackEntry;
  /** From a `[NEW]`/`[UPDATE]`/`[DESTROY]` prefix (conntrack -E). */
  readonly event: ConntrackEventType | null;
  /** From a `[seconds.micros]` prefix (conntrack -o timestamp), in ms since the epoch. */
  readonly timeMs: number | null;
}

const PROTO_NAMES: Record<number, L4Proto> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6', 132: 'sctp' };
const TUPLE_KEYS = new Set(['src', 'dst', 'sport', 'dport', 'type', 'code', 'id']);

/** Compresses an IPv6 address the way inet_ntop does ("fd00:0000:...:0002" -> "fd00::2"). */
export function normaliseIp(addr: string): string {
  if (!addr.includes(':')) return addr;
  const parts = expandIp6(addr);
  if (parts === null) return addr.toLowerCase();
  return ip6WordsToString(parts);
}

function expandIp6(addr: string): number[] | null {
  const a = addr.toLowerCase();
  if (a.includes('.')) return null; // v4-mapped: leave as is
  const halves = a.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
  const tail = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0 || (halves.length === 1 && head.length !== 8)) return null;
  const all = [...head, ...Array<string>(fill).fill('0'), ...tail];
  const out = all.map((h) => (/^[0-9a-f]{1,4}$/.test(h) ? parseInt(h, 16) : NaN));
  return out.some((n) => Number.isNaN(n)) ? null : out;
}

interface PartialTuple {
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  type?: number;
  code?: number;
  id?: number;
}

function toTuple(p: PartialTuple, family: IpFamily, proto: L4Proto, protoNum: number): Tuple | null {
  if (p.src === undefined || p.dst === undefined) return null;
  const isIcmp = proto === 'icmp' || proto === 'icmpv6';
  const base = { family, proto, protoNum, src: normaliseIp(p.src), dst: normaliseIp(p.dst) };
  if (isIcmp) {
    const id = p.id ?? 0;
    const t: Tuple = { ...base, sport: id, dport: id };
    return p.type !== undefined ? { ...t, icmpType: p.type, icmpCode: p.code ?? 0 } : t;
  }
  return { ...base, sport: p.sport ?? 0, dport: p.dport ?? 0 };
}

/** A key for entries that have no kernel id (the /proc format): the original tuple and zone. */
export function derivedId(orig: Tuple, zone: number): string {
  return `${orig.proto}/${orig.src}/${orig.sport}/${orig.dst}/${orig.dport}${zone !== 0 ? `/z${zone}` : ''}`;
}

export function parseConntrackLine(line: string, source: ConntrackEntry['source']): ParsedLine | null {
  const toks = line.trim().split(/\s+/);
  let i = 0;
  let event: ConntrackEventType | null = null;
  let timeMs: number | null = null;
  for (; i < toks.length; i++) {
    const t = toks[i] ?? '';
    const m = /^\[(NEW|UPDATE|DESTROY)\]$/.exec(t);
    if (m) {
      event = (m[1] ?? 'NEW').toLowerCase() as ConntrackEventType;
      continue;
    }
    const ts = /^\[(\d+(?:\.\d+)?)\]$/.exec(t);
    if (ts) {
      timeMs = Math.round(Number(ts[1]) * 1000);
      continue;
    }
    break;
  }
  // optional "ipv4 2" / "ipv6 10"
  let family: IpFamily = 4;
  if (toks[i] === 'ipv4' || toks[i] === 'ipv6') {
    family = toks[i] === 'ipv6' ? 6 : 4;
    i += 2;
  }
  const protoName = toks[i];
  const protoNum = Number(toks[i + 1]);
  if (protoName === undefined || !Number.isInteger(protoNum)) return null;
  i += 2;
  const proto: L4Proto = PROTO_NAMES[protoNum] ?? 'other';
  let timeout = 0;
  if (/^\d+$/.test(toks[i] ?? '')) {
    timeout = Number(toks[i]);
    i++;
  }
  let tcpState: string | undefined;
  if (toks[i] !== undefined && /^[A-Z_]+$/.test(toks[i] ?? '')) {
    tcpState = toks[i];
    i++;
  }
  const tuples: PartialTuple[] = [];
  let cur: PartialTuple | null = null;
  let inTuples = true;
  let mark = 0;
  let zone = 0;
  let ctId: string | null = null;
  let unreplied = false;
  const flags = new Set<CtStatusBit>();
  for (; i < toks.length; i++) {
    const t = toks[i] ?? '';
    if (t.startsWith('[') && t.endsWith(']')) {
      const f = t.slice(1, -1);
      if (f === 'UNREPLIED') unreplied = true;
      else if (f === 'ASSURED' || f === 'OFFLOAD' || f === 'HW_OFFLOAD') flags.add(f);
      continue;
    }
    const eq = t.indexOf('=');
    if (eq <= 0) continue;
    const k = t.slice(0, eq);
    const v = t.slice(eq + 1);
    if (inTuples && TUPLE_KEYS.has(k)) {
      if (k === 'src') {
        if (tuples.length >= 2) {
          inTuples = false;
          continue;
        }
        cur = {};
        tuples.push(cur);
        cur.src = v;
        continue;
      }
      if (cur === null) continue;
      if (k === 'dst') cur.dst = v;
      else if (k === 'sport') cur.sport = Number(v);
      else if (k === 'dport') cur.dport = Number(v);
      else if (k === 'type') cur.type = Number(v);
      else if (k === 'code') cur.code = Number(v);
      else if (k === 'id') {
        if (cur.id !== undefined || (proto !== 'icmp' && proto !== 'icmpv6')) {
          ctId = v;
          inTuples = false;
        } else cur.id = Number(v);
      }
      continue;
    }
    if (k === 'zone') {
      zone = Number(v) || 0;
      continue;
    }
    if (tuples.length >= 2) inTuples = false;
    if (k === 'mark') mark = Number(v) || 0;
    else if (k === 'id') ctId = v;
  }
  const o = tuples[0];
  const r = tuples[1];
  if (o === undefined || r === undefined) return null;
  const orig = toTuple(o, family, proto, protoNum);
  const reply = toTuple(r, family, proto, protoNum);
  if (orig === null || reply === null) return null;
  const status: CtStatusBit[] = ['CONFIRMED'];
  if (!unreplied) status.push('SEEN_REPLY');
  for (const f of flags) status.push(f);
  const nat = natOf(orig, reply);
  if (nat.snat) status.push('SRC_NAT', 'SRC_NAT_DONE');
  if (nat.dnat) status.push('DST_NAT', 'DST_NAT_DONE');
  const base = {
    id: ctId ?? derivedId(orig, zone),
    orig,
    reply,
    status,
    mark,
    zone,
    timeout,
    source,
  };
  const entry: ConntrackEntry = tcpState !== undefined && proto !== 'icmp' && proto !== 'icmpv6' && proto !== 'udp' ? { ...base, tcpState } : base;
  return { entry, event, timeMs };
}

/** Parses many lines; returns entries and the number of lines it could not read. */
export function parseConntrackText(text: string, source: ConntrackEntry['source']): { lines: ParsedLine[]; skipped: number } {
  const lines: ParsedLine[] = [];
  let skipped = 0;
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (l === '' || l.startsWith('#') || l.startsWith('conntrack v')) continue;
    const p = parseConntrackLine(l, source);
    if (p) lines.push(p);
    else skipped++;
  }
  return { lines, skipped };
}
