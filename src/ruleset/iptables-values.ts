/**
 * The values of iptables-save options as the model's values: interfaces with `+` wildcards, ports
 * and port ranges, addresses and prefixes, numbers, mark/mask pairs, NAT --to specs, protocol names.
 * An option that cannot be read throws LineError.
 */
import { PROTO_BY_NAME } from '../model/tuple.js';
import type { Value } from './model.js';
import { parseCidr, parseIp } from './ip.js';

export function protoNumber(p: string): number | null {
  if (/^\d+$/.test(p)) return Number(p);
  return PROTO_BY_NAME[p.toLowerCase()] ?? null;
}

export class LineError extends Error {}

export function ifaceValue(name: string): Value {
  // iptables: a trailing '+' is a wildcard; the model uses nft's '*'.
  return { kind: 'str', v: name.endsWith('+') ? `${name.slice(0, -1)}*` : name };
}

export function portValue(spec: string): Value {
  const m = /^(\d*)(?::(\d*))?$/.exec(spec);
  if (!m) throw new LineError(`bad port "${spec}"`);
  if (m[2] === undefined) {
    if (m[1] === '') throw new LineError(`bad port "${spec}"`);
    return { kind: 'num', v: Number(m[1]) };
  }
  const lo = m[1] === '' ? 0 : Number(m[1]);
  const hi = m[2] === '' ? 65535 : Number(m[2]);
  return { kind: 'range', lo: { kind: 'num', v: lo }, hi: { kind: 'num', v: hi } };
}

export function addrValue(spec: string): Value {
  const items = spec.split(',');
  const vals: Value[] = items.map((s) => {
    const c = parseCidr(s);
    if (c === null) throw new LineError(`bad address "${s}"`);
    return s.includes('/') ? { kind: 'prefix', addr: s.slice(0, s.indexOf('/')), len: c.len } : { kind: 'addr', v: s };
  });
  return vals.length === 1 ? (vals[0] as Value) : { kind: 'set', items: vals };
}

export function numValue(s: string): number {
  const n = s.startsWith('0x') ? parseInt(s, 16) : Number(s);
  if (!Number.isFinite(n)) throw new LineError(`bad number "${s}"`);
  return n >>> 0;
}

export function markParts(spec: string): { value: number; mask: number } {
  const [v, m] = spec.split('/');
  return { value: numValue(v ?? ''), mask: m === undefined ? 0xffffffff : numValue(m) };
}

/** "ip[-ip][:port[-port]]" of DNAT/SNAT --to-*. */
export function natTo(spec: string, v6: boolean): { addr?: string; addrHi?: string; port?: number; portHi?: number } {
  let addrPart = spec;
  let portPart: string | undefined;
  if (v6) {
    const m = /^\[([^\]]+)\](?::(.+))?$/.exec(spec);
    if (m) {
      addrPart = m[1] ?? '';
      portPart = m[2];
    }
  } else {
    const i = spec.indexOf(':');
    if (i >= 0) {
      addrPart = spec.slice(0, i);
      portPart = spec.slice(i + 1);
    }
  }
  const out: { addr?: string; addrHi?: string; port?: number; portHi?: number } = {};
  if (addrPart !== '') {
    const [a, b] = addrPart.split('-');
    if (a === undefined || parseIp(a) === null) throw new LineError(`bad NAT address "${spec}"`);
    out.addr = a;
    if (b !== undefined) out.addrHi = b;
  }
  if (portPart !== undefined) {
    const [a, b] = portPart.split('-');
    out.port = Number(a);
    if (!Number.isInteger(out.port)) throw new LineError(`bad NAT port "${spec}"`);
    if (b !== undefined) out.portHi = Number(b);
  }
  return out;
}
