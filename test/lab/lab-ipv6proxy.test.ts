/**
 * The dual-stack lab scenario `ipv6proxy`: the uplink carries IPv6, dockerd has no IPv6 (no
 * ip6tables rules, IPv4-only containers) and the userland proxy on, so a published port reached
 * over IPv6 is answered by docker-proxy on [::]:8000, which opens its own IPv4 connection from the
 * gateway to the container. Every IPv6 probe behaves as the engine does and its explained path
 * equals the kernel's trace. One lab (id "6p") for the whole file; fails (never skips) when the lab
 * cannot run.
 */
import { describe, expect, it } from 'vitest';
import { labExec, listProbes, type LabInfo } from '../../lab/driver.js';
import { compileRuleset, explainPacket } from '../../src/explain/explain.js';
import { compareSteps, kernelCase, natEqual } from '../../src/explain/kernel-compare.js';
import type { KernelTrace } from '../../src/netfilter/kernel-trace.js';
import { hostFromDumps, readHostDumps, readRulesetDumps, rulesetFromDumps } from '../../src/ruleset/load.js';
import { compareProbesWithKernel } from './ipv6-helpers.js';
import { describePacket, firstPacket, labTestId, useLab } from './lab-helpers.js';

const ID = labTestId('6p');

const info = useLab(ID, 'ipv6proxy', { leftovers: true });
const get = (): LabInfo => info;
const traces = new Map<string, KernelTrace>();

describe('scenario ipv6proxy (docker-proxy carries IPv6 to an IPv4 container)', () => {
  it('the uplink is dual-stack, the engine is not: no ip6tables NAT, IPv4-only containers', async () => {
    const i = get();
    expect(i.v6?.hostAddr).toBe('fd00:10::26');
    for (const c of i.containers) expect(c.ip6).toBeUndefined();
    expect((await labExec(ID, 'host', ['ip6tables-save'])).stdout).not.toContain('DNAT');
    // docker-proxy listens on [::]:8000 (and 0.0.0.0:8000)
    expect((await labExec(ID, 'host', ['ss', '-Htlnp', 'sport = :8000'])).stdout).toMatch(/\[::\]:8000 .*docker-proxy/);
  });

  it("every IPv6 probe behaves as the engine does, and its explained path equals the kernel's trace", async () => {
    const probes = listProbes('ipv6proxy', get()).filter((p) => p.family === 6);
    expect(probes.length).toBeGreaterThanOrEqual(5);
    const { bad, first, later, nat } = await compareProbesWithKernel(ID, get(), probes, traces, { ip6Rules: false });
    process.stdout.write(
      `lab-ipv6proxy: ${probes.length} IPv6 probes; compared ${first} first packets and ${later} later packets (established) with nft monitor trace, NAT with ${nat} conntrack entries; ${bad.length} differences\n`,
    );
    expect(bad).toEqual([]);
    expect(first).toBe(probes.length);
  }, 180_000);

  it('trace: [fd00:10::26]:8000 is delivered to docker-proxy, which opens an IPv4 connection from the gateway to web', () => {
    const web = get().containers.find((c) => c.name === 'web');
    const t = traces.get('ext-to-published6');
    if (!t) throw new Error('ext-to-published6 was not traced');
    const syn = firstPacket(t, 'fd00:10::26', 8000);
    expect(syn?.entry, describePacket(syn)).toBe('prerouting');
    expect(syn?.hooks).not.toContain('forward'); // delivered locally, to docker-proxy (no ip6 rule met on the way)
    // no IPv6 NAT anywhere: no conntrack entry of the IPv6 leg was NATed
    expect(t.conntrack.filter((c) => c.orig.src === 'fd00:10::5' && c.status.includes('DST_NAT'))).toEqual([]);
    // docker-proxy's own IPv4 connection, from the gateway: the address web sees
    const proxied = firstPacket(t, web?.ip ?? '', 80);
    expect(proxied?.first?.saddr, describePacket(proxied)).toBe('172.17.0.1');
    expect(proxied?.entry).toBe('output');
  });

  it("docker-proxy's IPv4 leg of each proxied IPv6 probe: its explained path and NAT equal the kernel's", async () => {
    const i = get();
    const web = i.containers.find((c) => c.name === 'web');
    const ns = i.netns.host;
    const ruleset = rulesetFromDumps(await readRulesetDumps({ netns: ns }), `netns ${ns}`);
    const compiled = compileRuleset(ruleset, hostFromDumps(await readHostDumps({ netns: ns }), `netns ${ns}`));
    const proxied = ['ext-to-published6', 'ext2-to-published6', 'host-localhost6'];
    const bad: string[] = [];
    let compared = 0;
    for (const name of proxied) {
      const t = traces.get(name);
      if (!t) throw new Error(`${name} was not traced`);
      // the host (docker-proxy) connects from the bridge gateway to web:80
      const kc = kernelCase(
        `${name} (docker-proxy leg)`,
        t.packets,
        { proto: 'tcp', from: { addr: '172.17.0.1' }, to: { addr: web?.ip ?? '', port: 80 } },
        true,
        t.conntrack,
      );
      if (!kc) {
        bad.push(`${name}: no IPv4 packet from docker-proxy to web in the trace`);
        continue;
      }
      expect(kc.tuple.src).toBe('172.17.0.1');
      const ex = explainPacket(compiled, { tuple: kc.tuple, local: true });
      const cmp = compareSteps(ex, kc.steps, ruleset);
      compared++;
      if (!cmp.equal)
        bad.push(`${kc.name}:\n  simulated: ${cmp.simulated.join('\n             ')}\n  kernel:    ${cmp.kernel.join('\n             ')}`);
      if (kc.conntrackNat !== null && !natEqual(ex.nat, kc.conntrackNat))
        bad.push(`${kc.name}: nat explained ${JSON.stringify(ex.nat)} conntrack ${JSON.stringify(kc.conntrackNat)}`);
    }
    process.stdout.write(`lab-ipv6proxy: compared ${compared} docker-proxy IPv4 legs with nft monitor trace; ${bad.length} differences\n`);
    expect(bad).toEqual([]);
    expect(compared).toBe(proxied.length);
  });
});
