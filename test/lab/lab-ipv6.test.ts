/**
 * The dual-stack lab scenario `ipv6` (dockerd 20.10 with --ipv6, fixed-cidr-v6 fd00:17::/64 and
 * ip6tables, experimental): every IPv6 probe behaves as the real engine does, the kernel's trace
 * (an inet trace table) shows the ip6 path Docker made, and `explainPacket` on the live ruleset
 * (ip6tables-save, the host's IPv6 addresses and routes) computes the same steps as the kernel and
 * the same NAT as conntrack. One lab (id "6a") for the whole file; fails (never skips) when the lab
 * cannot run.
 */
import { describe, expect, it } from 'vitest';
import { labExec, listProbes, type LabInfo } from '../../lab/driver.js';
import type { KernelTrace } from '../../src/netfilter/kernel-trace.js';
import { compareProbesWithKernel } from './ipv6-helpers.js';
import { describePacket, firstPacket, iptablesRuleNumber, labTestId, stepIn, useLab } from './lab-helpers.js';

const ID = labTestId('6a');

const info = useLab(ID, 'ipv6', { leftovers: true });
const get = (): LabInfo => info;
/** The kernel's trace of each IPv6 probe, recorded once by the comparison below. */
const traces = new Map<string, KernelTrace>();

const ip6Save = async (): Promise<string> => (await labExec(ID, 'host', ['ip6tables-save'])).stdout;

function traceOf(name: string): KernelTrace {
  const t = traces.get(name);
  if (!t) throw new Error(`probe ${name} was not traced`);
  return t;
}

describe('scenario ipv6 (dockerd with IPv6 and ip6tables)', () => {
  it('is dual-stack: the uplink and the containers have IPv6, dockerd wrote ip6tables rules', async () => {
    const i = get();
    expect(i.v6?.hostAddr).toBe('fd00:10::26');
    const docker0 = i.bridges.find((b) => b.name === 'docker0');
    expect(docker0?.subnet6).toBe('fd00:17::/64');
    expect(docker0?.gateway6).toBe('fd00:17::1');
    for (const c of i.containers) expect(c.ip6).toMatch(/^fd00:17::/);
    const save = await ip6Save();
    expect(save).toMatch(/-A DOCKER -p tcp -m tcp --dport 8000 -j DNAT --to-destination \[fd00:17::[0-9a-f:]+\]:80/);
    expect(save).toContain('-A POSTROUTING -s fd00:17::/64 ! -o docker0 -j MASQUERADE');
  });

  it("every IPv6 probe behaves as the engine does, and its explained path equals the kernel's trace", async () => {
    const i = get();
    const probes = listProbes('ipv6', i).filter((p) => p.family === 6);
    expect(probes.length).toBeGreaterThanOrEqual(14);
    const { ruleset, host, bad, first, later, nat } = await compareProbesWithKernel(ID, i, probes, traces);
    expect(host.interfaces.get('eth0')?.addrs.some((a) => a.family === 6 && a.local === 'fd00:10::26')).toBe(true);
    expect(host.routes.some((r) => r.gateway === 'fd00:10::5')).toBe(true);
    expect(ruleset.tables.some((t) => t.family === 'ip6' && t.name === 'nat')).toBe(true);
    process.stdout.write(
      `lab-ipv6: ${probes.length} IPv6 probes; compared ${first} first packets and ${later} later packets (established) with nft monitor trace, NAT with ${nat} conntrack entries; ${bad.length} differences\n`,
    );
    expect(bad).toEqual([]);
    expect(first).toBe(probes.length);
  }, 240_000);

  it('trace: ext -> [fd00:10::26]:8000 is DNATed in ip6 nat DOCKER and accepted by ip6 filter DOCKER', async () => {
    const web = get().containers.find((c) => c.name === 'web');
    const t = traceOf('ext-to-published6');
    const syn = firstPacket(t, 'fd00:10::26', 8000);
    const dnat = stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept');
    expect(dnat?.family, describePacket(syn)).toBe('ip6');
    expect(dnat?.hook).toBe('prerouting');
    expect(dnat?.ruleNumber).toBe(iptablesRuleNumber(await ip6Save(), 'nat', 'DOCKER', /-j DNAT/));
    const acc = stepIn(syn, 'filter', 'DOCKER', (s) => s.verdict === 'accept');
    expect(acc?.family).toBe('ip6');
    expect(acc?.hook).toBe('forward');
    const ct = t.conntrack.find((c) => c.orig.dport === 8000 && c.orig.src === 'fd00:10::5');
    expect(ct?.reply.src).toBe(web?.ip6);
    expect(ct?.status).toContain('DST_NAT');
  });

  it('trace: container -> [2001:db8:ff::10] is MASQUERADEd to fd00:10::26 (NAT66)', async () => {
    const t = traceOf('container-to-outside6');
    const syn = firstPacket(t, '2001:db8:ff::10', 80);
    const masq = stepIn(syn, 'nat', 'POSTROUTING', (s) => s.verdict === 'accept');
    expect(masq?.family, describePacket(syn)).toBe('ip6');
    expect(masq?.ruleNumber).toBe(iptablesRuleNumber(await ip6Save(), 'nat', 'POSTROUTING', /-s fd00:17::\/64 ! -o docker0 -j MASQUERADE/));
    expect(t.conntrack.find((c) => c.orig.dst === '2001:db8:ff::10' && c.orig.proto === 'tcp')?.reply.dst).toBe('fd00:10::26');
  });

  it('trace: IPv6 hairpin is DNATed with no SNAT; self-hairpin is MASQUERADEd to the IPv6 gateway', () => {
    const client = get().containers.find((c) => c.name === 'client');
    const web = get().containers.find((c) => c.name === 'web');
    const ct = traceOf('hairpin6').conntrack.find((c) => c.orig.src === client?.ip6 && c.orig.dport === 8000);
    expect(ct?.status).toContain('DST_NAT');
    expect(ct?.status).not.toContain('SRC_NAT');
    const ct2 = traceOf('self-hairpin6').conntrack.find((c) => c.orig.src === web?.ip6 && c.orig.dport === 8000);
    expect(ct2?.reply.dst).toBe('fd00:17::1');
    expect(ct2?.status).toEqual(expect.arrayContaining(['DST_NAT', 'SRC_NAT']));
  });

  it('trace: direct access to an unpublished IPv6 port ends at the ip6 filter FORWARD policy DROP', () => {
    const web = get().containers.find((c) => c.name === 'web');
    const syn = firstPacket(traceOf('direct-unpublished6'), web?.ip6 ?? '', 81);
    expect(syn?.dropped, describePacket(syn)).toBe(true);
    const drop = syn?.steps.find((s) => s.verdictKind === 'drop' || s.verdict === 'policy drop');
    expect(drop?.family).toBe('ip6');
    expect(drop?.chain).toBe('FORWARD');
    expect(drop?.kind).toBe('policy');
  });

  it("trace: ext2's IPv6 SYN is DNATed, then dropped by the user's rule in ip6 filter DOCKER-USER", async () => {
    const syn = firstPacket(traceOf('ext2-to-published6'), 'fd00:10::26', 8000);
    expect(syn?.dropped, describePacket(syn)).toBe(true);
    const drop = syn?.steps.find((s) => s.verdictKind === 'drop');
    expect(drop?.family).toBe('ip6');
    expect(drop?.table).toBe('filter');
    expect(drop?.chain).toBe('DOCKER-USER');
    expect(drop?.hook).toBe('forward');
    expect(drop?.ruleNumber).toBe(iptablesRuleNumber(await ip6Save(), 'filter', 'DOCKER-USER', /-s fd00:10::6\/128 -j DROP/));
    expect(stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept')?.family).toBe('ip6');
  });
});
