/**
 * `nft -j list ruleset` JSON → Ruleset. Rules keep their handle; their text comes from a handle→text
 * map (from `nft -a list ruleset`) when the caller has one, else it is rendered from the JSON.
 * Malformed input throws JourneyError E_PARSE naming the source and the JSON path.
 */
import type { Hook, NfFamily } from '../model/explanation.js';
import { JourneyError } from '../model/errors.js';
import { jsonText as str } from './json-text.js';
import {
  type BaseChainInfo,
  type Expr,
  type Key,
  type MatchExpr,
  NAT_FLAGS,
  type NamedSet,
  type NatFlag,
  type Rule,
  type Ruleset,
  type Table,
  type Value,
  type VerdictTarget,
} from './model.js';
import { parseCidr } from './ip.js';

class PathError extends Error {
  constructor(
    readonly path: string,
    msg: string,
  ) {
    super(msg);
  }
}

type J = unknown;
const isObj = (x: J): x is Record<string, J> => typeof x === 'object' && x !== null && !Array.isArray(x);

function only(o: Record<string, J>, path: string): [string, J] {
  const keys = Object.keys(o);
  if (keys.length !== 1) throw new PathError(path, `expected an object with one key, got {${keys.join(',')}}`);
  const k = keys[0] as string;
  return [k, o[k]];
}

const FAMILIES: readonly NfFamily[] = ['ip', 'ip6', 'inet', 'bridge', 'arp', 'netdev'];
const HOOKS: readonly Hook[] = ['ingress', 'prerouting', 'input', 'forward', 'output', 'postrouting'];

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

function jsonValue(x: J, key: Key, path: string): Value {
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

function verdictTarget(x: J, path: string): VerdictTarget {
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

function natFlagText(f: J | undefined): string {
  const fl = Array.isArray(f) ? f.map(str) : typeof f === 'string' ? [f] : [];
  return fl.length > 0 ? ` ${fl.join(',')}` : '';
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

function stmtOf(x: J, path: string): Expr {
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

// ---------- rendering JSON back to nft syntax (for rule text when no `nft -a list` text exists) ----------

function renderKey(x: J): string {
  if (!isObj(x)) return renderVal(x);
  const [k, v] = Object.entries(x)[0] ?? ['?', null];
  const o = isObj(v) ? v : {};
  switch (k) {
    case 'payload':
      return `${str(o['protocol'] ?? 'payload')} ${str(o['field'] ?? '')}`.trim();
    case 'meta': {
      const mk = str(o['key']);
      return ['iifname', 'oifname', 'iif', 'oif', 'mark', 'l4proto', 'nfproto', 'protocol', 'pkttype', 'nftrace', 'iiftype', 'oiftype'].includes(
        mk,
      ) &&
        mk !== 'protocol' &&
        mk !== 'l4proto' &&
        mk !== 'nfproto' &&
        mk !== 'mark'
        ? mk
        : `meta ${mk}`;
    }
    case 'ct':
      return `ct${o['dir'] ? ` ${str(o['dir'])}` : ''} ${str(o['key'])}`;
    case 'fib':
      return `fib ${(Array.isArray(o['flags']) ? o['flags'] : [o['flags']]).map(str).join(' . ')} ${str(o['result'])}`;
    case '&':
      return Array.isArray(v) ? `${renderKey(v[0])} & ${renderVal(v[1])}` : '?';
    case 'concat':
      return Array.isArray(v) ? v.map(renderKey).join(' . ') : '?';
    default:
      return `${k} ${JSON.stringify(v)}`;
  }
}

function renderVal(x: J): string {
  if (typeof x === 'string') return /^[\w.:/*@-]+$/.test(x) ? x : `"${x}"`;
  if (typeof x === 'number' || typeof x === 'boolean') return str(x);
  if (Array.isArray(x)) return x.map(renderVal).join(',');
  if (isObj(x)) {
    const [k, v] = Object.entries(x)[0] ?? ['?', null];
    if (k === 'prefix' && isObj(v)) return `${str(v['addr'])}/${str(v['len'])}`;
    if (k === 'range' && Array.isArray(v)) return `${renderVal(v[0])}-${renderVal(v[1])}`;
    if (k === 'set')
      return `{ ${(Array.isArray(v) ? v : [v]).map((e) => (Array.isArray(e) ? `${renderVal(e[0])} : ${renderStmt(e[1])}` : renderVal(e))).join(', ')} }`;
    if (k === 'elem' && isObj(v)) return renderVal(v['val']);
    return renderKey(x);
  }
  return 'null';
}

function renderMatch(m: Record<string, J>): string {
  const left = m['left'];
  const isIface = isObj(left) && isObj(left['meta']) && /ifname$/.test(str((left['meta'] as Record<string, J>)['key']));
  let right = renderVal(m['right']);
  if (isIface && typeof m['right'] === 'string') right = `"${m['right']}"`;
  const op = m['op'] === '==' || m['op'] === 'in' || m['op'] === undefined ? '' : `${str(m['op'])} `;
  return `${renderKey(left)} ${op}${right}`;
}

function renderStmt(x: J): string {
  if (!isObj(x)) return str(x);
  const [k, v] = Object.entries(x)[0] ?? ['?', null];
  const o = isObj(v) ? v : {};
  switch (k) {
    case 'match':
      return renderMatch(o);
    case 'jump':
    case 'goto':
      return `${k} ${str(o['target'])}`;
    case 'counter':
      return isObj(v) && v['packets'] !== undefined ? `counter packets ${str(v['packets'])} bytes ${str(v['bytes'])}` : 'counter';
    case 'dnat':
    case 'snat': {
      const a = o['addr'] !== undefined ? renderVal(o['addr']) : '';
      const p = o['port'] !== undefined ? `:${renderVal(o['port'])}` : '';
      const addr = a.includes(':') && p ? `[${a}]` : a;
      return `${k} to ${addr}${p}${natFlagText(o['flags'])}`;
    }
    case 'masquerade':
    case 'redirect':
      return `${o['port'] !== undefined ? `${k} to :${renderVal(o['port'])}` : k}${natFlagText(o['flags'])}`;
    case 'vmap':
      return `${renderKey(o['key'])} vmap ${renderVal(o['data'])}`;
    case 'mangle':
      return `${renderKey(o['key'])} set ${renderVal(o['value'])}`;
    case 'reject':
      return isObj(v) ? `reject with ${str(o['type'] ?? '')} ${o['expr'] !== undefined ? `type ${str(o['expr'])}` : ''}`.trim() : 'reject';
    case 'xt':
      return `xt ${str(o['type'] ?? '')} "${str(o['name'] ?? '')}"`;
    case 'log':
      return isObj(v) && v['prefix'] !== undefined ? `log prefix "${str(v['prefix'])}"` : 'log';
    default:
      return v === null ? k : `${k} ${JSON.stringify(v)}`;
  }
}

/** Renders a rule's expression list as nft text (approximately what `nft list` prints). */
export function renderRuleExprs(exprs: readonly J[], comment?: string): string {
  const s = exprs.map(renderStmt).join(' ');
  return comment ? `${s} comment "${comment}"` : s;
}

// ---------- loader ----------

export interface NftJsonOptions {
  readonly source?: string;
  /** Rule text by "family table chain handle" (from `nft -a list ruleset`), preferred over rendering. */
  readonly ruleText?: ReadonlyMap<string, string>;
  /** Skip tables that iptables-nft made (rules with `xt` expressions, or names in this set "family name"). */
  readonly skipTables?: ReadonlySet<string>;
  readonly skipXtTables?: boolean;
}

export function ruleTextKey(family: string, table: string, chain: string, handle: number): string {
  return `${family} ${table} ${chain} ${handle}`;
}

/** nft's own rulesets nest a few levels (expressions inside expressions); far deeper is hostile. */
const MAX_JSON_DEPTH = 256;

/** The path of the first value nested deeper than MAX_JSON_DEPTH, or null; iterative, so it cannot overflow the stack itself. */
function tooDeep(doc: J): string | null {
  const stack: { v: J; depth: number; path: string }[] = [{ v: doc, depth: 0, path: '$' }];
  while (stack.length > 0) {
    const { v, depth, path } = stack.pop() as { v: J; depth: number; path: string };
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) return path;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push({ v: v[i] as J, depth: depth + 1, path: `${path}[${i}]` });
    } else for (const [k, x] of Object.entries(v)) stack.push({ v: x, depth: depth + 1, path: `${path}.${k}` });
  }
  return null;
}

/** Parses `nft -j list ruleset` output (text or already-parsed JSON). */
export function parseNftJson(input: string | J, opts: NftJsonOptions = {}): Ruleset {
  const source = opts.source ?? '<nft -j>';
  let doc: J = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input) as J;
    } catch (e) {
      const msg = e instanceof Error ? e.message : str(e);
      throw new JourneyError('E_PARSE', `${source}: not JSON: ${msg}`, { file: source });
    }
  }
  const deepAt = tooDeep(doc);
  if (deepAt !== null)
    throw new JourneyError('E_PARSE', `${source}: JSON nested deeper than ${MAX_JSON_DEPTH} levels (at ${deepAt}): not an nft ruleset`, {
      file: source,
      path: deepAt,
    });
  try {
    return buildRuleset(doc, source, opts);
  } catch (e) {
    if (e instanceof PathError) throw new JourneyError('E_PARSE', `${source}: at ${e.path}: ${e.message}`, { file: source, path: e.path });
    throw e;
  }
}

function buildRuleset(doc: J, source: string, opts: NftJsonOptions): Ruleset {
  if (!isObj(doc) || !Array.isArray(doc['nftables'])) throw new PathError('$', 'expected {"nftables": [...]}');
  const items = doc['nftables'] as J[];
  const tables = new Map<string, Table>();
  const notes: string[] = [];
  const pendingRules: { item: Record<string, J>; path: string }[] = [];
  const getTable = (family: J, name: J, path: string): Table => {
    if (typeof family !== 'string' || !FAMILIES.includes(family as NfFamily))
      throw new PathError(`${path}.family`, `unknown family ${JSON.stringify(family)}`);
    if (typeof name !== 'string') throw new PathError(`${path}.table`, 'expected a table name');
    const t = tables.get(`${family} ${name}`);
    if (t === undefined) throw new PathError(path, `table ${family} ${name} was not declared before use`);
    return t;
  };
  items.forEach((it, i) => {
    const path = `$.nftables[${i}]`;
    if (!isObj(it)) throw new PathError(path, 'expected an object');
    const [k, v] = only(it, path);
    if (!isObj(v)) throw new PathError(`${path}.${k}`, 'expected an object');
    const p = `${path}.${k}`;
    switch (k) {
      case 'metainfo':
        return;
      case 'table': {
        const family = v['family'];
        const name = v['name'];
        if (typeof family !== 'string' || !FAMILIES.includes(family as NfFamily))
          throw new PathError(`${p}.family`, `unknown family ${JSON.stringify(family)}`);
        if (typeof name !== 'string') throw new PathError(`${p}.name`, 'expected a string');
        tables.set(`${family} ${name}`, {
          family: family as NfFamily,
          name,
          origin: 'nft',
          chains: new Map(),
          sets: new Map(),
          handle: typeof v['handle'] === 'number' ? v['handle'] : null,
          source,
        });
        return;
      }
      case 'chain': {
        const t = getTable(v['family'], v['table'], p);
        const name = v['name'];
        if (typeof name !== 'string') throw new PathError(`${p}.name`, 'expected a string');
        let base: BaseChainInfo | null = null;
        if (v['hook'] !== undefined) {
          const hook = v['hook'];
          if (typeof hook !== 'string' || !HOOKS.includes(hook as Hook)) throw new PathError(`${p}.hook`, `unknown hook ${JSON.stringify(hook)}`);
          const prio = v['prio'];
          if (typeof prio !== 'number') throw new PathError(`${p}.prio`, 'expected a number');
          const type = v['type'] ?? 'filter';
          if (type !== 'filter' && type !== 'nat' && type !== 'route') throw new PathError(`${p}.type`, `unknown chain type ${JSON.stringify(type)}`);
          const policy = v['policy'] ?? 'accept';
          if (policy !== 'accept' && policy !== 'drop') throw new PathError(`${p}.policy`, `unknown policy ${JSON.stringify(policy)}`);
          base = { type, hook: hook as Hook, priority: prio, policy, ...(typeof v['dev'] === 'string' ? { device: v['dev'] } : {}) };
        }
        t.chains.set(name, { name, base, rules: [], handle: typeof v['handle'] === 'number' ? v['handle'] : null, line: null });
        return;
      }
      case 'set':
      case 'map': {
        const t = getTable(v['family'], v['table'], p);
        const name = v['name'];
        if (typeof name !== 'string') throw new PathError(`${p}.name`, 'expected a string');
        const type = Array.isArray(v['type']) ? (v['type'] as J[]).map(str).join(' . ') : str(v['type'] ?? '');
        const keyHint: Key = /ifname/.test(type)
          ? { kind: 'meta', key: 'iifname' }
          : /addr/.test(type)
            ? { kind: 'payload', proto: 'ip', field: 'daddr' }
            : { kind: 'unknown', text: type };
        const elems = Array.isArray(v['elem']) ? (v['elem'] as J[]) : [];
        const elements: Value[] = [];
        const targets: (VerdictTarget | Value)[] = [];
        elems.forEach((e, j) => {
          const ep = `${p}.elem[${j}]`;
          if (k === 'map') {
            if (!Array.isArray(e) || e.length !== 2) throw new PathError(ep, 'expected [key, value]');
            elements.push(jsonValue(e[0], keyHint, `${ep}[0]`));
            targets.push(v['map'] === 'verdict' ? verdictTarget(e[1], `${ep}[1]`) : jsonValue(e[1], { kind: 'unknown', text: '' }, `${ep}[1]`));
          } else {
            elements.push(jsonValue(e, keyHint, ep));
          }
        });
        const s: NamedSet = {
          name,
          kind: k,
          type,
          elements,
          ...(k === 'map' ? { mapTo: str(v['map']), targets } : {}),
          ...(Array.isArray(v['flags']) ? { flags: (v['flags'] as J[]).map(str) } : {}),
        };
        t.sets.set(name, s);
        return;
      }
      case 'rule':
        pendingRules.push({ item: v, path: p });
        return;
      default:
        return; // flowtables, counters, quotas, ct helpers...: not part of the path
    }
  });
  for (const { item: v, path: p } of pendingRules) {
    const t = getTable(v['family'], v['table'], p);
    const cname = v['chain'];
    if (typeof cname !== 'string') throw new PathError(`${p}.chain`, 'expected a string');
    const chain = t.chains.get(cname);
    if (chain === undefined) throw new PathError(`${p}.chain`, `chain ${cname} not declared in table ${t.family} ${t.name}`);
    const exprs = v['expr'];
    if (!Array.isArray(exprs)) throw new PathError(`${p}.expr`, 'expected an array');
    const parsed = exprs.map((e, j) => stmtOf(e, `${p}.expr[${j}]`));
    const handle = typeof v['handle'] === 'number' ? v['handle'] : null;
    const comment = typeof v['comment'] === 'string' ? v['comment'] : null;
    const text = handle !== null ? opts.ruleText?.get(ruleTextKey(t.family, t.name, cname, handle)) : undefined;
    const rule: Rule = {
      raw: text ?? renderRuleExprs(exprs, comment ?? undefined),
      position: chain.rules.length + 1,
      line: null,
      handle,
      counters: countersOf(exprs),
      comment,
      exprs: parsed,
    };
    chain.rules.push(rule);
  }
  // validate jump targets and named sets
  const out: Table[] = [];
  for (const t of tables.values()) {
    const hasXt = [...t.chains.values()].some((c) =>
      c.rules.some((r) =>
        r.exprs.some(
          (e) =>
            (e.kind === 'unknown' && e.text.startsWith('xt ')) || (e.kind === 'match' && e.key.kind === 'unknown' && e.key.text.startsWith('xt ')),
        ),
      ),
    );
    if (opts.skipTables?.has(`${t.family} ${t.name}`) || (opts.skipXtTables && hasXt)) {
      notes.push(`skipped nft table ${t.family} ${t.name}: made by iptables-nft (read through iptables-save)`);
      continue;
    }
    for (const c of t.chains.values()) {
      for (const r of c.rules) {
        for (const e of r.exprs) {
          if ((e.kind === 'jump' || e.kind === 'goto') && !t.chains.has(e.target)) {
            throw new PathError(`table ${t.family} ${t.name} chain ${c.name} handle ${str(r.handle)}`, `${e.kind} to unknown chain ${e.target}`);
          }
          if (e.kind === 'vmap' && typeof e.map === 'string' && !t.sets.has(e.map)) {
            throw new PathError(`table ${t.family} ${t.name} chain ${c.name} handle ${str(r.handle)}`, `vmap @${e.map} is not declared`);
          }
        }
      }
    }
    out.push(t);
  }
  return { tables: out, notes };
}

function countersOf(exprs: readonly J[]): { packets: number; bytes: number } | null {
  for (const e of exprs) {
    if (isObj(e) && isObj(e['counter'])) {
      const c = e['counter'];
      if (typeof c['packets'] === 'number' && typeof c['bytes'] === 'number') return { packets: c['packets'], bytes: c['bytes'] };
    }
  }
  return null;
}

/**
 * Parses `nft -a list ruleset` text into rule texts keyed by family/table/chain/handle
 * (the counters are stripped so that texts stay stable).
 */
export function parseNftListHandles(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let family = '';
  let table = '';
  let chain = '';
  let depth = 0;
  let inChain = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    let m = /^table (\S+) (\S+) \{/.exec(line);
    if (m && depth === 0) {
      family = m[1] as string;
      table = m[2] as string;
      depth = 1;
      continue;
    }
    m = /^chain (\S+) \{/.exec(line);
    if (m && depth === 1) {
      chain = m[1] as string;
      inChain = true;
      depth = 2;
      continue;
    }
    if (/^(set|map|flowtable|counter|quota|ct|limit|secmark|synproxy) .*\{( # handle \d+)?$/.test(line) && depth === 1) {
      depth = 2;
      inChain = false;
      continue;
    }
    if (line === '}') {
      depth = Math.max(0, depth - 1);
      if (depth < 2) inChain = false;
      continue;
    }
    if (!inChain) {
      if (/\{( # handle \d+)?$/.test(line)) depth++;
      continue;
    }
    const h = /^(.*?)\s+# handle (\d+)$/.exec(line);
    if (h && !/^type \S+ hook/.test(line)) {
      const ruleText = (h[1] as string).replace(/ counter packets \d+ bytes \d+/, ' counter').replace(/^counter packets \d+ bytes \d+/, 'counter');
      out.set(ruleTextKey(family, table, chain, Number(h[2])), ruleText);
    }
  }
  return out;
}
