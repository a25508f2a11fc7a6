/**
 * iptables-save / ip6tables-save text → Ruleset. Every rule keeps its line (`-A CHAIN ...`) and line
 * number; matches and targets are translated into the model's expressions. Options of match modules
 * that are not modelled become `unknown` keys (the simulator then says "indeterminate").
 */
import type { Hook, NfFamily } from '../model/explanation.js';
import { JourneyError } from '../model/errors.js';
import type { BaseChainInfo, Chain, Expr, Rule, Ruleset, Table } from './model.js';
import { type ParsedRule, parseRuleTokens } from './iptables-rule.js';
import { LineError } from './iptables-values.js';

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
