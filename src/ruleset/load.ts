/**
 * Ruleset and host-context loaders: from files (iptables-save text, `nft -j` JSON, nft text loaded
 * through a scratch network namespace, `ip -j addr` / `ip -j route show table all`) and from the live
 * host or a given netns (iptables-save + ip6tables-save for the tables iptables made, `nft -j list
 * ruleset` for native nftables tables, skipping the iptables-nft ones that show as `xt`).
 */
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JourneyError } from '../model/errors.js';
import { run } from '../host/exec.js';
import { type Ruleset, mergeRulesets, tableKey } from './model.js';
import { parseIptablesSave } from './iptables-save.js';
import { parseNftJson, parseNftListHandles } from './nft-json.js';
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
  if (process.getuid?.() !== 0) throw new JourneyError('E_NOT_ROOT', `loading nft text (${path}) needs root: it is parsed by nft in a scratch namespace`);
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
    const [json, listing] = await Promise.all([run(['nft', '-j', 'list', 'ruleset'], { netns: ns }), run(['nft', '-a', 'list', 'ruleset'], { netns: ns })]);
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
}

/** Reads the live ruleset of the host or of a netns. */
export async function loadLiveRuleset(opts: LiveOptions = {}): Promise<Ruleset> {
  const netns = opts.netns;
  const ro = netns === undefined ? { allowFailure: true } : { netns, allowFailure: true };
  const where = netns === undefined ? 'live' : `netns ${String(netns)}`;
  const parts: Ruleset[] = [];
  const notes: string[] = [];
  const iptTables = new Set<string>();
  for (const [tool, family] of [
    ['iptables-save', 'ip'],
    ['ip6tables-save', 'ip6'],
  ] as const) {
    try {
      const r = await run([tool], ro);
      if (r.code !== 0) {
        notes.push(`${tool} failed (${r.stderr.trim().split('\n')[0] ?? ''}): its tables are not explained`);
        continue;
      }
      const rs = parseIptablesSave(r.stdout, { family, source: `${where}:${tool}` });
      for (const t of rs.tables) iptTables.add(tableKey(t));
      parts.push(rs);
    } catch (e) {
      if (e instanceof JourneyError && e.code === 'E_TOOL_MISSING') notes.push(`${tool} is not installed: iptables tables are not read`);
      else throw e;
    }
  }
  try {
    const [json, listing] = await Promise.all([run(['nft', '-j', 'list', 'ruleset'], ro), run(['nft', '-a', 'list', 'ruleset'], ro)]);
    if (json.code !== 0) notes.push(`nft -j list ruleset failed: ${json.stderr.trim().split('\n')[0] ?? ''}`);
    else {
      parts.push(
        parseNftJson(json.stdout.trim() === '' ? '{"nftables":[]}' : json.stdout, {
          source: `${where}:nft`,
          ruleText: listing.code === 0 ? parseNftListHandles(listing.stdout) : new Map(),
          skipTables: iptTables,
          skipXtTables: true,
        }),
      );
    }
  } catch (e) {
    if (e instanceof JourneyError && e.code === 'E_TOOL_MISSING') notes.push('nft is not installed: native nftables tables are not read');
    else throw e;
  }
  const rs = mergeRulesets(...parts);
  rs.notes.push(...notes);
  return rs;
}

/** Reads interfaces and routes of the host or a netns (`ip -j addr`, `ip [-6] -j route show table all`). */
export async function loadHostContext(opts: LiveOptions = {}): Promise<HostContext> {
  const ro = opts.netns === undefined ? {} : { netns: opts.netns };
  const [a, r4, r6] = await Promise.all([
    run(['ip', '-j', 'addr'], ro),
    run(['ip', '-j', 'route', 'show', 'table', 'all'], ro),
    run(['ip', '-6', '-j', 'route', 'show', 'table', 'all'], ro),
  ]);
  const where = opts.netns === undefined ? 'live' : `netns ${String(opts.netns)}`;
  return makeHostContext(parseIpAddr(a.stdout, `${where}:ip -j addr`), [...parseIpRoute(r4.stdout, `${where}:ip -j route`), ...parseIpRoute(r6.stdout, `${where}:ip -6 -j route`)], where);
}

/** Host context from files; either may be absent. A routes file may hold IPv4 and IPv6 dumps as one array. */
export async function loadHostContextFiles(files: { addrs?: string; routes?: string }): Promise<HostContext> {
  const ifs = files.addrs !== undefined ? parseIpAddr(await readText(files.addrs), files.addrs) : null;
  let routes = null;
  if (files.routes !== undefined) {
    const text = await readText(files.routes);
    // tolerate two concatenated arrays (`ip -j route ...; ip -6 -j route ...` > file)
    const joined = text.trim().replace(/\]\s*\[/g, ',').replace(/\[\s*,/g, '[').replace(/,\s*\]/g, ']');
    routes = parseIpRoute(joined, files.routes);
  }
  return makeHostContext(ifs, routes, [files.addrs, files.routes].filter(Boolean).join(', '));
}

export interface RulesetFiles {
  readonly iptablesSave?: readonly string[];
  readonly nftJson?: readonly string[];
  readonly nft?: readonly string[];
}

/** Loads any subset of ruleset files into one model. */
export async function loadRulesetFiles(files: RulesetFiles): Promise<Ruleset> {
  const parts: Ruleset[] = [];
  for (const f of files.iptablesSave ?? []) parts.push(await loadIptablesSaveFile(f));
  for (const f of files.nftJson ?? []) parts.push(await loadNftJsonFile(f));
  for (const f of files.nft ?? []) parts.push(await loadNftTextFile(f));
  return mergeRulesets(...parts);
}
