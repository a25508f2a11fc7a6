/**
 * Replay mode (lab id "d", `labUp({ ruleset })`): moby's Docker 28 iptables golden and its Docker 29
 * nftables twin drop "direct access" to a container address in the raw table (PREROUTING, priority
 * -300). An external client routed straight to the container's address must be seen as a drop with
 * reason NETFILTER_DROP, its tuple, on the uplink — and the kernel trace names the raw-table rule.
 * One suite, run against the native addon and against the fallback (JOURNEY_NATIVE=off).
 */
import { labTestId } from './lab-helpers.js';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { labDown, labUp, listProbes, runProbeDef, traceKernel, type LabInfo } from '../../lab/driver.js';
import { resetBindingCache } from '../../src/native/binding.js';
import { openKernelEvents, type KernelDrop } from '../../src/native/index.js';
import { joinDropRule } from '../../src/native/join.js';
import { compileRuleset, explainPacket, loadHostContext, loadLiveRuleset } from '../../src/explain/explain.js';

const ID = labTestId('d');
const GOLDEN = '/work/shared/corpus/moby-golden';
const RULESETS = [
  {
    name: 'Docker 28 (iptables)',
    file: join(GOLDEN, 'iptables', 'hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden'),
    table: 'raw',
  },
  {
    name: 'Docker 29 (nftables)',
    file: join(GOLDEN, 'nftables', 'hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden'),
    table: 'docker-bridges',
  },
] as const;
const MODES = ['native', 'fallback'] as const;

afterAll(async () => {
  delete process.env['JOURNEY_NATIVE'];
  resetBindingCache();
  await labDown(ID);
}, 180_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.each(RULESETS)('replay $name: raw-table DROP DIRECT ACCESS', ({ file, table }) => {
  let lab: LabInfo;

  it('the lab replays the golden', async () => {
    await labDown(ID).catch(() => undefined);
    lab = await labUp({ id: ID, ruleset: file });
    expect(lab.scenario).toBe('replay');
    expect(lab.containers.length).toBeGreaterThan(0);
  }, 300_000);

  it.each(MODES)('%s: the dropped packet, its reason and the rule', async (mode) => {
    if (mode === 'fallback') process.env['JOURNEY_NATIVE'] = 'off';
    else delete process.env['JOURNEY_NATIVE'];
    resetBindingCache();
    const probe = listProbes('replay', lab).find((p) => p.name.startsWith('ext-direct-') && p.proto === 'tcp' && p.expect === 'no-answer');
    expect(
      probe,
      listProbes('replay', lab)
        .map((p) => p.name)
        .join(', '),
    ).toBeDefined();
    if (!probe) return;
    const target = lab.containers.find((c) => probe.name.startsWith(`ext-direct-${c.name}-`));
    expect(target).toBeDefined();
    const k = await openKernelEvents({
      netns: lab.netns.host,
      filter: { addr: target?.ip ?? '', proto: 'tcp', port: probe.port ?? 0 },
      hooks: 'none',
    });
    const drops: KernelDrop[] = [];
    k.onDrop((d) => drops.push(...d));
    try {
      const tr = await traceKernel(ID, () => runProbeDef(lab, probe), { filter: `ip daddr ${target?.ip ?? ''}` });
      expect(tr.actionResult?.answered).toBe(false);
      await sleep(200);
      // the kernel's trace: dropped at prerouting, in the raw table / Docker 29's raw-priority chain
      const step = tr.steps.find((s) => s.verdictKind === 'drop');
      expect(step, tr.text.slice(0, 1500)).toBeDefined();
      expect(step?.hook).toBe('prerouting');
      expect(step?.table).toBe(table);
      if (table === 'docker-bridges') expect(step?.rule ?? '').toContain('DROP DIRECT ACCESS');
      if (mode === 'native') {
        expect(k.lost).toEqual([]);
        const d = drops.find((x) => x.reason === 'NETFILTER_DROP');
        expect(d, JSON.stringify(drops.slice(0, 3))).toBeDefined();
        expect(d?.tuple).toMatchObject({ proto: 'tcp', src: lab.extAddr, dst: target?.ip, dport: probe.port });
        expect(d?.iface).toBe('eth0');
        // the SYN and its retransmissions: every one is accounted for, all with the same reason
        expect(drops.every((x) => x.reason === 'NETFILTER_DROP' && x.tuple?.dst === target?.ip)).toBe(true);
        // raw PREROUTING runs before conntrack (-200): no conntrack entry yet
        expect(d?.ct).toBeNull();
        // joined with the explainer's verdict on the replayed ruleset: the raw-table rule
        if (d) {
          const compiled = compileRuleset(await loadLiveRuleset({ netns: lab.netns.host }), await loadHostContext({ netns: lab.netns.host }));
          const joined = joinDropRule(d, (spec) => explainPacket(compiled, spec));
          expect(joined.rule?.table).toBe(table);
          expect(joined.rule?.rule ?? '').toMatch(table === 'raw' ? new RegExp(`-d ${target?.ip ?? ''}/32 ! -i \\S+ -j DROP`) : /DROP DIRECT ACCESS/);
        }
      } else {
        expect(k.lost.join('\n')).toMatch(/^no drop reasons: eBPF unavailable: /);
        expect(drops).toEqual([]);
      }
    } finally {
      await k.stop();
    }
  });
});
