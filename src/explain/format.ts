/** Human output of an Explanation: numbered steps like the seeds' journeys, with Docker's meanings. */
import type { ConntrackNat, Explanation, ExplainStep, NatRewrite } from '../model/explanation.js';
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

/** Where a base chain sits: "hook prerouting priority -100". */
export function hookPriority(s: ExplainStep): string {
  return s.priority !== undefined ? `hook ${s.hook} priority ${s.priority}` : `hook ${s.hook}`;
}

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
  if (s.undecided !== undefined) lines.push(`      ? ${s.undecided}`);
  return lines;
}

/** One printed item of a path: a step, or a run of chains jumped into and left without a match. */
export type PathItem =
  | { readonly kind: 'step'; readonly index: number; readonly step: ExplainStep }
  | { readonly kind: 'empty'; readonly first: number; readonly last: number; readonly chains: readonly string[] };

/**
 * Groups the steps of a path for people: a jump into a chain where no rule matched, followed by
 * that chain's implicit return, says nothing but "traversed"; consecutive such pairs become one
 * item (firewalld walks dozens of them per packet). `all` keeps every step.
 */
export function pathItems(steps: readonly ExplainStep[], all = false): PathItem[] {
  const out: PathItem[] = [];
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i] as ExplainStep;
    const next = steps[i + 1];
    const emptyPair =
      !all &&
      (s.verdict === 'jump' || s.verdict === 'goto') &&
      s.target !== undefined &&
      next !== undefined &&
      next.chain === s.target &&
      next.table === s.table &&
      next.rule === null &&
      next.verdict === 'return';
    if (!emptyPair) {
      out.push({ kind: 'step', index: i, step: s });
      continue;
    }
    const prev = out.at(-1);
    if (prev?.kind === 'empty' && prev.last === i - 1) out[out.length - 1] = { ...prev, last: i + 1, chains: [...prev.chains, s.target as string] };
    else out.push({ kind: 'empty', first: i, last: i + 1, chains: [s.target as string] });
    i++;
  }
  return out;
}

const CT_NAT_WORDS: Record<string, string> = {
  'de-snat': 'conntrack reverses the SNAT',
  'de-dnat': 'conntrack reverses the DNAT',
  dnat: "conntrack applies the connection's DNAT",
  snat: "conntrack applies the connection's SNAT",
};

/** A NAT conntrack applies from the entry (no nat chain is consulted), in words. */
export function ctNatLine(c: ConntrackNat): string {
  const when = c.manip === 'dst' ? 'before routing' : c.hook === 'input' ? 'before local delivery' : 'after routing';
  return `${c.manip === 'dst' ? 'destination' : 'source'} ${c.from} → ${c.to} — ${CT_NAT_WORDS[c.kind] ?? c.kind} ${when}; no nat chain is consulted`;
}

export function formatExplanation(ex: Explanation, header: string, opts: { all?: boolean } = {}): string {
  const out: string[] = [header];
  let lastHook = '';
  let lastChain = '';
  let seen = new Set<string>();
  const ctNat = [...(ex.conntrack_nat ?? [])];
  const flushCt = (upTo: number): void => {
    while (ctNat.length > 0 && (ctNat[0] as ConntrackNat).afterSteps <= upTo) {
      const c = ctNat.shift() as ConntrackNat;
      if (c.hook !== lastHook) {
        out.push('', `── ${c.hook} ──`);
        lastHook = c.hook;
        lastChain = '';
        seen = new Set();
      }
      out.push(`    ${c.kind.toUpperCase().replace('DE-', 'de-')} at ${c.hook}: ${ctNatLine(c)}`);
    }
  };
  for (const item of pathItems(ex.steps, opts.all)) {
    flushCt(item.kind === 'step' ? item.index : item.first);
    const s = (item.kind === 'step' ? item.step : ex.steps[item.first]) as ExplainStep;
    if (s.hook !== lastHook) {
      out.push('', `── ${s.hook} ──`);
      lastHook = s.hook;
      lastChain = '';
      seen = new Set();
    }
    const key = `${s.family} ${s.table} ${s.chain}`;
    if (key !== lastChain && !seen.has(key)) {
      const m = chainMeaning(s.family, s.table, s.chain);
      const base = s.priority !== undefined ? ` base chain, ${hookPriority(s)}` : '';
      if (m || base) out.push(`    [${key}]${base}${m ? `${base ? ':' : ''} ${m}` : ''}`);
    }
    seen.add(key);
    lastChain = key;
    if (item.kind === 'step') out.push(...stepLine(item.index + 1, s));
    else
      out.push(
        `(${item.first + 1}–${item.last + 1}) ${item.chains.length === 1 ? 'chain' : `${item.chains.length} chains`} entered and left without a matching rule: ${item.chains.join(', ')}`,
      );
  }
  flushCt(Number.POSITIVE_INFINITY);
  if (ex.steps.length === 0 && (ex.conntrack_nat ?? []).length === 0) out.push('', '(no rule or chain on this path)');
  out.push('');
  for (const note of ex.notes ?? []) out.push(`note: ${note}`);
  if (ex.direction === undefined || (ex.conntrack_nat ?? []).length === 0) {
    if (ex.nat.dnat) out.push(`DNAT: ${natLine(ex.nat.dnat)}`);
    if (ex.nat.snat) out.push(`SNAT: ${natLine(ex.nat.snat)}`);
  }
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

/** "from → to", with the endpoints of a load-balanced DNAT and how the kernel chooses the port. */
export function natLine(n: NatRewrite): string {
  const to = n.oneOf && n.oneOf.length > 1 ? `one of ${n.oneOf.length} endpoints (${n.oneOf.join(', ')}; this path: ${n.to})` : n.to;
  const pc = n.portChoice;
  const port =
    pc === undefined
      ? ''
      : ` (port ${pc.how === 'kept-if-unique' ? 'kept if unique' : pc.how === 'conntrack' ? 'chosen by the kernel, from conntrack' : 'chosen by the kernel'}: ${pc.reason})`;
  return `${n.from} → ${to}${port}`;
}
