/**
 * `journey watch --explain`: a new flow's whole journey, several lines — each leg with its
 * interface, tuple as seen and time offset, the NAT, the delay between legs, docker-proxy, and
 * every netfilter step of the explanation (hook, table/chain, rule number, verdict, rule text,
 * Docker's meaning). Pure; golden-tested.
 */
import type { FlowInfo } from '../model/events.js';
import { formatEndpoint } from '../model/tuple.js';
import type { ConntrackNat, Explanation } from '../model/explanation.js';
import { ctNatLine, pathItems } from '../explain/format.js';
import { decidingStep, flowLabel, ruleRef, stateLabel, verdictLabel } from './terminal.js';

function us(n: number): string {
  if (Math.abs(n) < 1000) return `${Math.round(n)}µs`;
  if (Math.abs(n) < 1_000_000) return `${(n / 1000).toFixed(1)}ms`;
  return `${(n / 1_000_000).toFixed(2)}s`;
}

type Paint = (c: 'cyan' | 'yellow' | 'dim', s: string) => string;

/** The steps of one direction: conntrack's own NAT in its place, empty traversed chains on one line. */
function pathLines(ex: Explanation, paint: Paint, all: boolean): string[] {
  const lines: string[] = [];
  const ct = [...(ex.conntrack_nat ?? [])];
  const flush = (upTo: number): void => {
    while (ct.length > 0 && (ct[0] as ConntrackNat).afterSteps <= upTo) {
      const c = ct.shift() as ConntrackNat;
      lines.push(`    ${`${c.hook}/conntrack`.padEnd(40)} ${paint('yellow', c.kind.toUpperCase())} ${ctNatLine(c)}`);
    }
  };
  for (const item of pathItems(ex.steps, all)) {
    flush(item.kind === 'step' ? item.index : item.first);
    if (item.kind === 'empty') {
      lines.push(
        `    ${paint('dim', `… ${item.chains.length === 1 ? 'chain' : `${item.chains.length} chains`} entered and left without a matching rule: ${item.chains.join(', ')}`)}`,
      );
      continue;
    }
    const s = item.step;
    const ref =
      s.ruleNumber !== null ? ` #${s.ruleNumber}` : s.handle !== null ? ` handle ${s.handle}` : s.verdict.startsWith('policy') ? ' policy' : ' end';
    const prio = s.priority !== undefined ? ` (prio ${s.priority})` : '';
    const where = `${s.hook}/${s.family} ${s.table} ${s.chain}${ref}${prio}`;
    lines.push(`    ${where.padEnd(40)} ${s.verdict.padEnd(13)} ${s.rule ?? ''}${s.meaning !== undefined ? paint('dim', `  — ${s.meaning}`) : ''}`);
  }
  flush(Number.POSITIVE_INFINITY);
  for (const i of ex.indeterminate) lines.push(`    indeterminate in ${i.chain}: ${i.rule} (${i.reason})`);
  return lines;
}

function replyVerdictLabel(ex: Explanation): string {
  const word = ex.verdict === 'accept' ? 'ACCEPTED' : ex.verdict === 'drop' ? 'DROPPED' : ex.verdict === 'reject' ? 'REJECTED' : 'INDETERMINATE';
  const step = decidingStep(ex.steps);
  const p = ex.packet_out;
  const out = p
    ? `, ${p.delivery === 'local' ? 'delivered to the host' : `out of ${p.oif ?? '?'}`} as ${p.src}${p.sport !== undefined ? `:${p.sport}` : ''} → ${p.dst}${p.dport !== undefined ? `:${p.dport}` : ''}`
    : '';
  return `${step ? `${word} ${ruleRef(step)}` : word}${out}`;
}

export function formatJourney(flow: FlowInfo, opts: { color?: boolean; all?: boolean } = {}): string {
  const paint = opts.color
    ? (c: 'cyan' | 'yellow' | 'dim', s: string): string => `\x1b[${c === 'cyan' ? 36 : c === 'yellow' ? 33 : 2}m${s}\x1b[0m`
    : (_c: string, s: string): string => s;
  const lines: string[] = [];
  lines.push(`journey of ${flow.id}: ${flowLabel(flow)}`);
  const legs = [...flow.legs].sort((a, b) => a.firstUs - b.firstUs);
  const t0 = legs[0]?.firstUs ?? 0;
  if (legs.length === 0) lines.push('  no packet captured for this flow (on the captured interfaces)');
  for (const l of legs) {
    const t = l.tuple;
    const icmp = t.proto === 'icmp' || t.proto === 'icmpv6';
    const a = formatEndpoint(t.src, icmp ? undefined : t.sport, t.family);
    const b = formatEndpoint(t.dst, icmp ? undefined : t.dport, t.family);
    lines.push(
      `  ${paint('dim', `+${us(l.firstUs - t0)}`.padStart(9))}  ${l.iface.padEnd(12)} ${l.direction.padEnd(5)} ${a} → ${b}  ${l.packets} pkts ${l.bytes} B`,
    );
  }
  if (flow.legDelayUs !== undefined) lines.push(`  delay between the first two legs: ${us(flow.legDelayUs)}`);
  if (flow.nat.dnat) lines.push(`  ${paint('yellow', 'DNAT')} ${flow.nat.dnat.from} → ${flow.nat.dnat.to}`);
  if (flow.nat.snat) lines.push(`  ${paint('yellow', 'SNAT')} ${flow.nat.snat.from} → ${flow.nat.snat.to}`);
  if (!flow.nat.dnat && !flow.nat.snat) lines.push('  no NAT');
  for (const n of flow.names) {
    const what = [
      n.container !== undefined ? `container ${n.container}` : null,
      n.network !== undefined ? `network ${n.network}` : null,
      n.published !== undefined ? `published ${n.published}` : null,
    ].filter((x) => x !== null);
    lines.push(`  ${n.addr}: ${what.join(', ')}`);
  }
  if (flow.proxiedBy) {
    lines.push(
      `  ${flow.proxiedBy.note ?? `proxied by docker-proxy (pid ${flow.proxiedBy.pid}): the userland proxy ends this connection and opens another`}${flow.proxiedBy.peerFlowId !== null ? ` (flow ${flow.proxiedBy.peerFlowId})` : ''}`,
    );
  }
  lines.push(
    `  conntrack: ${flow.ctStatus.length > 0 ? flow.ctStatus.join(' ') : 'no entry (dropped before confirmation, or untracked)'}; state ${stateLabel(flow)}`,
  );
  const ex = flow.explanation;
  if (!ex) {
    lines.push('  explanation: none (simulator unavailable or replay)');
  } else {
    lines.push(`  verdict: ${verdictLabel(flow)}`);
    lines.push(...pathLines(ex, paint, opts.all === true));
    if (ex.reply) {
      lines.push(`  reply: ${replyVerdictLabel(ex.reply)}`);
      lines.push(...pathLines(ex.reply, paint, opts.all === true));
    }
  }
  for (const d of flow.drops)
    lines.push(`  drop: ${d.reason}${d.iface !== null ? ` on ${d.iface}` : ''}${d.rule ? ` by ${d.rule.table}/${d.rule.chain}` : ''}`);
  return lines.join('\n');
}
