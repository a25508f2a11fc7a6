/**
 * `--verify`: a flow's explanation checked against the kernel's own trace of the flow's first
 * packet (armed and read by src/netfilter/trace-arm.ts).
 *
 *  - verified: the kernel's steps (table, chain, rule, verdict) equal the simulator's, and the NAT
 *    conntrack applied equals the simulator's NAT. A step the simulator could not evaluate
 *    (indeterminate) is settled by the kernel: when every step before it is the kernel's, the
 *    flow is verified through the trace and its explanation becomes the kernel's path (with the
 *    simulator's beside it).
 *  - contradicted: the first differing step, kernel vs simulator; the kernel wins: the event's
 *    explanation is the kernel's path, the simulator's is kept in `verification.simulated`.
 *  - unverified: the reason (no nft, legacy iptables, the packet never came to the trace, the rate
 *    limit, the ruleset changed since the packet).
 *
 * The comparison's normalisation is kernel-compare.ts's (docs/explain.md). Nothing here changes a
 * verdict the kernel gave: it only says which account of it is right.
 */
import type { Explanation, ExplainStep, Hook, StepVerdict, Verification } from '../model/explanation.js';
import type { FlowInfo } from '../model/events.js';
import type { Ruleset } from '../ruleset/model.js';
import type { TracePacket, TraceStep } from '../netfilter/kernel-trace.js';
import { canonicalIp } from '../ruleset/ip.js';
import { compareSteps, natEqual, natFromConntrack, withLoopback } from './kernel-compare.js';

const HOOKS: readonly string[] = ['ingress', 'prerouting', 'input', 'forward', 'output', 'postrouting'];

/** The trace of a flow's first packet: the packet that entered the trace table with the flow's original tuple. */
export function findFirstPacket(packets: readonly TracePacket[], flow: Pick<FlowInfo, 'orig'>): TracePacket | null {
  const t = flow.orig;
  const icmp = t.proto === 'icmp' || t.proto === 'icmpv6';
  const src = canonicalIp(t.src);
  const dst = canonicalIp(t.dst);
  const same = (h: TracePacket['first']): boolean => {
    if (h === null || h.saddr === undefined || h.daddr === undefined) return false;
    if (canonicalIp(h.saddr) !== src || canonicalIp(h.daddr) !== dst) return false;
    return icmp ? h.proto === t.proto && h.icmpId === t.sport : h.proto === t.proto && h.sport === t.sport && h.dport === t.dport;
  };
  const entered = packets.filter((p) => p.entry !== null);
  // the packet as it came in; else one that became this tuple on its way (a flow known only from
  // its packets may carry the tuple after NAT: the kernel's path then shows the NAT it missed)
  return entered.find((p) => same(p.first)) ?? entered.find((p) => p.headers.some((x) => same(x.header))) ?? null;
}

/** The kernel's steps of a packet, with the lo half of a packet the host sent to itself. */
export function packetSteps(packets: readonly TracePacket[], p: TracePacket): TraceStep[] {
  return withLoopback(packets, p) as TraceStep[];
}

const NAT_WORD = /\b(dnat|snat|masquerade|redirect)\b/i;

/** A kernel trace step in the Explanation's shape (counters left out of the rule text). */
export function kernelStep(s: TraceStep): ExplainStep {
  const rule = s.rule === null ? null : s.rule.replace(/ counter packets \d+ bytes \d+/g, ' counter');
  let verdict: StepVerdict;
  if (s.kind === 'policy') verdict = s.verdict.endsWith('drop') ? 'policy-drop' : 'policy-accept';
  else if (s.verdictKind === 'accept') {
    const nat = NAT_WORD.exec(rule ?? '')?.[1]?.toLowerCase();
    verdict = nat === undefined ? 'accept' : (nat as StepVerdict);
  } else if (s.verdictKind === 'drop') verdict = /\breject\b/i.test(rule ?? '') ? 'reject' : 'drop';
  else if (s.verdictKind === 'jump' || s.verdictKind === 'goto' || s.verdictKind === 'return' || s.verdictKind === 'continue')
    verdict = s.verdictKind;
  else verdict = 'indeterminate';
  const hook = (s.hook !== null && HOOKS.includes(s.hook) ? s.hook : 'prerouting') as Hook;
  return {
    hook,
    family: s.family as ExplainStep['family'],
    table: s.table,
    chain: s.chain,
    rule,
    ruleNumber: s.kind === 'policy' ? null : s.ruleNumber,
    handle: s.handle,
    verdict,
    ...(s.target !== undefined ? { target: s.target } : {}),
    ...(s.priority !== null && s.baseChain === s.chain ? { priority: s.priority } : {}),
  };
}

/** The NAT conntrack applied to the flow (its two tuples), or null without an entry. */
function flowNat(flow: FlowInfo): Explanation['nat'] | null {
  if (flow.reply === null) return null;
  return natFromConntrack({ id: flow.id, orig: flow.orig, reply: flow.reply, status: [], mark: 0, zone: 0, timeout: 0, source: 'conntrack-tool' });
}

/** The kernel's path as an Explanation (the simulator's answer kept beside it). */
function kernelExplanation(
  sim: Explanation,
  p: TracePacket,
  steps: readonly TraceStep[],
  nat: Explanation['nat'] | null,
  v: Verification,
): Explanation {
  const { verification: _drop, ...simulated } = sim;
  return {
    verdict: p.dropped ? 'drop' : 'accept',
    steps: steps.map(kernelStep),
    nat: nat ?? sim.nat,
    packet_out: p.dropped ? null : sim.packet_out,
    indeterminate: [],
    notes: ["the kernel's own path of this packet (nft monitor trace); the simulator's answer is in verification.simulated"],
    ...(sim.direction !== undefined ? { direction: sim.direction } : {}),
    ...(sim.reply !== undefined ? { reply: sim.reply } : {}),
    verification: { ...v, simulated },
  };
}

/**
 * Checks `sim` (the simulator's explanation of the flow's first packet) against the kernel's trace
 * of that packet. Returns the explanation to show: the simulator's with `verification`, or the
 * kernel's path when the kernel contradicted or settled it.
 */
export function verifyWithTrace(
  sim: Explanation,
  flow: FlowInfo,
  packets: readonly TracePacket[],
  p: TracePacket,
  ruleset: Ruleset,
  traceTable: string,
): Explanation {
  const steps = packetSteps(packets, p);
  const cmp = compareSteps(sim, steps, ruleset, traceTable);
  const kernelSteps = cmp.kernel.length;
  const nat = flowNat(flow);
  const unknownAt = cmp.simulated.findIndex((k) => k.endsWith(' indeterminate'));
  const unknown = sim.indeterminate.length > 0 || sim.verdict === 'indeterminate';
  if (unknown && (cmp.equal || (unknownAt >= 0 && cmp.firstDifference >= unknownAt))) {
    // every step before the one the simulator could not evaluate is the kernel's: the kernel settles the rest
    const resolved = sim.indeterminate.map((u) => {
      // the simulator's step for that rule gives its place (chain, rule number); the kernel's step there, if any, says what it did
      const at = sim.steps.find((s) => s.verdict === 'indeterminate' && `${s.family} ${s.table} ${s.chain}` === u.chain && s.rule === u.rule);
      const k = at
        ? steps.find((s) => s.family === at.family && s.table === at.table && s.chain === at.chain && s.ruleNumber === at.ruleNumber)
        : undefined;
      const kernel = k
        ? `matched: ${kernelStep(k).verdict}`
        : at
          ? 'did not match (the kernel went on past it)'
          : `the kernel's path: ${p.dropped ? 'dropped' : 'accepted'} (${kernelSteps} steps)`;
      return { chain: u.chain, rule: u.rule, kernel };
    });
    return kernelExplanation(sim, p, steps, nat, { result: 'verified', kernel_steps: kernelSteps, resolved });
  }
  if (cmp.equal) {
    if (nat !== null && !natEqual(nat, sim.nat)) {
      const show = (n: Explanation['nat']): string =>
        [n.dnat ? `dnat ${n.dnat.from}->${n.dnat.to}` : '', n.snat ? `snat ${n.snat.from}->${n.snat.to}` : ''].filter((x) => x !== '').join(' ') ||
        'no nat';
      const v: Verification = {
        result: 'contradicted',
        kernel_steps: kernelSteps,
        first_difference: { index: cmp.simulated.length, kernel: `nat: ${show(nat)}`, simulator: `nat: ${show(sim.nat)}` },
      };
      return kernelExplanation(sim, p, steps, nat, v);
    }
    return { ...sim, verification: { result: 'verified', kernel_steps: kernelSteps } };
  }
  const i = cmp.firstDifference;
  if (i === cmp.kernel.length && !p.dropped && cmp.kernel.every((k, j) => k === cmp.simulated[j]))
    // the kernel's path stops short of the simulator's, the packet not dropped: its last trace lines had not come
    return unverified(
      sim,
      `the kernel's trace of the packet was incomplete when the flow was shown (${cmp.kernel.length} of ${cmp.simulated.length} steps, all equal)`,
    );
  return kernelExplanation(sim, p, steps, nat, {
    result: 'contradicted',
    kernel_steps: kernelSteps,
    first_difference: { index: i, kernel: cmp.kernel[i] ?? null, simulator: cmp.simulated[i] ?? null },
  });
}

/** The explanation marked unverified, with the reason. */
export function unverified(sim: Explanation, reason: string): Explanation {
  return { ...sim, verification: { result: 'unverified', reason } };
}
