/** Human output of an Explanation: numbered steps like the seeds' journeys, with Docker's meanings. */
import type { Explanation, ExplainStep } from '../model/explanation.js';
import { chainMeaning } from './meaning.js';

const VERDICT_WORD: Record<string, string> = {
  accept: 'ACCEPT',
  drop: 'DROP',
  reject: 'REJECT',
  jump: 'jump',
  goto: 'goto',
  return: 'return',
  continue: 'continue',
  'policy-accept': 'policy ACCEPT',
  'policy-drop': 'policy DROP',
  dnat: 'DNAT',
  snat: 'SNAT',
  masquerade: 'MASQUERADE',
  redirect: 'REDIRECT',
  indeterminate: 'INDETERMINATE',
};

function stepLine(n: number, s: ExplainStep): string[] {
  const where = `${s.hook.padEnd(11)} ${s.family} ${s.table} ${s.chain}`;
  const rule = s.rule === null ? (s.verdict.startsWith('policy') ? '(chain policy)' : '(end of chain)') : s.rule;
  const num = s.ruleNumber !== null ? ` #${s.ruleNumber}` : '';
  const handle = s.handle !== null ? ` handle ${s.handle}` : '';
  const lines = [
    `(${n}) ${where}${num}${handle}`,
    `      ${rule}`,
    `      → ${VERDICT_WORD[s.verdict] ?? s.verdict}${s.meaning ? `: ${s.meaning}` : ''}`,
  ];
  return lines;
}

export function formatExplanation(ex: Explanation, header: string): string {
  const out: string[] = [header];
  let lastHook = '';
  let lastChain = '';
  let seen = new Set<string>();
  let n = 0;
  for (const s of ex.steps) {
    n++;
    if (s.hook !== lastHook) {
      out.push('', `── ${s.hook} ──`);
      lastHook = s.hook;
      lastChain = '';
      seen = new Set();
    }
    const key = `${s.family} ${s.table} ${s.chain}`;
    if (key !== lastChain && !seen.has(key)) {
      const m = chainMeaning(s.family, s.table, s.chain);
      if (m) out.push(`    [${key}] ${m}`);
    }
    seen.add(key);
    lastChain = key;
    out.push(...stepLine(n, s));
  }
  if (ex.steps.length === 0) out.push('', '(no rule or chain on this path)');
  out.push('');
  for (const note of ex.notes ?? []) out.push(`note: ${note}`);
  if (ex.nat.dnat) out.push(`DNAT: ${ex.nat.dnat.from} → ${ex.nat.dnat.to}`);
  if (ex.nat.snat) out.push(`SNAT: ${ex.nat.snat.from} → ${ex.nat.snat.to}`);
  const p = ex.packet_out;
  if (p) {
    const ep = (a: string, port?: number): string => (port === undefined ? a : a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`);
    const where = p.delivery === 'local' ? 'delivered to the host' : p.oif ? `leaves through ${p.oif}` : 'leaves';
    out.push(`packet out: ${p.proto} ${ep(p.src, p.sport)} → ${ep(p.dst, p.dport)}, ${where}`);
  }
  for (const i of ex.indeterminate) out.push(`indeterminate: ${i.chain}: ${i.rule}: ${i.reason}`);
  out.push(`verdict: ${ex.verdict.toUpperCase()}`);
  return `${out.join('\n')}\n`;
}
