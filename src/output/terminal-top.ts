/**
 * `journey watch --top`: a table of the live flows, redrawn in place (ANSI) every second,
 * busiest first. `renderTop` is pure (golden-tested); printers/top.ts does the redrawing.
 */
import type { FlowInfo } from '../model/events.js';
import { flowLabel, stateLabel, verdictLabel } from './terminal.js';

function total(f: FlowInfo): { packets: number; bytes: number; lastUs: number; firstUs: number } {
  // count each direction once: on the first interface it was seen on
  let packets = 0;
  let bytes = 0;
  let lastUs = 0;
  let firstUs = Number.POSITIVE_INFINITY;
  for (const dir of ['orig', 'reply'] as const) {
    const l = f.legs.filter((x) => x.direction === dir).sort((a, b) => a.firstUs - b.firstUs)[0];
    if (l) {
      packets += l.packets;
      bytes += l.bytes;
    }
  }
  for (const l of f.legs) {
    lastUs = Math.max(lastUs, l.lastUs);
    firstUs = Math.min(firstUs, l.firstUs);
  }
  return { packets, bytes, lastUs, firstUs: Number.isFinite(firstUs) ? firstUs : 0 };
}

export interface TopOptions {
  readonly width?: number;
  readonly rows?: number;
  readonly nowMs: number;
  readonly header?: string;
}

export function renderTop(flows: readonly FlowInfo[], opts: TopOptions): string {
  const width = opts.width ?? 160;
  const rows = opts.rows ?? 40;
  const sorted = flows.map((f) => ({ f, t: total(f) })).sort((a, b) => b.t.bytes - a.t.bytes || b.t.lastUs - a.t.lastUs);
  const out: string[] = [];
  out.push(opts.header ?? `journey watch --top — ${flows.length} live flows`);
  out.push(`${'PKTS'.padStart(7)} ${'BYTES'.padStart(9)} ${'IDLE'.padStart(6)} ${'STATE'.padEnd(12)} FLOW`);
  for (const { f, t } of sorted.slice(0, Math.max(1, rows - 3))) {
    const idle = t.lastUs > 0 ? `${Math.max(0, Math.round(opts.nowMs / 1000 - t.lastUs / 1_000_000))}s` : '-';
    const v = verdictLabel(f);
    const line = `${String(t.packets).padStart(7)} ${String(t.bytes).padStart(9)} ${idle.padStart(6)} ${stateLabel(f).padEnd(12)} ${flowLabel(f)}${v !== '' ? ` ${v}` : ''}`;
    out.push(line.length > width ? `${line.slice(0, width - 1)}…` : line);
  }
  if (sorted.length > rows - 3) out.push(`… ${sorted.length - (rows - 3)} more`);
  return out.join('\n');
}
