/**
 * The explainer against the kernel's own trace: for every lab scenario (a real dockerd in network
 * namespaces) and every probe of the scenario, the first packet's steps (chain, rule number,
 * verdict) computed by `explainPacket` from the live ruleset must equal `nft monitor trace`, and its
 * `nat` must equal the conntrack entry's tuples. Normalisation: src/explain/kernel-compare.ts.
 * Lab id "b". Fails (never skips) when the lab cannot run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labUp, listProbes, runProbe, traceKernel, SCENARIOS, type LabInfo } from '../../lab/driver.js';
import type { TracePacket } from '../../src/netfilter/kernel-trace.js';
import { compileRuleset, explainPacket, loadHostContext, loadLiveRuleset } from '../../src/explain/explain.js';
import { compareSteps, natEqual, natFromConntrack } from '../../src/explain/kernel-compare.js';
import type { Tuple } from '../../src/model/tuple.js';
import type { ProbeResult } from '../../lab/probes.js';

const ID = 'b';

interface CaseResult {
  readonly scenario: string;
  readonly probe: string;
  readonly stepsEqual: boolean;
  readonly natCompared: boolean;
  readonly natEqual: boolean;
  readonly detail: string;
}

const results: CaseResult[] = [];

/** The probe's first packet in the trace: its destination (and port), from its source unless the host chose it. */
function firstPacket(packets: readonly TracePacket[], pr: ProbeResult, fromHost: boolean): TracePacket | undefined {
  return packets.find((p) => {
    const h = p.first;
    if (!h || h.daddr !== pr.to.addr) return false;
    if (pr.to.port !== undefined && h.dport !== pr.to.port) return false;
    if (pr.proto === 'icmp' && h.icmpType !== undefined && h.icmpType !== 'echo-request') return false;
    return fromHost || h.saddr === pr.from.addr;
  });
}

async function runScenario(scenario: string): Promise<void> {
  let info: LabInfo | undefined;
  try {
    info = await labUp({ id: ID, scenario });
    const ns = info.netns.host;
    const ruleset = await loadLiveRuleset({ netns: ns });
    const host = await loadHostContext({ netns: ns });
    const compiled = compileRuleset(ruleset, host);
    for (const probe of listProbes(scenario, info)) {
      const tr = await traceKernel(ID, () => runProbe(ID, probe.name));
      const pr = tr.actionResult as ProbeResult | undefined;
      if (!pr) throw new Error(`${scenario}/${probe.name}: probe failed: ${tr.actionError ?? '?'}`);
      const pk = firstPacket(tr.packets, pr, probe.from === 'host');
      if (!pk || !pk.first) throw new Error(`${scenario}/${probe.name}: the kernel traced no packet of the probe (${tr.packets.length} packets)`);
      const h = pk.first;
      const proto = (h.proto ?? pr.proto) as Tuple['proto'];
      const icmp = proto === 'icmp';
      const tuple: Tuple = {
        family: 4,
        proto,
        protoNum: proto === 'tcp' ? 6 : proto === 'udp' ? 17 : 1,
        src: h.saddr ?? pr.from.addr,
        dst: h.daddr ?? pr.to.addr,
        sport: icmp ? (h.icmpId ?? 0) : (h.sport ?? 0),
        dport: icmp ? (h.icmpId ?? 0) : (h.dport ?? 0),
        ...(icmp ? { icmpType: 8, icmpCode: 0 } : {}),
      };
      const local = h.iif === undefined;
      const ex = explainPacket(compiled, local ? { tuple, local: true } : { tuple, iif: h.iif as string });
      const cmp = compareSteps(ex, pk.steps, ruleset);
      const ct = tr.conntrack.find(
        (e) => e.orig.src === tuple.src && e.orig.dst === tuple.dst && e.orig.proto === proto && (icmp || (e.orig.sport === tuple.sport && e.orig.dport === tuple.dport)),
      );
      const natOk = ct ? natEqual(ex.nat, natFromConntrack(ct)) : false;
      const detail = cmp.equal
        ? ''
        : `\n  simulated: ${cmp.simulated.join('\n             ')}\n  kernel:    ${cmp.kernel.join('\n             ')}\n  indeterminate: ${JSON.stringify(ex.indeterminate)}`;
      const natDetail = ct && !natOk ? `\n  nat: explained ${JSON.stringify(ex.nat)} conntrack ${JSON.stringify(natFromConntrack(ct))}` : '';
      results.push({ scenario, probe: probe.name, stepsEqual: cmp.equal, natCompared: ct !== undefined, natEqual: natOk, detail: detail + natDetail });
    }
  } finally {
    await labDown(ID);
  }
}

describe('journey explain vs the kernel trace (lab)', () => {
  beforeAll(async () => {
    await assertLabCanRun();
    await labDown(ID).catch(() => undefined);
  });
  afterAll(async () => {
    await labDown(ID).catch(() => undefined);
    const steps = results.filter((r) => r.stepsEqual).length;
    const natN = results.filter((r) => r.natCompared).length;
    const natOk = results.filter((r) => r.natCompared && r.natEqual).length;
    process.stdout.write(
      `explain-kernel: compared ${results.length} first packets with nft monitor trace: ${steps} equal; ` +
        `NAT compared with ${natN} conntrack entries: ${natOk} equal (no entry: ${results.length - natN}, dropped or closed before the dump)\n`,
    );
  });

  for (const scenario of SCENARIOS) {
    it(`scenario ${scenario}: steps and NAT equal the kernel's`, async () => {
      await runScenario(scenario);
      const mine = results.filter((r) => r.scenario === scenario);
      expect(mine.length).toBeGreaterThan(0);
      const bad = mine.filter((r) => !r.stepsEqual || (r.natCompared && !r.natEqual));
      expect(bad.map((r) => `${r.probe}:${r.detail}`)).toEqual([]);
    });
  }
});
