/**
 * Ruleset and host-context loaders: from files (iptables-save text, `nft -j` JSON, nft text loaded
 * through a scratch network namespace, `ip -j addr` / `ip -j route show table all`) and from the live
 * host or a given netns (iptables-save + ip6tables-save for the tables iptables made, `nft -j list
 * ruleset` for native nftables tables, skipping the iptables-nft ones that show as `xt`).
 */
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JourneyError } from '../model/errors.js';
import { jsonText as str } from './json-text.js';
import { run } from '../host/exec.js';
import { type Ruleset, mergeRulesets, tableKey, withoutTraceTables } from './model.js';
import { parseIptablesSave } from './iptables-save.js';
import { parseNftJson, parseNftListHandles } from './nft-json.js';
import { parseIpsetSave } from './ipset.js';
import { type HostContext, makeHostContext, parseIpAddr, parseIpRoute } from './host-context.js';

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new JourneyError('E_USAGE', `cannot read ${path}: ${err.code ?? err.message}`, { file: path });
  }
}

export async function loadIptablesSaveFile(path: string, family?: 'ip' | 'ip6'): Promise<Ruleset> {
  return parseIptablesSave(await readText(path), { source: path, ...(family ? { family } : {}) });
}

export async function loadNftJsonFile(path: string): Promise<Ruleset> {
  return parseNftJson(await readText(path), { source: path });
}

const NAMED_PRIO: Record<string, number> = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 };
const NAMED_PRIO_BRIDGE: Record<string, number> = { dstnat: -300, filter: -200, out: 100, srcnat: 300 };

/** Replaces named chain priorities (`priority dstnat + 10`) by numbers, per table family. */
export function numericPriorities(text: string): string {
  let family = 'ip';
  return text
    .split('\n')
    .map((line) => {
      const t = /^\s*table\s+(\S+)\s+\S+/.exec(line);
      if (t) family = t[1] === 'bridge' ? 'bridge' : (t[1] as string);
      return line.replace(/priority\s+([a-z]+)(?:\s*([+-])\s*(\d+))?/g, (all, name: string, sign?: string, off?: string) => {
        const table = family === 'bridge' ? NAMED_PRIO_BRIDGE : NAMED_PRIO;
        const base = table[name];
        if (base === undefined) return all;
        const n = base + (sign === undefined ? 0 : (sign === '-' ? -1 : 1) * Number(off));
        return `priority ${n}`;
      });
    })
    .join('\n');
}

/**
 * Loads an nft text file: nftables parses its own language inside a scratch namespace
 * (`jl-b-scratch-<pid>`, deleted afterwards), then the ruleset is read back as JSON with rule texts.
 * Needs root.
 */
export async function loadNftTextFile(path: string): Promise<Ruleset> {
  const text = await readText(path);
  if (process.getuid?.() !== 0)
    throw new JourneyError('E_NOT_ROOT', `loading nft text (${path}) needs root: it is parsed by nft in a scratch namespace`);
  const ns = `jl-b-scratch-${process.pid}`;
  const dir = await mkdtemp(join(tmpdir(), 'jl-b-nft-'));
  const tmp = join(dir, 'ruleset.nft');
  await writeFile(tmp, numericPriorities(text));
  await run(['ip', 'netns', 'add', ns]);
  try {
    const res = await run(['nft', '-f', tmp], { netns: ns, allowFailure: true });
    if (res.code !== 0) {
      const msg = res.stderr.split(tmp).join(path).trim().split('\n').slice(0, 6).join('\n');
      const lm = /:(\d+):\d+/.exec(msg);
      throw new JourneyError('E_PARSE', `${path}: nft rejected it:\n${msg}`, { file: path, ...(lm ? { line: Number(lm[1]) } : {}) });
    }
    const [json, listing] = await Promise.all([
      run(['nft', '-j', 'list', 'ruleset'], { netns: ns }),
      run(['nft', '-a', 'list', 'ruleset'], { netns: ns }),
    ]);
    const rs = parseNftJson(json.stdout, { source: path, ruleText: parseNftListHandles(listing.stdout) });
    return rs;
  } finally {
    await run(['ip', 'netns', 'del', ns], { allowFailure: true });
    await rm(dir, { recursive: true, force: true });
  }
}

export interface LiveOptions {
  /** Network namespace name/path/pid; the current one when absent. */
  readonly netns?: string | number;
  /** Read each rule's packet/byte counters too (`iptables-save -c`; nft's JSON carries them anyway). */
  readonly counters?: boolean;
}

/** What the live loader reads; also the shape of recorded dumps (test fixtures). */
export interface RulesetDumps {
  /** iptables-save output, or null when the tool failed / is missing. */
  readonly iptablesSave: string | null;
  readonly ip6tablesSave: string | null;
  /** `nft -j list ruleset` output. */
  readonly nftJson: string | null;
  /** `nft -a list ruleset` output (rule texts by handle). */
  readonly nftList: string | null;
  /** `ipset save` output, when ipset is installed. */
  readonly ipsetSave?: string | null;
}

/**
 * One ruleset from the dumps: iptables tables from iptables-save (their nft twins, opaque `xt`
 * expressions, are skipped), native nftables tables from `nft -j`.
 */
export function rulesetFromDumps(d: RulesetDumps, where: string): Ruleset {
  const parts: Ruleset[] = [];
  const iptTables = new Set<string>();
  const notes: string[] = [];
  for (const [text, tool, family] of [
    [d.iptablesSave, 'iptables-save', 'ip'],
    [d.ip6tablesSave, 'ip6tables-save', 'ip6'],
  ] as const) {
    if (text === null) {
      notes.push(`${tool} could not be read: its tables are not explained`);
      continue;
    }
    const rs = parseIptablesSave(text, { family, source: `${where}:${tool}` });
    for (const t of rs.tables) iptTables.add(tableKey(t));
    parts.push(rs);
  }
  if (d.nftJson === null) notes.push('nft -j list ruleset could not be read: native nftables tables are not explained');
  else {
    parts.push(
      parseNftJson(d.nftJson.trim() === '' ? '{"nftables":[]}' : d.nftJson, {
        source: `${where}:nft`,
        ruleText: d.nftList !== null ? parseNftListHandles(d.nftList) : new Map(),
        skipTables: iptTables,
        skipXtTables: true,
      }),
    );
  }
  if (d.ipsetSave) parts.push({ tables: [], notes: [], ipsets: parseIpsetSave(d.ipsetSave, `${where}:ipset save`) });
  const rs = withoutTraceTables(mergeRulesets(...parts));
  rs.notes.push(...notes);
  if (d.nftJson !== null) markKernelChains(rs, d.nftJson);
  return rs;
}

/** Records, for iptables tables that iptables-nft keeps in nftables, which chains really exist. */
function markKernelChains(rs: Ruleset, nftJson: string): void {
  let doc: unknown;
  try {
    doc = JSON.parse(nftJson);
  } catch {
    return;
  }
  const items = (doc as { nftables?: unknown[] }).nftables;
  if (!Array.isArray(items)) return;
  const chains = new Map<string, Set<string>>();
  const tables = new Set<string>();
  for (const it of items) {
    const o = it as { table?: { family?: string; name?: string }; chain?: { family?: string; table?: string; name?: string } };
    if (o.table) tables.add(`${str(o.table.family)} ${str(o.table.name)}`);
    if (o.chain) {
      const k = `${str(o.chain.family)} ${str(o.chain.table)}`;
      const s = chains.get(k) ?? new Set<string>();
      chains.set(k, s);
      s.add(str(o.chain.name));
    }
  }
  for (const t of rs.tables) {
    const k = tableKey(t);
    if (t.origin === 'iptables' && tables.has(k)) t.kernelChains = chains.get(k) ?? new Set();
  }
}

/** Runs the tools the live loader needs (in a netns when given). */
export async function readRulesetDumps(opts: LiveOptions = {}): Promise<RulesetDumps> {
  const ro = opts.netns === undefined ? { allowFailure: true } : { netns: opts.netns, allowFailure: true };
  const tool = async (argv: string[]): Promise<string | null> => {
    try {
      const r = await run(argv, ro);
      return r.code === 0 ? r.stdout : null;
    } catch (e) {
      if (e instanceof JourneyError && e.code === 'E_TOOL_MISSING') return null;
      throw e;
    }
  };
  const [iptablesSave, ip6tablesSave, nftJson, nftList, ipsetSave] = await Promise.all([
    tool(opts.counters === true ? ['iptables-save', '-c'] : ['iptables-save']),
    tool(opts.counters === true ? ['ip6tables-save', '-c'] : ['ip6tables-save']),
    tool(['nft', '-j', 'list', 'ruleset']),
    tool(['nft', '-a', 'list', 'ruleset']),
    tool(['ipset', 'save']),
  ]);
  return { iptablesSave, ip6tablesSave, nftJson, nftList, ipsetSave };
}

/**
 * A digest of the dumps that ignores counters: equal digests mean the same ruleset, so a caller
 * polling readRulesetDumps() recompiles (and drops its explanation cache) only when it changed.
 */
export function rulesetDigest(d: RulesetDumps): string {
  const strip = (s: string | null | undefined): string =>
    (s ?? '')
      .replace(/\[\d+:\d+\]/g, '')
      .replace(/counter packets \d+ bytes \d+/g, 'counter')
      .replace(/"counter":\s*\{\s*"packets":\s*\d+,\s*"bytes":\s*\d+\s*\}/g, '"counter":{}')
      .replace(/^# (Generated|Completed) .*$/gm, '');
  return createHash('sha256').update([d.iptablesSave, d.ip6tablesSave, d.nftJson, d.nftList, d.ipsetSave].map(strip).join('\0')).digest('hex');
}

/** Reads the live ruleset of the host or of a netns. */
export async function loadLiveRuleset(opts: LiveOptions = {}): Promise<Ruleset> {
  const where = opts.netns === undefined ? 'live' : `netns ${str(opts.netns)}`;
  return rulesetFromDumps(await readRulesetDumps(opts), where);
}

/** What loadHostContext reads; also the shape of recorded dumps. */
export interface HostDumps {
  readonly addrs: string;
  readonly routes4: string;
  readonly routes6: string;
}

export async function readHostDumps(opts: LiveOptions = {}): Promise<HostDumps> {
  const ro = opts.netns === undefined ? {} : { netns: opts.netns };
  const [a, r4, r6] = await Promise.all([
    run(['ip', '-d', '-j', 'addr'], ro),
    run(['ip', '-j', 'route', 'show', 'table', 'all'], ro),
    run(['ip', '-6', '-j', 'route', 'show', 'table', 'all'], ro),
  ]);
  return { addrs: a.stdout, routes4: r4.stdout, routes6: r6.stdout };
}

export function hostFromDumps(d: HostDumps, where: string): HostContext {
  return makeHostContext(
    parseIpAddr(d.addrs, `${where}:ip -j addr`),
    [...parseIpRoute(d.routes4, `${where}:ip -j route`), ...parseIpRoute(d.routes6, `${where}:ip -6 -j route`)],
    where,
  );
}

/** Reads interfaces and routes of the host or a netns (`ip -j addr`, `ip [-6] -j route show table all`). */
export async function loadHostContext(opts: LiveOptions = {}): Promise<HostContext> {
  const where = opts.netns === undefined ? 'live' : `netns ${str(opts.netns)}`;
  return hostFromDumps(await readHostDumps(opts), where);
}

/** Host context from files; either may be absent. A routes file may hold IPv4 and IPv6 dumps as one array. */
export async function loadHostContextFiles(files: { addrs?: string; routes?: string }): Promise<HostContext> {
  const ifs = files.addrs !== undefined ? parseIpAddr(await readText(files.addrs), files.addrs) : null;
  let routes = null;
  if (files.routes !== undefined) {
    const text = await readText(files.routes);
    // tolerate two concatenated arrays (`ip -j route ...; ip -6 -j route ...` > file)
    const joined = text
      .trim()
      .replace(/\]\s*\[/g, ',')
      .replace(/\[\s*,/g, '[')
      .replace(/,\s*\]/g, ']');
    routes = parseIpRoute(joined, files.routes);
  }
  return makeHostContext(ifs, routes, [files.addrs, files.routes].filter(Boolean).join(', '));
}

export interface RulesetFiles {
  readonly iptablesSave?: readonly string[];
  readonly nftJson?: readonly string[];
  readonly nft?: readonly string[];
  /** `ipset save` output (members of the sets `-m set` matches). */
  readonly ipset?: readonly string[];
}

/** Loads any subset of ruleset files into one model. */
export async function loadRulesetFiles(files: RulesetFiles): Promise<Ruleset> {
  const parts: Ruleset[] = [];
  for (const f of files.iptablesSave ?? []) parts.push(await loadIptablesSaveFile(f));
  for (const f of files.nftJson ?? []) parts.push(await loadNftJsonFile(f));
  for (const f of files.nft ?? []) parts.push(await loadNftTextFile(f));
  for (const f of files.ipset ?? []) parts.push({ tables: [], notes: [], ipsets: parseIpsetSave(await readText(f), f) });
  return withoutTraceTables(mergeRulesets(...parts));
}
