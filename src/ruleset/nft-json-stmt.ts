/**
 * One `nft -j` expression → the ruleset model: a match's key and value, a verdict, a NAT
 * statement's arguments, any statement. A malformed expression throws PathError with its JSON path
 * (nft-json.ts turns it into E_PARSE naming the source).
 */
import { type J, isObj, jsonText as str } from './json-text.js';
import { renderMatch, renderStmt } from './nft-json-render.js';
import { type Expr, type Key, type MatchExpr, NAT_FLAGS, type NatFlag, type Value, type VerdictTarget } from './model.js';
import { parseCidr } from './ip.js';

export class PathError extends Error {
  constructor(
    readonly path: string,
    msg: string,
  ) {
    super(msg);
  }
}

export function only(o: Record<string, J>, path: string): [string, J] {
  const keys = Object.keys(o);
  if (keys.length !== 1) throw new PathError(path, `expected an object with one key, got {${keys.join(',')}}`);
  const k = keys[0] as string;
  return [k, o[k]];
}

const ADDR_FIELDS = new Set(['saddr', 'daddr']);

function keyOf(x: J, path: string): Key {
  if (!isObj(x)) throw new PathError(path, 'expected an expression object');
  const [k, v] = only(x, path);
  switch (k) {
    case 'payload': {
      if (!isObj(v)) throw new PathError(`${path}.payload`, 'expected an object');
      if (typeof v['protocol'] === 'string' && typeof v['field'] === 'string') return { kind: 'payload', proto: v['protocol'], field: v['field'] };
      return { kind: 'unknown', text: `raw payload ${JSON.stringify(v)}` };
    }
    case 'meta': {
      if (!isObj(v) || typeof v['key'] !== 'string') throw new PathError(`${path}.meta`, 'expected {key}');
      return { kind: 'meta', key: v['key'] };
    }
    case 'ct': {
      if (!isObj(v) || typeof v['key'] !== 'string') throw new PathError(`${path}.ct`, 'expected {key}');
      const dir = v['dir'];
      return { kind: 'ct', key: v['key'], ...(dir === 'original' || dir === 'reply' ? { dir } : {}) };
    }
    case 'fib': {
      if (!isObj(v) || typeof v['result'] !== 'string') throw new PathError(`${path}.fib`, 'expected {result, flags}');
      const f = v['flags'];
      const flags = Array.isArray(f) ? f.map(str) : typeof f === 'string' ? [f] : [];
      return { kind: 'fib', result: v['result'], flags };
    }
    default:
      return { kind: 'unknown', text: `${k} ${JSON.stringify(v)}` };
  }
}

function isIfaceKey(key: Key): boolean {
  return (
    key.kind === 'meta' &&
    (key.key === 'iifname' || key.key === 'oifname' || key.key === 'iif' || key.key === 'oif' || key.key === 'ibrname' || key.key === 'obrname')
  );
}
function isAddrKey(key: Key): boolean {
  return (key.kind === 'payload' && ADDR_FIELDS.has(key.field)) || (key.kind === 'ct' && ADDR_FIELDS.has(key.key));
}

export function jsonValue(x: J, key: Key, path: string): Value {
  if (typeof x === 'number') return { kind: 'num', v: x };
  if (typeof x === 'boolean') return { kind: 'sym', v: str(x) };
  if (typeof x === 'string') {
    if (x.startsWith('@')) return { kind: 'named', name: x.slice(1) };
    if (isIfaceKey(key)) {
      // nft JSON: a trailing unescaped '*' is a wildcard; "\\*" is a literal star.
      return { kind: 'str', v: x };
    }
    if (isAddrKey(key)) {
      if (parseCidr(x) === null) throw new PathError(path, `bad address "${x}"`);
      return { kind: 'addr', v: x };
    }
    return { kind: 'sym', v: x };
  }
  if (Array.isArray(x)) {
    if (key.kind === 'ct' && (key.key === 'state' || key.key === 'status')) return { kind: 'flags', v: x.map(str) };
    return { kind: 'set', items: x.map((e, i) => jsonValue(e, key, `${path}[${i}]`)) };
  }
  if (isObj(x)) {
    const [k, v] = only(x, path);
    switch (k) {
      case 'prefix': {
        if (!isObj(v) || typeof v['addr'] !== 'string' || typeof v['len'] !== 'number') throw new PathError(`${path}.prefix`, 'expected {addr, len}');
        if (parseCidr(v['addr']) === null) throw new PathError(`${path}.prefix.addr`, `bad address "${v['addr']}"`);
        return { kind: 'prefix', addr: v['addr'], len: v['len'] };
      }
      case 'range': {
        if (!Array.isArray(v) || v.length !== 2) throw new PathError(`${path}.range`, 'expected [lo, hi]');
        return { kind: 'range', lo: jsonValue(v[0], key, `${path}.range[0]`), hi: jsonValue(v[1], key, `${path}.range[1]`) };
      }
      case 'set': {
        const items = Array.isArray(v) ? v : [v];
        return { kind: 'set', items: items.map((e, i) => jsonValue(e, key, `${path}.set[${i}]`)) };
      }
      case 'elem': {
        if (!isObj(v)) throw new PathError(`${path}.elem`, 'expected {val}');
        return jsonValue(v['val'], key, `${path}.elem.val`);
      }
      default:
        return { kind: 'sym', v: `?${k}` };
    }
  }
  throw new PathError(path, `unexpected value ${JSON.stringify(x)}`);
}

export function verdictTarget(x: J, path: string): VerdictTarget {
  if (!isObj(x)) throw new PathError(path, 'expected a verdict');
  const [k, v] = only(x, path);
  switch (k) {
    case 'accept':
    case 'drop':
    case 'return':
    case 'continue':
      return { kind: k };
    case 'jump':
    case 'goto':
      if (!isObj(v) || typeof v['target'] !== 'string') throw new PathError(`${path}.${k}`, 'expected {target}');
      return { kind: k, target: v['target'] };
    default:
      throw new PathError(path, `unknown verdict "${k}"`);
  }
}

function natArgs(v: J, path: string): { addr?: string; addrHi?: string; port?: number; portHi?: number; flags?: NatFlag[] } | null {
  if (v === null || v === undefined) return {};
  if (!isObj(v)) throw new PathError(path, 'expected NAT arguments');
  const out: { addr?: string; addrHi?: string; port?: number; portHi?: number; flags?: NatFlag[] } = {};
  const f = v['flags'];
  const fl = (Array.isArray(f) ? f : typeof f === 'string' ? [f] : [])
    .map(str)
    .filter((x): x is NatFlag => (NAT_FLAGS as readonly string[]).includes(x));
  if (fl.length > 0) out.flags = fl;
  const a = v['addr'];
  if (typeof a === 'string') out.addr = a;
  else if (isObj(a) && Array.isArray(a['range'])) {
    out.addr = str(a['range'][0]);
    out.addrHi = str(a['range'][1]);
  } else if (a !== undefined) return null; // maps and other expressions
  const p = v['port'];
  if (typeof p === 'number') out.port = p;
  else if (isObj(p) && Array.isArray(p['range'])) {
    out.port = Number(p['range'][0]);
    out.portHi = Number(p['range'][1]);
  } else if (p !== undefined) return null;
  return out;
}

export function stmtOf(x: J, path: string): Expr {
  if (!isObj(x)) throw new PathError(path, 'expected a statement object');
  const [k, v] = only(x, path);
  switch (k) {
    case 'match': {
      if (!isObj(v)) throw new PathError(`${path}.match`, 'expected {op,left,right}');
      const op = (v['op'] ?? '==') as MatchExpr['op'];
      let left = v['left'];
      let mask: number | undefined;
      if (isObj(left) && Array.isArray(left['&'])) {
        const [l, m] = left['&'] as J[];
        if (typeof m === 'number') {
          mask = m >>> 0;
          left = l;
        }
      }
      const key = keyOf(left, `${path}.match.left`);
      let value = jsonValue(v['right'], key, `${path}.match.right`);
      if (key.kind === 'ct' && (key.key === 'state' || key.key === 'status') && value.kind === 'sym') value = { kind: 'flags', v: [value.v] };
      const m: MatchExpr = { kind: 'match', key, op, value, text: renderMatch(v), ...(mask !== undefined ? { mask } : {}) };
      return m;
    }
    case 'accept':
    case 'drop':
    case 'return':
    case 'continue':
      return { kind: 'verdict', verdict: k };
    case 'queue':
      return { kind: 'verdict', verdict: 'queue' };
    case 'jump':
    case 'goto':
      if (!isObj(v) || typeof v['target'] !== 'string') throw new PathError(`${path}.${k}`, 'expected {target}');
      return { kind: k, target: v['target'] };
    case 'reject': {
      const w = isObj(v) ? [v['type'], v['expr']].filter((s) => s !== undefined).join(' ') : '';
      return { kind: 'reject', ...(w ? { with: w } : {}) };
    }
    case 'counter':
      return { kind: 'counter' };
    case 'log':
      return { kind: 'log' };
    case 'notrack':
      return { kind: 'notrack' };
    case 'vmap': {
      if (!isObj(v)) throw new PathError(`${path}.vmap`, 'expected {key,data}');
      const key = keyOf(v['key'], `${path}.vmap.key`);
      const data = v['data'];
      if (typeof data === 'string' && data.startsWith('@')) return { kind: 'vmap', key, map: data.slice(1) };
      const raw = isObj(data) && 'set' in data ? data['set'] : data;
      if (!Array.isArray(raw)) throw new PathError(`${path}.vmap.data`, 'expected @map or a set of [key, verdict]');
      const pairs = raw.map((e, i): readonly [Value, VerdictTarget] => {
        if (!Array.isArray(e) || e.length !== 2) throw new PathError(`${path}.vmap.data[${i}]`, 'expected [key, verdict]');
        return [jsonValue(e[0], key, `${path}.vmap.data[${i}][0]`), verdictTarget(e[1], `${path}.vmap.data[${i}][1]`)];
      });
      return { kind: 'vmap', key, map: pairs };
    }
    case 'mangle': {
      if (!isObj(v)) throw new PathError(`${path}.mangle`, 'expected {key,value}');
      const key = v['key'];
      const val = v['value'];
      if (isObj(key) && isObj(key['meta']) && (key['meta'] as Record<string, J>)['key'] === 'nftrace') return { kind: 'nftrace' };
      if (isObj(key) && typeof val === 'number') {
        const mk = isObj(key['meta'])
          ? (key['meta'] as Record<string, J>)['key']
          : isObj(key['ct'])
            ? (key['ct'] as Record<string, J>)['key']
            : undefined;
        if (mk === 'mark')
          return { kind: 'mark', target: isObj(key['meta']) ? 'meta' : 'ct', value: val >>> 0, mask: 0xffffffff, text: renderStmt(x) };
      }
      return { kind: 'unknown', text: renderStmt(x), terminal: false };
    }
    case 'dnat':
    case 'snat':
    case 'masquerade':
    case 'redirect': {
      const args = natArgs(v, `${path}.${k}`);
      if (args === null) return { kind: 'unknown', text: renderStmt(x), terminal: true };
      return { kind: 'nat', type: k, ...args, text: renderStmt(x) };
    }
    case 'xt': {
      const t = isObj(v) ? str(v['type'] ?? '') : '';
      const name = isObj(v) ? str(v['name'] ?? '') : '';
      if (t === 'match')
        return {
          kind: 'match',
          key: { kind: 'unknown', text: `xt match ${name}` },
          op: '==',
          value: { kind: 'sym', v: '?' },
          text: `xt match "${name}"`,
        };
      return { kind: 'unknown', text: `xt ${t} "${name}" (made by iptables-nft: read this table with iptables-save)`, terminal: true };
    }
    case 'limit':
    case 'quota':
    case 'ct count':
    case 'meter':
      return { kind: 'match', key: { kind: 'unknown', text: renderStmt(x) }, op: '==', value: { kind: 'sym', v: '?' }, text: renderStmt(x) };
    case 'fwd':
    case 'dup':
    case 'tproxy':
    case 'synproxy':
      return { kind: 'unknown', text: renderStmt(x), terminal: k !== 'dup' };
    default:
      return { kind: 'unknown', text: renderStmt(x), terminal: false };
  }
}
