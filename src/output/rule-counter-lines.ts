/**
 * `--rule-counters` in the terminal: after a flow's END line, how much the kernel's counter of each
 * rule in its path (both directions) grew during the flow's life, with the window it covers.
 */
import type { FlowInfo } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import { formatTime } from './terminal.js';

function stepLines(ex: Explanation, label: string): string[] {
  const out: string[] = [];
  for (const s of ex.steps) {
    if (s.counters === undefined) continue;
    const at = s.ruleNumber !== null ? `#${s.ruleNumber}` : s.handle !== null ? `handle ${s.handle}` : '';
    out.push(
      `    ${`+${s.counters.packets} pkts`.padStart(12)} ${`+${s.counters.bytes} B`.padStart(12)}  ${label}${s.family} ${s.table} ${s.chain} ${at}`,
    );
  }
  return out;
}

/** The lines, or null when the flow's explanation carries no counters (notes say why when asked and unavailable). */
export function formatRuleCounters(flow: FlowInfo, tz: 'utc' | 'local' = 'utc'): string | null {
  const ex = flow.explanation;
  if (ex === null) return null;
  const why = (ex.notes ?? []).find((n) => n.startsWith('rule counters: '));
  if (ex.counterWindow === undefined) return why !== undefined ? `  ${why}` : null;
  const w = ex.counterWindow;
  const lines = [
    `  rule counters, ${formatTime(w.fromMs, tz)} → ${formatTime(w.toMs, tz)} (the kernel counts every packet through a rule, not only this flow's):`,
    ...stepLines(ex, ''),
    ...(ex.reply ? stepLines(ex.reply, 'reply: ') : []),
  ];
  return lines.join('\n');
}
