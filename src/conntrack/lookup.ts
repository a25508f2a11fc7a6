/**
 * The conntrack entry of one packet, for explaining it as the kernel sees it (`journey explain
 * --reply`, established packets): read live from a host's table (`conntrack -L` in its network
 * namespace) or from a file (`conntrack -L` / `/proc/net/nf_conntrack` text, or a snapshot), then
 * found by the packet's tuple in the direction it travels.
 */
import { readFile } from 'node:fs/promises';
import { run } from '../host/exec.js';
import type { ConntrackEntry } from '../model/conntrack.js';
import { JourneyError } from '../model/errors.js';
import type { Tuple } from '../model/tuple.js';
import { canonicalIp } from '../ruleset/ip.js';
import { parseConntrackText } from './parse.js';

export interface ConntrackListing {
  readonly entries: readonly ConntrackEntry[];
  /** Lines that could not be read (counted, never silently lost). */
  readonly skipped: number;
  /** Where the entries came from, for notes. */
  readonly source: string;
}

/** The live table of a host (its network namespace, or this one). */
export async function readLiveConntrack(opts: { netns?: string } = {}): Promise<ConntrackListing> {
  const res = await run(['conntrack', '-L', '-o', 'extended'], { ...(opts.netns !== undefined ? { netns: opts.netns } : {}), timeoutMs: 30_000 });
  const { lines, skipped } = parseConntrackText(res.stdout, 'conntrack-tool');
  return { entries: lines.map((l) => l.entry), skipped, source: opts.netns !== undefined ? `conntrack -L in ${opts.netns}` : 'conntrack -L' };
}

/** A recorded table: `conntrack -L [-o extended]` or `/proc/net/nf_conntrack` text. */
export async function readConntrackFile(path: string): Promise<ConntrackListing> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new JourneyError('E_USAGE', `--conntrack: cannot read ${path}: ${(e as Error).message}`);
  }
  const { lines, skipped } = parseConntrackText(text, 'snapshot');
  if (lines.length === 0 && text.trim() !== '')
    throw new JourneyError('E_PARSE', `--conntrack ${path}: no conntrack entry could be read (${skipped} lines skipped)`);
  return { entries: lines.map((l) => l.entry), skipped, source: path };
}

const icmpLike = (p: string): boolean => p === 'icmp' || p === 'icmpv6';

function sameTuple(a: Tuple, b: Tuple): boolean {
  if (a.proto !== b.proto || canonicalIp(a.src) !== canonicalIp(b.src) || canonicalIp(a.dst) !== canonicalIp(b.dst)) return false;
  // ICMP: the echo id is both ports (conntrack keeps it in both directions)
  return icmpLike(a.proto) ? a.sport === b.sport || a.dport === b.dport : a.sport === b.sport && a.dport === b.dport;
}

/**
 * The entry a packet belongs to, and the packet's direction in it: the packet's tuple equals the
 * entry's original tuple (original direction) or its reply tuple (reply direction). `want` limits
 * the direction. null when no entry has the tuple.
 */
export function findEntry(
  entries: readonly ConntrackEntry[],
  t: Tuple,
  want?: 'original' | 'reply',
): { entry: ConntrackEntry; direction: 'original' | 'reply' } | null {
  for (const e of entries) {
    if (want !== 'reply' && sameTuple(e.orig, t)) return { entry: e, direction: 'original' };
    if (want !== 'original' && sameTuple(e.reply, t)) return { entry: e, direction: 'reply' };
  }
  return null;
}
