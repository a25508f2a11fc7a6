/**
 * Conntrack for replays: a file recorded with `conntrack -L -o extended,id`,
 * `conntrack -E -o extended,id,timestamp`, `cat /proc/net/nf_conntrack`, or JSON lines of
 * ConntrackEntry / ConntrackEvent objects. `dump()` returns every connection the file names
 * (the latest version of each), so that a replayed capture can be joined whatever the order.
 * `start()` delivers nothing further (a replay has no live kernel).
 */
import { readFile } from 'node:fs/promises';
import type { ConntrackEntry, ConntrackEvent, ConntrackSource } from '../model/conntrack.js';
import { JourneyError } from '../model/errors.js';
import { natOf } from './nat.js';
import { parseConntrackText } from './parse.js';

export interface SnapshotContent {
  readonly entries: ConntrackEntry[];
  /** Timed events when the file was an event log; empty for a plain listing. */
  readonly events: ConntrackEvent[];
  readonly skipped: number;
}

function isTupleLike(t: unknown): boolean {
  if (typeof t !== 'object' || t === null) return false;
  const o = t as Record<string, unknown>;
  return typeof o['src'] === 'string' && typeof o['dst'] === 'string' && typeof o['proto'] === 'string';
}

function entryFromJson(o: Record<string, unknown>): ConntrackEntry | null {
  if (!isTupleLike(o['orig']) || !isTupleLike(o['reply'])) return null;
  const e = o as unknown as ConntrackEntry;
  const status = Array.isArray(o['status']) ? e.status : [];
  const nat = natOf(e.orig, e.reply);
  const bits = [...status];
  if (nat.dnat && !bits.includes('DST_NAT')) bits.push('DST_NAT');
  if (nat.snat && !bits.includes('SRC_NAT')) bits.push('SRC_NAT');
  return {
    ...e,
    id: typeof o['id'] === 'string' ? e.id : String(o['id'] ?? `${e.orig.proto}/${e.orig.src}/${e.orig.sport}/${e.orig.dst}/${e.orig.dport}`),
    status: bits,
    mark: typeof o['mark'] === 'number' ? e.mark : 0,
    zone: typeof o['zone'] === 'number' ? e.zone : 0,
    timeout: typeof o['timeout'] === 'number' ? e.timeout : 0,
    source: 'snapshot',
  };
}

export function parseSnapshot(text: string): SnapshotContent {
  const trimmed = text.trimStart();
  const latest = new Map<string, ConntrackEntry>();
  const events: ConntrackEvent[] = [];
  let skipped = 0;
  const jsonArray = /^\[\s*[{\]]/.test(trimmed);
  if (trimmed.startsWith('{') || jsonArray) {
    const docs: unknown[] = [];
    if (jsonArray) {
      try {
        // a loop, not push(...): spreading 125,000+ items overflows the stack
        for (const d of JSON.parse(trimmed) as unknown[]) docs.push(d);
      } catch {
        skipped++;
      }
    } else {
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue;
        try {
          docs.push(JSON.parse(line));
        } catch {
          skipped++;
        }
      }
    }
    for (const d of docs) {
      if (typeof d !== 'object' || d === null) {
        skipped++;
        continue;
      }
      const o = d as Record<string, unknown>;
      const inner = typeof o['entry'] === 'object' && o['entry'] !== null ? (o['entry'] as Record<string, unknown>) : o;
      const entry = entryFromJson(inner);
      if (!entry) {
        skipped++;
        continue;
      }
      const type = o['type'] === 'new' || o['type'] === 'update' || o['type'] === 'destroy' ? o['type'] : null;
      if (type !== null) events.push({ type, time: typeof o['time'] === 'number' ? o['time'] : 0, entry });
      if (type !== 'destroy' || !latest.has(entry.id)) latest.set(entry.id, entry);
    }
  } else {
    const { lines, skipped: s } = parseConntrackText(text, 'snapshot');
    skipped += s;
    for (const l of lines) {
      if (l.event !== null) events.push({ type: l.event, time: l.timeMs ?? 0, entry: l.entry });
      // a DESTROY line keeps the last version we saw (it may lack the state)
      if (l.event !== 'destroy' || !latest.has(l.entry.id)) latest.set(l.entry.id, l.entry);
    }
  }
  return { entries: [...latest.values()], events, skipped };
}

export class SnapshotConntrackSource implements ConntrackSource {
  readonly kind = 'snapshot' as const;
  readonly limitations: readonly string[] = ['conntrack from a recorded snapshot: no live updates'];
  private readonly files: readonly string[];
  skipped = 0;
  events: ConntrackEvent[] = [];

  constructor(files: string | readonly string[]) {
    this.files = typeof files === 'string' ? [files] : files;
  }

  async dump(): Promise<ConntrackEntry[]> {
    const all = new Map<string, ConntrackEntry>();
    this.events = [];
    for (const f of this.files) {
      let text: string;
      try {
        text = await readFile(f, 'utf8');
      } catch (e) {
        throw new JourneyError('E_CONNTRACK', `cannot read conntrack snapshot ${f}: ${(e as Error).message}`, { file: f }, { cause: e });
      }
      const c = parseSnapshot(text);
      this.skipped += c.skipped;
      if (c.entries.length === 0 && text.trim() !== '') {
        throw new JourneyError('E_PARSE', `${f}: no conntrack entries could be read (${c.skipped} lines skipped)`, { file: f });
      }
      for (const e of c.entries) all.set(e.id, e);
      for (const ev of c.events) this.events.push(ev);
    }
    return [...all.values()];
  }

  async start(): Promise<void> {
    /* nothing live */
  }

  async stop(): Promise<void> {
    /* nothing to stop */
  }
}
