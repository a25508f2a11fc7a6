/**
 * The comparison of the IPv6 lab tests: each probe run while the kernel traces it (an inet trace
 * table), then `explainPacket` on the live ruleset and host (addresses, routes) for its first
 * packet and its later packets (established), compared step by step with `nft monitor trace` and
 * the NAT with conntrack's entry. Normalisation: src/explain/kernel-compare.ts.
 */
import { runProbeDef, traceKernel, type LabInfo } from '../../lab/driver.js';
import type { ProbeDef, ProbeResult } from '../../lab/probes.js';
import { compileRuleset, explainPacket } from '../../src/explain/explain.js';
import { compareSteps, kernelCase, entryOfCase, kernelFollowUps, natEqual } from '../../src/explain/kernel-compare.js';
import type { KernelTrace } from '../../src/netfilter/kernel-trace.js';
import type { HostContext } from '../../src/ruleset/host-context.js';
import { hostFromDumps, readHostDumps, readRulesetDumps, rulesetFromDumps } from '../../src/ruleset/load.js';
import type { Ruleset } from '../../src/ruleset/model.js';

export interface KernelComparison {
  readonly ruleset: Ruleset;
  readonly host: HostContext;
  /** Every difference (and every probe that did not behave as expected), one string each. */
  readonly bad: string[];
  /** First packets compared with the kernel's trace. */
  readonly first: number;
  /** Later packets (the first reply, the second packet) compared. */
  readonly later: number;
  /** First packets whose NAT was compared with a conntrack entry. */
  readonly nat: number;
}

/** Runs each probe under the kernel's trace (recorded in `traces`) and compares its explanation. */
export async function compareProbesWithKernel(
  id: string,
  info: LabInfo,
  probes: readonly ProbeDef[],
  traces: Map<string, KernelTrace>,
  opts: { readonly ip6Rules?: boolean } = {},
): Promise<KernelComparison> {
  const ns = info.netns.host;
  const ruleset = rulesetFromDumps(await readRulesetDumps({ netns: ns }), `netns ${ns}`);
  const host = hostFromDumps(await readHostDumps({ netns: ns }), `netns ${ns}`);
  const compiled = compileRuleset(ruleset, host);
  const bad: string[] = [];
  let first = 0;
  let later = 0;
  let nat = 0;
  for (const p of probes) {
    const t = await traceKernel(id, () => runProbeDef(info, p));
    traces.set(p.name, t);
    const r = t.actionResult as ProbeResult | undefined;
    if (!r) {
      bad.push(`${p.name}: ${t.actionError ?? 'no result'}`);
      continue;
    }
    if (!r.asExpected) bad.push(`${p.name}: expected ${p.expect}, got ${r.outcome} (${r.output.slice(0, 120)})`);
    if (p.family === 6 && !r.to.addr.includes(':')) bad.push(`${p.name}: probed ${r.to.addr}, not an IPv6 address`);
    if (t.skipped.length) bad.push(`${p.name}: ${t.skipped.length} unreadable trace lines`);
    const kc = kernelCase(p.name, t.packets, r, p.from === 'host', t.conntrack);
    if (!kc) {
      bad.push(`${p.name}: the kernel traced no packet of the probe (${t.packets.length} packets)`);
      continue;
    }
    // with IPv6 rules in the engine (ip6tables on) every IPv6 probe meets some of them
    if (p.family === 6 && opts.ip6Rules !== false && !kc.steps.some((s) => s.family === 'ip6'))
      bad.push(`${p.name}: no ip6 step in the kernel's trace`);
    const ex = explainPacket(compiled, kc.iif === null ? { tuple: kc.tuple, local: true } : { tuple: kc.tuple, iif: kc.iif });
    const cmp = compareSteps(ex, kc.steps, ruleset);
    first++;
    if (!cmp.equal) bad.push(`${p.name}:\n  simulated: ${cmp.simulated.join('\n             ')}\n  kernel:    ${cmp.kernel.join('\n             ')}`);
    if (kc.conntrackNat !== null) {
      nat++;
      if (!natEqual(ex.nat, kc.conntrackNat))
        bad.push(`${p.name}: nat explained ${JSON.stringify(ex.nat)} conntrack ${JSON.stringify(kc.conntrackNat)}`);
    }
    // later packets of the connection (established): the first reply and the second packet
    const entry = entryOfCase(t.conntrack, kc);
    for (const f of entry ? kernelFollowUps(t.packets, entry, kc) : []) {
      const fx = explainPacket(compiled, {
        tuple: f.tuple,
        ...(f.iif === null ? { local: true } : { iif: f.iif }),
        ctState: 'established',
        direction: f.direction,
        conntrack: f.conntrack,
      });
      const fc = compareSteps(fx, f.steps, ruleset);
      later++;
      if (!fc.equal) bad.push(`${f.name}:\n  simulated: ${fc.simulated.join('\n             ')}\n  kernel:    ${fc.kernel.join('\n             ')}`);
    }
  }
  return { ruleset, host, bad, first, later, nat };
}
