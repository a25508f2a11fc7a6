/**
 * The explainer against the kernel's own trace: for every lab scenario (a real dockerd in network
 * namespaces) and every probe of the scenario, the first packet's steps (chain, rule number,
 * verdict) computed by `explainPacket` from the live ruleset must equal `nft monitor trace`, and its
 * `nat` must equal the conntrack entry's tuples. Normalisation: src/explain/kernel-compare.ts.
 * Lab id "b". Fails (never skips) when the lab cannot run.
 */
import { labTestId } from './lab-helpers.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labUp, listProbes, runProbe, traceKernel, SCENARIOS, isIpv6Scenario, type LabInfo } from '../../lab/driver.js';
import { compileRuleset, explainPacket } from '../../src/explain/explain.js';
import { compareSteps, kernelCase, entryOfCase, kernelFollowUps, natEqual } from '../../src/explain/kernel-compare.js';
import { readHostDumps, readRulesetDumps, rulesetFromDumps, hostFromDumps } from '../../src/ruleset/load.js';
import { existsSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ProbeResult } from '../../lab/probes.js';

const ID = labTestId('b');

interface CaseResult {
  /** first: the first packet; later: the first reply or the second packet (established). */
  readonly kind: 'first' | 'later';
  readonly scenario: string;
  readonly probe: string;
  readonly stepsEqual: boolean;
  readonly natCompared: boolean;
  readonly natEqual: boolean;
  readonly detail: string;
}

const results: CaseResult[] = [];

/** Docker 28 (iptables) and 29 (nftables) goldens replayed in the lab (no dockerd), IPv4 and IPv6. */
const GOLDEN = process.env['JOURNEY_CORPUS'] ?? join(new URL('../..', import.meta.url).pathname, '..', 'shared', 'corpus', 'moby-golden');
const REPLAY = [
  // proxy on, protected gateway mode: direct access dropped in raw, docker-proxy for hairpin
  'iptables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden',
  'nftables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden',
  // proxy off: hairpin and self-hairpin NAT
  'iptables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden',
  'nftables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden',
  // icc=false with hairpin: the bridge-to-same-bridge drop
  'iptables/hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden',
  'nftables/hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden',
  // published on 127.0.0.1
  'iptables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=true__iptables.golden',
  'nftables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=true__ip.golden',
  // routed gateway mode with SNAT
  'iptables/hairpin=false,internal=false,icc=false,masq=false,snat=true,gwm=routed,bindlh=true__iptables.golden',
  'nftables/hairpin=false,internal=false,icc=false,masq=false,snat=true,gwm=routed,bindlh=true__ip.golden',
  // internal network
  'iptables/hairpin=false,internal=true,icc=false__iptables.golden',
  'nftables/hairpin=false,internal=true,icc=false__ip.golden',
  // IPv6 (the lab's IPv6 layer): hairpin NAT, proxy on, ::1 published (a routing drop without the proxy)
  'iptables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip6tables.golden',
  'nftables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__ip6.golden',
  'nftables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=true__ip6.golden',
].map((f) => join(GOLDEN, f));

async function runScenario(scenario: string, rulesetFile?: string): Promise<void> {
  let info: LabInfo | undefined;
  try {
    info = await labUp(rulesetFile !== undefined ? { id: ID, ruleset: rulesetFile } : { id: ID, scenario });
    const ns = info.netns.host;
    const dumps = await readRulesetDumps({ netns: ns });
    const hostDumps = await readHostDumps({ netns: ns });
    const ruleset = rulesetFromDumps(dumps, `netns ${ns}`);
    const host = hostFromDumps(hostDumps, `netns ${ns}`);
    // JOURNEY_RECORD_DIR=test/fixtures/ruleset/lab records what was compared, for the offline unit test
    const recordDir = process.env['JOURNEY_RECORD_DIR'];
    const record: unknown[] | null = recordDir ? [] : null;
    const compiled = compileRuleset(ruleset, host);
    for (const probe of listProbes(info.scenario, info)) {
      const tr = await traceKernel(ID, () => runProbe(ID, probe.name));
      const pr = tr.actionResult as ProbeResult | undefined;
      if (!pr) throw new Error(`${scenario}/${probe.name}: probe failed: ${tr.actionError ?? '?'}`);
      const kc = kernelCase(probe.name, tr.packets, pr, probe.from === 'host', tr.conntrack);
      if (!kc) throw new Error(`${scenario}/${probe.name}: the kernel traced no packet of the probe (${tr.packets.length} packets)`);
      const ex = explainPacket(compiled, kc.iif === null ? { tuple: kc.tuple, local: true } : { tuple: kc.tuple, iif: kc.iif });
      const cmp = compareSteps(ex, kc.steps, ruleset);
      const natOk = kc.conntrackNat !== null && natEqual(ex.nat, kc.conntrackNat);
      const detail = cmp.equal
        ? ''
        : `\n  simulated: ${cmp.simulated.join('\n             ')}\n  kernel:    ${cmp.kernel.join('\n             ')}\n  indeterminate: ${JSON.stringify(ex.indeterminate)}`;
      const natDetail = kc.conntrackNat && !natOk ? `\n  nat: explained ${JSON.stringify(ex.nat)} conntrack ${JSON.stringify(kc.conntrackNat)}` : '';
      // later packets of the connection (established): the first reply and the second packet
      const entry = entryOfCase(tr.conntrack, kc);
      const followUps = entry ? kernelFollowUps(tr.packets, entry, kc) : [];
      if (record) record.push({ ...kc, probe: pr, followUps });
      for (const f of followUps) {
        const fx = explainPacket(compiled, {
          tuple: f.tuple,
          ...(f.iif === null ? { local: true } : { iif: f.iif }),
          ctState: 'established',
          direction: f.direction,
          conntrack: f.conntrack,
        });
        const fc = compareSteps(fx, f.steps, ruleset);
        const fd = fc.equal ? '' : `\n  simulated: ${fc.simulated.join('\n             ')}\n  kernel:    ${fc.kernel.join('\n             ')}`;
        results.push({ kind: 'later', scenario, probe: f.name, stepsEqual: fc.equal, natCompared: false, natEqual: false, detail: fd });
      }
      results.push({
        kind: 'first',
        scenario,
        probe: probe.name,
        stepsEqual: cmp.equal,
        natCompared: kc.conntrackNat !== null,
        natEqual: natOk,
        detail: detail + natDetail,
      });
    }
    if (recordDir && record && rulesetFile === undefined)
      writeFileSync(`${recordDir}/${scenario}.json`, JSON.stringify({ scenario, dumps, hostDumps, cases: record }));
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
    const first = results.filter((r) => r.kind === 'first');
    const later = results.filter((r) => r.kind === 'later');
    const natN = first.filter((r) => r.natCompared).length;
    const natOk = first.filter((r) => r.natCompared && r.natEqual).length;
    process.stdout.write(
      `explain-kernel: compared ${first.length} first packets with nft monitor trace: ${first.filter((r) => r.stepsEqual).length} equal; ` +
        `NAT compared with ${natN} conntrack entries: ${natOk} equal (no entry: ${first.length - natN}, dropped or closed before the dump); ` +
        `later packets (first reply, second packet; established): ${later.length} compared, ${later.filter((r) => r.stepsEqual).length} equal\n`,
    );
  });

  // the dual-stack scenarios are compared in lab-ipv6.test.ts and lab-ipv6proxy.test.ts (one lab each)
  for (const scenario of SCENARIOS.filter((s) => !isIpv6Scenario(s))) {
    it(`scenario ${scenario}: steps and NAT equal the kernel's`, async () => {
      await runScenario(scenario);
      const mine = results.filter((r) => r.scenario === scenario);
      expect(mine.length).toBeGreaterThan(0);
      const bad = mine.filter((r) => !r.stepsEqual || (r.natCompared && !r.natEqual));
      expect(bad.map((r) => `${r.probe}:${r.detail}`)).toEqual([]);
    });
  }

  it('the replayed goldens exist in the corpus', () => {
    expect(REPLAY.filter((f) => !existsSync(f))).toEqual([]);
  });

  for (const golden of REPLAY) {
    const name = `replay ${basename(golden)}`;
    it(`${name}: steps and NAT equal the kernel's`, async () => {
      await runScenario(name, golden);
      const mine = results.filter((r) => r.scenario === name);
      expect(mine.length).toBeGreaterThan(0);
      const bad = mine.filter((r) => !r.stepsEqual || (r.natCompared && !r.natEqual));
      expect(bad.map((r) => `${r.probe}:${r.detail}`)).toEqual([]);
    });
  }
});
