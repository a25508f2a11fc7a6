/**
 * Two accounts of a hairpin probe's first packet: the simulator's (explainProbe, and the one-line
 * summary a check's evidence shows) and the kernel's (toSteps: `nft monitor trace` text as steps).
 */
import { explainPacket, type CompiledRuleset } from '../explain/explain.js';
import type { Explanation } from '../model/explanation.js';
import { parseNftTrace } from '../netfilter/kernel-trace.js';
import { familyOfAddr, isLoopback } from './family-view.js';
import type { PlannedCheck } from './plan.js';
import type { TraceStep } from './types.js';
export function toSteps(text: string, rulesetJson: string, table: string): TraceStep[] {
  let rs: unknown;
  try {
    rs = rulesetJson !== '' ? JSON.parse(rulesetJson) : undefined;
  } catch {
    rs = undefined;
  }
  const t = parseNftTrace(text, { ...(rs !== undefined ? { ruleset: rs } : {}), traceTable: table });
  return t.steps.map((s) => ({
    family: s.family,
    table: s.table,
    chain: s.chain,
    rule: s.rule,
    handle: s.handle,
    ruleNumber: s.ruleNumber,
    verdict: s.verdict,
    traceId: s.traceId,
  }));
}

/** The simulator's account of the probe's first packet (SYN) at the host, or null. */
export function explainProbe(compiled: CompiledRuleset | null, c: PlannedCheck, srcPort: number): Explanation | null {
  if (compiled === null) return null;
  const udp = c.port.proto === 'udp';
  const base = {
    family: familyOfAddr(c.dstIp),
    proto: udp ? ('udp' as const) : ('tcp' as const),
    protoNum: udp ? 17 : 6,
    dst: c.dstIp,
    sport: srcPort,
    dport: c.dstPort,
  };
  try {
    if (c.from.kind === 'host')
      return explainPacket(compiled, {
        tuple: { ...base, src: isLoopback(c.dstIp) ? (c.dstIp.includes(':') ? '::1' : '127.0.0.1') : c.dstIp },
        local: true,
      });
    if (c.from.bridge === null) return null;
    return explainPacket(compiled, { tuple: { ...base, src: c.from.ip }, iif: c.from.bridge });
  } catch {
    return null;
  }
}

export function explainedLine(ex: Explanation): string {
  const nat = [ex.nat.dnat ? `DNAT to ${ex.nat.dnat.to}` : 'no DNAT', ex.nat.snat ? `SNAT to ${ex.nat.snat.to}` : 'no SNAT'].join(', ');
  const drop = ex.steps.find((s) => s.verdict === 'drop' || s.verdict === 'reject' || s.verdict === 'policy-drop');
  const where = drop ? ` in ${drop.table} ${drop.chain}${drop.ruleNumber !== null ? ` rule ${drop.ruleNumber}` : ' (policy)'}` : '';
  const out = ex.packet_out
    ? `, leaves ${ex.packet_out.src}:${ex.packet_out.sport ?? ''} > ${ex.packet_out.dst}:${ex.packet_out.dport ?? ''}${ex.packet_out.oif !== undefined ? ` on ${ex.packet_out.oif}` : ''}`
    : '';
  return `explained: ${ex.verdict}${where}; ${nat}${out}${ex.indeterminate.length > 0 ? ` (indeterminate: ${ex.indeterminate.map((i) => `${i.chain}: ${i.reason}`).join('; ')})` : ''}`;
}

/** The probe's entry from the conntrack table itself, when the event stream missed it (it was not yet subscribed). */
