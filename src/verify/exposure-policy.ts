/**
 * `journey verify exposure --policy FILE`: which ports may be reached from which source class.
 * A small YAML or JSON document (docs/verify.md):
 *
 *   allow:
 *     - port: 8080            # a published host port, or a container port (for container targets)
 *       proto: tcp            # optional (default: any)
 *       from: [internet, lan] # source classes, or [any]
 *       family: 4             # optional: 4 or 6
 *       target: published     # optional: published | container
 *   indeterminate: warn       # warn (default) or fail: what an undecidable row does
 *
 * A reachable row that no entry allows violates the policy (the exit status fails, naming the row).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { JourneyError } from '../model/errors.js';
import { SOURCE_CLASSES, type ExposureRow, type SourceClass } from './exposure-types.js';

export interface PolicyEntry {
  readonly port?: number;
  readonly proto?: string;
  readonly from: readonly (SourceClass | 'any')[];
  readonly family?: 4 | 6;
  readonly target?: 'published' | 'container';
  /** The address of the target (optional). */
  readonly address?: string;
}

export interface ExposurePolicy {
  readonly source: string;
  readonly allow: readonly PolicyEntry[];
  readonly indeterminate: 'warn' | 'fail';
}

const ENTRY_KEYS = new Set(['port', 'proto', 'from', 'family', 'target', 'address']);

function bad(file: string, msg: string): JourneyError {
  return new JourneyError('E_PARSE', `${file}: ${msg}`, { file });
}

/** Checks a parsed policy document; every mistake is an E_PARSE naming where it is. */
export function policyFrom(doc: unknown, file: string): ExposurePolicy {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad(file, 'a policy is a mapping with an "allow" list');
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (k !== 'allow' && k !== 'indeterminate') throw bad(file, `unknown key "${k}" (allow, indeterminate)`);
  const ind = d['indeterminate'] ?? 'warn';
  if (ind !== 'warn' && ind !== 'fail') throw bad(file, `indeterminate must be warn or fail, got ${JSON.stringify(ind)}`);
  const list = d['allow'] ?? [];
  if (!Array.isArray(list)) throw bad(file, '"allow" must be a list');
  const allow = list.map((e: unknown, i): PolicyEntry => {
    const at = `allow[${i}]`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw bad(file, `${at} must be a mapping`);
    const o = e as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!ENTRY_KEYS.has(k)) throw bad(file, `${at}: unknown key "${k}" (${[...ENTRY_KEYS].join(', ')})`);
    const port = o['port'];
    if (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535))
      throw bad(file, `${at}.port must be a port number, got ${JSON.stringify(port)}`);
    const proto = o['proto'];
    if (proto !== undefined && proto !== 'tcp' && proto !== 'udp' && proto !== 'sctp') throw bad(file, `${at}.proto must be tcp, udp or sctp`);
    const fromRaw = o['from'] ?? ['any'];
    const from = Array.isArray(fromRaw) ? fromRaw : [fromRaw];
    for (const f of from)
      if (f !== 'any' && !SOURCE_CLASSES.includes(f as SourceClass))
        throw bad(file, `${at}.from: unknown source class ${JSON.stringify(f)} (${SOURCE_CLASSES.join(', ')}, any)`);
    const family = o['family'];
    if (family !== undefined && family !== 4 && family !== 6) throw bad(file, `${at}.family must be 4 or 6`);
    const target = o['target'];
    if (target !== undefined && target !== 'published' && target !== 'container') throw bad(file, `${at}.target must be published or container`);
    const address = o['address'];
    if (address !== undefined && typeof address !== 'string') throw bad(file, `${at}.address must be a string`);
    return {
      ...(port !== undefined ? { port: port as number } : {}),
      ...(proto !== undefined ? { proto: proto as string } : {}),
      from: from as (SourceClass | 'any')[],
      ...(family !== undefined ? { family: family as 4 | 6 } : {}),
      ...(target !== undefined ? { target: target as 'published' | 'container' } : {}),
      ...(address !== undefined ? { address: address as string } : {}),
    };
  });
  return { source: file, allow, indeterminate: ind };
}

/** Reads a policy file: JSON when it starts with `{`, YAML otherwise. */
export function loadPolicy(file: string): ExposurePolicy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new JourneyError('E_USAGE', `--policy ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
  let doc: unknown;
  try {
    doc = text.trimStart().startsWith('{') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 100 });
  } catch (e) {
    throw bad(file, `not ${text.trimStart().startsWith('{') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0] ?? ''}`);
  }
  return policyFrom(doc, file);
}

function describe(e: PolicyEntry, i: number): string {
  const parts = [e.target ?? '', e.address ?? '', e.port !== undefined ? `${e.port}${e.proto !== undefined ? `/${e.proto}` : ''}` : 'any port'];
  return `allow[${i}] ${parts.filter((p) => p !== '').join(' ')} from ${e.from.join(', ')}${e.family !== undefined ? ` (v${e.family})` : ''}`;
}

/** The entry allowing a row, or null. */
export function allowedBy(p: ExposurePolicy, row: ExposureRow): string | null {
  for (const [i, e] of p.allow.entries()) {
    if (e.port !== undefined && e.port !== row.target.port) continue;
    if (e.proto !== undefined && e.proto !== row.target.proto) continue;
    if (e.family !== undefined && e.family !== row.family) continue;
    if (e.target !== undefined && e.target !== row.target.kind) continue;
    if (e.address !== undefined && e.address !== row.target.addr) continue;
    if (!e.from.includes('any') && !e.from.includes(row.source)) continue;
    return describe(e, i);
  }
  return null;
}

/** The rows with the policy's answer; a violation is a reachable row (or, with indeterminate: fail, an undecided one) nothing allows. */
export function applyPolicy(p: ExposurePolicy, rows: readonly ExposureRow[]): { rows: ExposureRow[]; violations: ExposureRow[] } {
  const out: ExposureRow[] = [];
  const violations: ExposureRow[] = [];
  for (const r of rows) {
    const by = allowedBy(p, r);
    const counts = r.status === 'reachable' || (r.status === 'indeterminate' && p.indeterminate === 'fail');
    const row = { ...r, policy: { allowed: by !== null || !counts, rule: by } };
    if (counts && by === null) violations.push(row);
    out.push(row);
  }
  return { rows: out, violations };
}
