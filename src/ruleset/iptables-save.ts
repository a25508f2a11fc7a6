/**
 * iptables-save / ip6tables-save text → Ruleset. Every rule keeps its line (`-A CHAIN ...`) and line
 * number; matches and targets are translated into the model's expressions. Options of match modules
 * that are not modelled become `unknown` keys (the simulator then says "indeterminate").
 */
import type { Hook, NfFamily } from '../model/explanation.js';
import { JourneyError } from '../model/errors.js';
import { PROTO_BY_NAME } from '../model/tuple.js';
import type { BaseChainInfo, Chain, Expr, Key, MatchExpr, NatFlag, Rule, Ruleset, Stmt, Table, Value } from './model.js';
import { parseCidr, parseIp } from './ip.js';

/** Built-in chains of the iptables tables: hook, chain type and the fixed priority iptables registers. */
const BUILTIN: Record<string, Record<string, { hook: Hook; type: BaseChainInfo['type']; priority: number }>> = {
  raw: {
    PREROUTING: { hook: 'prerouting', type: 'filter', priority: -300 },
    OUTPUT: { hook: 'output', type: 'filter', priority: -300 },
  },
  mangle: {
    PREROUTING: { hook: 'prerouting', type: 'filter', priority: -150 },
    INPUT: { hook: 'input', type: 'filter', priority: -150 },
    FORWARD: { hook: 'forward', type: 'filter', priority: -150 },
    OUTPUT: { hook: 'output', type: 'route', priority: -150 },
    POSTROUTING: { hook: 'postrouting', type: 'filter', priority: -150 },
  },
  nat: {
    PREROUTING: { hook: 'prerouting', type: 'nat', priority: -100 },
    INPUT: { hook: 'input', type: 'nat', priority: 100 },
    OUTPUT: { hook: 'output', type: 'nat', priority: -100 },
    POSTROUTING: { hook: 'postrouting', type: 'nat', priority: 100 },
  },
  filter: {
    INPUT: { hook: 'input', type: 'filter', priority: 0 },
    FORWARD: { hook: 'forward', type: 'filter', priority: 0 },
    OUTPUT: { hook: 'output', type: 'filter', priority: 0 },
  },
  security: {
    INPUT: { hook: 'input', type: 'filter', priority: 50 },
    FORWARD: { hook: 'forward', type: 'filter', priority: 50 },
    OUTPUT: { hook: 'output', type: 'filter', priority: 50 },
  },
};

export function iptablesBuiltin(table: string, chain: string): { hook: Hook; type: BaseChainInfo['type']; priority: number } | undefined {
  return BUILTIN[table]?.[chain];
}

/** Splits a rule line like a shell would (double quotes, backslash escapes). Returns null on an open quote. */
export function tokenize(line: string): string[] | null {
  const out: string[] = [];
  let cur = '';
  let inTok = false;
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (q) {
      if (c === '\\' && i + 1 < line.length) {
        cur += line[++i];
      } else if (c === '"') q = false;
      else cur += c;
    } else if (c === '"') {
      q = true;
      inTok = true;
    } else if (c === ' ' || c === '\t') {
      if (inTok) out.push(cur);
      cur = '';
      inTok = false;
    } else {
      cur += c;
      inTok = true;
    }
  }
  if (q) return null;
  if (inTok) out.push(cur);
  return out;
}

export function protoNumber(p: string): number | null {
  if (/^\d+$/.test(p)) return Number(p);
  return PROTO_BY_NAME[p.toLowerCase()] ?? null;
}

class LineError extends Error {}

function ifaceValue(name: string): Value {
  // iptables: a trailing '+' is a wildcard; the model uses nft's '*'.
  return { kind: 'str', v: name.endsWith('+') ? `${name.slice(0, -1)}*` : name };
}

function portValue(spec: string): Value {
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

function addrValue(spec: string): Value {
  const items = spec.split(',');
  const vals: Value[] = items.map((s) => {
    const c = parseCidr(s);
    if (c === null) throw new LineError(`bad address "${s}"`);
    return s.includes('/') ? { kind: 'prefix', addr: s.slice(0, s.indexOf('/')), len: c.len } : { kind: 'addr', v: s };
  });
  return vals.length === 1 ? (vals[0] as Value) : { kind: 'set', items: vals };
}

function numValue(s: string): number {
  const n = s.startsWith('0x') ? parseInt(s, 16) : Number(s);
  if (!Number.isFinite(n)) throw new LineError(`bad number "${s}"`);
  return n >>> 0;
}

function markParts(spec: string): { value: number; mask: number } {
  const [v, m] = spec.split('/');
  return { value: numValue(v ?? ''), mask: m === undefined ? 0xffffffff : numValue(m) };
}

/** "ip[-ip][:port[-port]]" of DNAT/SNAT --to-*. */
function natTo(spec: string, v6: boolean): { addr?: string; addrHi?: string; port?: number; portHi?: number } {
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

interface ParsedRule {
  chain: string;
  exprs: Expr[];
  comment: string | null;
  counters: { packets: number; bytes: number } | null;
}

const TERMINAL_UNKNOWN_TARGETS = new Set(['QUEUE', 'NFQUEUE', 'TPROXY', 'SYNPROXY']);

/** Parses the tokens of one `-A` line (after `-A`). */
function parseRuleTokens(toks: string[], family: 'ip' | 'ip6'): ParsedRule {
  const chain = toks[0];
  if (chain === undefined) throw new LineError('missing chain name');
  const exprs: Expr[] = [];
  const stmts: Stmt[] = [];
  let comment: string | null = null;
  let counters: { packets: number; bytes: number } | null = null;
  let module: string | null = null;
  let proto: string | null = null;
  let neg = false;
  let i = 1;
  const next = (opt: string): string => {
    const v = toks[++i];
    if (v === undefined) throw new LineError(`option ${opt} needs a value`);
    return v;
  };
  const match = (key: Key, value: Value, text: string, op?: MatchExpr['op'], mask?: number): void => {
    const m: MatchExpr = {
      kind: 'match',
      key,
      op: op ?? (neg ? '!=' : '=='),
      value,
      text: (neg ? '! ' : '') + text,
      ...(mask !== undefined ? { mask } : {}),
    };
    exprs.push(m);
    neg = false;
  };
  const unknownMatch = (text: string): void => {
    exprs.push({ kind: 'match', key: { kind: 'unknown', text }, op: neg ? '!=' : '==', value: { kind: 'sym', v: '?' }, text });
    neg = false;
  };
  const l4 = (): string => (proto === 'tcp' || proto === 'udp' || proto === 'sctp' ? proto : 'th');
  let target: string | null = null;
  const targetOpts: Record<string, string> = {};
  let gotoTarget = false;
  for (; i < toks.length; i++) {
    const t = toks[i] as string;
    if (t === '!') {
      neg = true;
      continue;
    }
    if (target !== null) {
      // options of the target
      if (t.startsWith('--')) {
        const v = toks[i + 1];
        if (v !== undefined && !v.startsWith('--')) {
          targetOpts[t] = v;
          i++;
        } else targetOpts[t] = '';
        continue;
      }
      throw new LineError(`unexpected "${t}" after target ${target}`);
    }
    switch (t) {
      case '-s':
      case '--source':
        match({ kind: 'payload', proto: family, field: 'saddr' }, addrValue(next(t)), `-s ${toks[i]}`);
        continue;
      case '-d':
      case '--destination':
        match({ kind: 'payload', proto: family, field: 'daddr' }, addrValue(next(t)), `-d ${toks[i]}`);
        continue;
      case '-i':
      case '--in-interface':
        match({ kind: 'meta', key: 'iifname' }, ifaceValue(next(t)), `-i ${toks[i]}`);
        continue;
      case '-o':
      case '--out-interface':
        match({ kind: 'meta', key: 'oifname' }, ifaceValue(next(t)), `-o ${toks[i]}`);
        continue;
      case '-p':
      case '--protocol': {
        const p = next(t).toLowerCase();
        const n = protoNumber(p);
        if (n === null) throw new LineError(`unknown protocol "${p}"`);
        if (!neg) proto = p === 'icmp6' || p === 'ipv6-icmp' ? 'icmpv6' : p;
        if (p === 'all' || n === 0) {
          neg = false;
          continue;
        }
        match({ kind: 'meta', key: 'l4proto' }, { kind: 'num', v: n }, `-p ${p}`);
        continue;
      }
      case '-f':
      case '--fragment':
        unknownMatch('-f (fragments)');
        continue;
      case '-m':
      case '--match':
        module = next(t);
        if (neg) throw new LineError('"!" before -m');
        continue;
      case '-j':
      case '--jump':
        target = next(t);
        continue;
      case '-g':
      case '--goto':
        target = next(t);
        gotoTarget = true;
        continue;
      case '-c':
      case '--set-counters': {
        const p = next(t);
        const b = toks[++i];
        counters = { packets: Number(p), bytes: Number(b) };
        continue;
      }
      default:
        break;
    }
    if (!t.startsWith('-')) throw new LineError(`unexpected "${t}"`);
    // module options
    const opt = t;
    // `-p tcp --dport 80` without `-m tcp`: iptables loads the protocol's module implicitly
    const mod =
      module ??
      (proto === 'tcp' || proto === 'udp' || proto === 'sctp' || proto === 'icmp' || proto === 'icmpv6'
        ? proto === 'icmpv6'
          ? 'icmp6'
          : proto
        : null);
    switch (mod) {
      case 'tcp':
      case 'udp':
      case 'sctp':
      case 'udplite':
        if (opt === '--dport' || opt === '--destination-port') {
          match({ kind: 'payload', proto: mod === 'udplite' ? 'th' : mod, field: 'dport' }, portValue(next(opt)), `--dport ${toks[i]}`);
        } else if (opt === '--sport' || opt === '--source-port') {
          match({ kind: 'payload', proto: mod === 'udplite' ? 'th' : mod, field: 'sport' }, portValue(next(opt)), `--sport ${toks[i]}`);
        } else if (opt === '--tcp-flags') {
          const a = next(opt);
          const b = next(opt);
          unknownMatch(`--tcp-flags ${a} ${b}`);
        } else if (opt === '--syn') {
          unknownMatch('--syn');
        } else if (opt === '--tcp-option') {
          unknownMatch(`--tcp-option ${next(opt)}`);
        } else throw new LineError(`unknown ${mod} option ${opt}`);
        continue;
      case 'multiport': {
        const v = next(opt);
        const items = v.split(',').map(portValue);
        const value: Value = { kind: 'set', items };
        if (opt === '--dports' || opt === '--destination-ports')
          match({ kind: 'payload', proto: l4(), field: 'dport' }, value, `multiport --dports ${v}`);
        else if (opt === '--sports' || opt === '--source-ports')
          match({ kind: 'payload', proto: l4(), field: 'sport' }, value, `multiport --sports ${v}`);
        else if (opt === '--ports') match({ kind: 'payload', proto: l4(), field: 'port' }, value, `multiport --ports ${v}`);
        else throw new LineError(`unknown multiport option ${opt}`);
        continue;
      }
      case 'addrtype': {
        if (opt === '--src-type' || opt === '--dst-type') {
          const v = next(opt);
          const types = v.split(',').map((s) => s.toLowerCase());
          match(
            { kind: 'fib', result: 'type', flags: [opt === '--src-type' ? 'saddr' : 'daddr'] },
            types.length === 1 ? { kind: 'sym', v: types[0] as string } : { kind: 'set', items: types.map((s) => ({ kind: 'sym', v: s })) },
            `-m addrtype ${opt} ${v}`,
          );
        } else if (opt === '--limit-iface-in' || opt === '--limit-iface-out') {
          unknownMatch(`-m addrtype ${opt}`);
        } else throw new LineError(`unknown addrtype option ${opt}`);
        continue;
      }
      case 'conntrack':
      case 'state': {
        if (opt === '--ctstate' || opt === '--state') {
          const v = next(opt);
          match({ kind: 'ct', key: 'state' }, { kind: 'flags', v: v.split(',').map((s) => s.toLowerCase()) }, `${opt} ${v}`);
        } else if (opt === '--ctstatus') {
          const v = next(opt);
          match({ kind: 'ct', key: 'status' }, { kind: 'flags', v: v.split(',').map((s) => s.toLowerCase()) }, `--ctstatus ${v}`);
        } else if (opt === '--ctorigdst' || opt === '--ctorigsrc' || opt === '--ctrepldst' || opt === '--ctreplsrc') {
          const v = next(opt);
          const dir = opt.startsWith('--ctorig') ? 'original' : 'reply';
          const field = opt.endsWith('dst') ? 'daddr' : 'saddr';
          match({ kind: 'ct', key: field, dir }, addrValue(v), `${opt} ${v}`);
        } else if (opt === '--ctdir') {
          const v = next(opt);
          match({ kind: 'ct', key: 'direction' }, { kind: 'sym', v: v.toLowerCase() }, `--ctdir ${v}`);
        } else {
          const v = toks[i + 1] !== undefined && !(toks[i + 1] as string).startsWith('-') ? next(opt) : '';
          unknownMatch(`-m conntrack ${opt} ${v}`.trim());
        }
        continue;
      }
      case 'comment':
        if (opt === '--comment') {
          comment = next(opt);
          continue;
        }
        throw new LineError(`unknown comment option ${opt}`);
      case 'mark':
      case 'connmark': {
        if (opt !== '--mark') throw new LineError(`unknown ${mod} option ${opt}`);
        const v = next(opt);
        const { value, mask } = markParts(v);
        match({ kind: mod === 'mark' ? 'meta' : 'ct', key: 'mark' }, { kind: 'num', v: value & mask }, `-m ${mod} --mark ${v}`, undefined, mask);
        continue;
      }
      case 'icmp':
      case 'icmp6':
      case 'icmpv6': {
        const v = next(opt);
        const m = /^(\d+)(?:\/(\d+))?$/.exec(v);
        const p = mod === 'icmp' ? 'icmp' : 'icmpv6';
        if (m) {
          match({ kind: 'payload', proto: p, field: 'type' }, { kind: 'num', v: Number(m[1]) }, `${opt} ${v}`);
          if (m[2] !== undefined)
            exprs.push({
              kind: 'match',
              key: { kind: 'payload', proto: p, field: 'code' },
              op: '==',
              value: { kind: 'num', v: Number(m[2]) },
              text: `${opt} ${v}`,
            });
        } else if (v === 'any') {
          neg = false;
        } else match({ kind: 'payload', proto: p, field: 'type' }, { kind: 'sym', v }, `${opt} ${v}`);
        continue;
      }
      case 'set': {
        if (opt === '--match-set') {
          const name = next(opt);
          const flags = next(opt);
          match(
            { kind: 'ipset', name, fields: flags.split(',').map((f) => (f === 'src' ? 'src' : 'dst')) },
            { kind: 'sym', v: 'member' },
            `-m set --match-set ${name} ${flags}`,
          );
        } else {
          const v = toks[i + 1] !== undefined && !(toks[i + 1] as string).startsWith('-') ? next(opt) : '';
          unknownMatch(`-m set ${opt} ${v}`.trim());
        }
        continue;
      }
      case 'iprange': {
        const v = next(opt);
        const [a, b] = v.split('-');
        if (a === undefined || b === undefined || parseIp(a) === null || parseIp(b) === null) throw new LineError(`bad range "${v}"`);
        const field = opt === '--src-range' ? 'saddr' : 'daddr';
        match({ kind: 'payload', proto: family, field }, { kind: 'range', lo: { kind: 'addr', v: a }, hi: { kind: 'addr', v: b } }, `${opt} ${v}`);
        continue;
      }
      case 'pkttype':
        if (opt === '--pkt-type') {
          const v = next(opt);
          match({ kind: 'meta', key: 'pkttype' }, { kind: 'sym', v }, `--pkt-type ${v}`);
          continue;
        }
        throw new LineError(`unknown pkttype option ${opt}`);
      default: {
        // a mod we do not model: keep its options as one unknown match
        const parts = [opt];
        while (
          toks[i + 1] !== undefined &&
          !['-m', '--match', '-j', '--jump', '-g', '--goto', '!'].includes(toks[i + 1] as string) &&
          !(toks[i + 1] as string).startsWith('--')
        ) {
          parts.push(toks[++i] as string);
        }
        unknownMatch(`-m ${mod ?? '?'} ${parts.join(' ')}`);
        continue;
      }
    }
  }
  if (neg) throw new LineError('dangling "!"');
  if (target !== null) stmts.push(...targetStmts(target, targetOpts, gotoTarget, family));
  return { chain, exprs: [...exprs, ...stmts], comment, counters };
}

/** --random, --random-fully, --persistent of the NAT targets. */
function natFlags(o: Record<string, string>): { flags?: NatFlag[] } {
  const flags: NatFlag[] = [];
  if (o['--random'] !== undefined) flags.push('random');
  if (o['--random-fully'] !== undefined) flags.push('fully-random');
  if (o['--persistent'] !== undefined) flags.push('persistent');
  return flags.length > 0 ? { flags } : {};
}

function targetStmts(target: string, o: Record<string, string>, isGoto: boolean, family: 'ip' | 'ip6'): Stmt[] {
  const optText = Object.entries(o)
    .map(([k, v]) => (v === '' ? k : `${k} ${v}`))
    .join(' ');
  const text = `-j ${target}${optText ? ` ${optText}` : ''}`;
  switch (target) {
    case 'ACCEPT':
      return [{ kind: 'verdict', verdict: 'accept' }];
    case 'DROP':
      return [{ kind: 'verdict', verdict: 'drop' }];
    case 'RETURN':
      return [{ kind: 'verdict', verdict: 'return' }];
    case 'REJECT':
      return [{ kind: 'reject', ...(o['--reject-with'] !== undefined ? { with: o['--reject-with'] } : {}) }];
    case 'DNAT':
    case 'SNAT': {
      const spec = o['--to-destination'] ?? o['--to-source'] ?? o['--to'];
      if (spec === undefined) throw new LineError(`${target} without --to-*`);
      return [{ kind: 'nat', type: target === 'DNAT' ? 'dnat' : 'snat', ...natTo(spec, family === 'ip6'), ...natFlags(o), text }];
    }
    case 'MASQUERADE':
    case 'REDIRECT': {
      const ports = o['--to-ports'];
      const p: { port?: number; portHi?: number } = {};
      if (ports !== undefined) {
        const [a, b] = ports.split('-');
        p.port = Number(a);
        if (b !== undefined) p.portHi = Number(b);
      }
      return [{ kind: 'nat', type: target === 'MASQUERADE' ? 'masquerade' : 'redirect', ...p, ...natFlags(o), text }];
    }
    case 'MARK': {
      if (o['--set-xmark'] !== undefined || o['--set-mark'] !== undefined) {
        const { value, mask } = markParts(o['--set-xmark'] ?? o['--set-mark'] ?? '0');
        return [{ kind: 'mark', target: 'meta', value, mask, text }];
      }
      return [{ kind: 'unknown', text, terminal: false }];
    }
    case 'LOG':
    case 'NFLOG':
    case 'ULOG':
      return [{ kind: 'log' }];
    case 'TRACE':
      return [{ kind: 'nftrace' }];
    case 'NOTRACK':
      return [{ kind: 'notrack' }];
    case 'CT':
      return o['--notrack'] !== undefined ? [{ kind: 'notrack' }] : [{ kind: 'unknown', text, terminal: false }];
    case 'CONNMARK':
    case 'TCPMSS':
    case 'CHECKSUM':
    case 'TTL':
    case 'HL':
    case 'DSCP':
    case 'TOS':
    case 'CLASSIFY':
    case 'AUDIT':
      return [{ kind: 'unknown', text, terminal: false }];
    default:
      if (TERMINAL_UNKNOWN_TARGETS.has(target) || (/^[A-Z0-9]+$/.test(target) && Object.keys(o).length > 0)) {
        return [{ kind: 'unknown', text, terminal: true }];
      }
      return [{ kind: isGoto ? 'goto' : 'jump', target }];
  }
}

export interface IptablesSaveOptions {
  /** 'ip' for iptables-save, 'ip6' for ip6tables-save; guessed from the text when absent. */
  readonly family?: 'ip' | 'ip6';
  /** Name used in error messages and in Table.source. */
  readonly source?: string;
}

/** Guesses ip/ip6 from addresses and ICMPv6 in the text. */
export function guessIptablesFamily(text: string, source = ''): 'ip' | 'ip6' {
  if (/ip6tables/.test(source)) return 'ip6';
  if (/(^|\s)-[sd] [0-9a-fA-F]*:[0-9a-fA-F:]*[/\s]/m.test(text) || /ipv6-icmp|icmp6|icmpv6/.test(text)) return 'ip6';
  return 'ip';
}

/**
 * Parses iptables-save output. Throws JourneyError E_PARSE naming the source and line on malformed input.
 */
export function parseIptablesSave(text: string, opts: IptablesSaveOptions = {}): Ruleset {
  const source = opts.source ?? '<iptables-save>';
  const family: NfFamily = opts.family ?? guessIptablesFamily(text, source);
  const lines = text.split('\n');
  const tables: Table[] = [];
  interface Cur {
    table: Table;
    startLine: number;
  }
  let cur: Cur | null = null as Cur | null;
  const fail = (ln: number, msg: string): never => {
    throw new JourneyError('E_PARSE', `${source}:${ln}: ${msg}`, { file: source, line: ln });
  };
  for (let idx = 0; idx < lines.length; idx++) {
    const ln = idx + 1;
    const line = (lines[idx] as string).replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      if (cur !== null) fail(ln, `table *${line.slice(1)} starts before COMMIT of *${cur.table.name}`);
      const name = line.slice(1).trim();
      if (!/^[a-z]+$/.test(name)) fail(ln, `bad table name "${name}"`);
      cur = { table: { family, name, origin: 'iptables', chains: new Map(), sets: new Map(), handle: null, source }, startLine: ln };
      continue;
    }
    if (cur === null) fail(ln, `"${line.slice(0, 40)}" outside a table (missing *table line)`);
    const c = cur as Cur;
    if (line === 'COMMIT') {
      tables.push(c.table);
      cur = null;
      continue;
    }
    if (line.startsWith(':')) {
      const m = /^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?\s*$/.exec(line);
      if (!m) fail(ln, `bad chain declaration "${line}"`);
      const [, name, policy] = m as RegExpExecArray;
      const b = iptablesBuiltin(c.table.name, name as string);
      let base: BaseChainInfo | null = null;
      if (policy !== '-') {
        if (policy !== 'ACCEPT' && policy !== 'DROP') fail(ln, `bad policy "${policy}" for chain ${name}`);
        if (b === undefined) fail(ln, `chain ${name} has a policy but is not a built-in chain of table ${c.table.name}`);
        base = { ...(b as NonNullable<typeof b>), policy: policy === 'ACCEPT' ? 'accept' : 'drop' };
      }
      c.table.chains.set(name as string, { name: name as string, base, rules: [], handle: null, line: ln });
      continue;
    }
    if (line.startsWith('-A ') || line.startsWith('[')) {
      let l = line;
      let counters: { packets: number; bytes: number } | null = null;
      const cm = /^\[(\d+):(\d+)\]\s+(.*)$/.exec(l);
      if (cm) {
        counters = { packets: Number(cm[1]), bytes: Number(cm[2]) };
        l = cm[3] as string;
      }
      if (!l.startsWith('-A ')) fail(ln, `expected -A after counters: "${line}"`);
      const toks = tokenize(l.slice(3));
      if (toks === null) fail(ln, 'unterminated quote');
      let parsed: ParsedRule;
      try {
        parsed = parseRuleTokens(toks as string[], family === 'ip6' ? 'ip6' : 'ip');
      } catch (e) {
        if (e instanceof LineError) fail(ln, e.message);
        throw e;
      }
      const p = parsed!;
      const chain = c.table.chains.get(p.chain);
      if (chain === undefined) fail(ln, `rule for undeclared chain ${p.chain}`);
      const ch = chain as Chain;
      const rule: Rule = {
        raw: l,
        position: ch.rules.length + 1,
        line: ln,
        handle: null,
        counters: counters ?? p.counters,
        comment: p.comment,
        exprs: p.exprs,
      };
      ch.rules.push(rule);
      continue;
    }
    fail(ln, `unexpected line "${line.slice(0, 60)}"`);
  }
  if (cur !== null) fail(lines.length, `table *${cur.table.name} (line ${cur.startLine}) has no COMMIT`);
  // jump targets must exist
  for (const t of tables) {
    for (const ch of t.chains.values()) {
      ch.rules.forEach((r, k) => {
        let changed = false;
        const exprs = r.exprs.map((e): Expr => {
          if ((e.kind === 'jump' || e.kind === 'goto') && !t.chains.has(e.target)) {
            // an extension target we do not know (all capitals), or a chain that was never declared
            if (/^[A-Z0-9_]+$/.test(e.target)) {
              changed = true;
              return { kind: 'unknown', text: `-j ${e.target}`, terminal: true };
            }
            fail(r.line ?? 0, `${e.kind} to unknown chain ${e.target} in table ${t.name}`);
          }
          return e;
        });
        if (changed) ch.rules[k] = { ...r, exprs };
      });
    }
  }
  return { tables, notes: [] };
}
