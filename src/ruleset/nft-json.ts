/**
 * `nft -j list ruleset` JSON → Ruleset. Rules keep their handle; their text comes from a handle→text
 * map (from `nft -a list ruleset`) when the caller has one, else it is rendered from the JSON.
 * Malformed input throws JourneyError E_PARSE naming the source and the JSON path.
 */
import type { Hook, NfFamily } from '../model/explanation.js';
import { JourneyError } from '../model/errors.js';
import { type J, isObj, jsonText as str } from './json-text.js';
import type { BaseChainInfo, Key, NamedSet, Rule, Ruleset, Table, Value, VerdictTarget } from './model.js';
import { renderRuleExprs } from './nft-json-render.js';
import { PathError, jsonValue, only, stmtOf, verdictTarget } from './nft-json-stmt.js';

const FAMILIES: readonly NfFamily[] = ['ip', 'ip6', 'inet', 'bridge', 'arp', 'netdev'];
const HOOKS: readonly Hook[] = ['ingress', 'prerouting', 'input', 'forward', 'output', 'postrouting'];

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
