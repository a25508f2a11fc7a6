/**
 * Replay mode: a sample of moby's Docker 28 (iptables) and Docker 29 (nftables) golden rulesets,
 * both backends, each brought up without dockerd, exercised with real packets, traced, torn down.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { assertLabCanRun, labDown, labExec, labNames, labUp, leftovers, listProbes, runProbe, traceKernel, type LabInfo } from '../../lab/driver.js';
import { describePacket, firstPacket, iptablesRuleNumber, stepIn, labTestId } from './lab-helpers.js';

const ID = labTestId('a');
const corpus = process.env['JOURNEY_CORPUS'] ?? fileURLToPath(new URL('../../../shared/corpus/moby-golden', import.meta.url));

interface Case {
  readonly file: string;
  /** What the trace of the first probe must show. */
  readonly check?: (info: LabInfo) => Promise<void>;
}

const published = (info: LabInfo): string => {
  const p = listProbes('replay', info).find((x) => x.name.startsWith('ext-to-') || x.name.startsWith('localhost-'));
  if (!p) throw new Error('no published-port probe');
  return p.name;
};

const CASES: Case[] = [
  {
    // Docker 28, iptables, userland proxy on (docker-proxy answers the hairpin), gwm=nat
    file: 'iptables/hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden',
    check: async () => {
      const t = await traceKernel(ID, () => runProbe(ID, 'ext-to-tcp-8080'));
      const syn = firstPacket(t, '10.0.10.26', 8080);
      const dnat = stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept');
      expect(dnat?.rule, describePacket(syn)).toContain('dnat to 192.168.0.2:80');
      const save = (await labExec(ID, 'host', ['iptables-save'])).stdout;
      expect(dnat?.ruleNumber).toBe(iptablesRuleNumber(save, 'nat', 'DOCKER', /-j DNAT/));
      const acc = stepIn(syn, 'filter', 'DOCKER', (s) => s.verdict === 'accept');
      expect(acc?.hook).toBe('forward');
      expect(acc?.baseChain).toBe('FORWARD');
      // direct access is dropped in raw PREROUTING, before conntrack
      const t2 = await traceKernel(ID, () => runProbe(ID, 'ext-direct-c1-tcp-80'));
      const d = firstPacket(t2, '192.168.0.2', 80);
      const drop = d?.steps.find((s) => s.verdictKind === 'drop');
      expect(drop?.table, describePacket(d)).toBe('raw');
      expect(drop?.chain).toBe('PREROUTING');
      expect(drop?.ruleNumber).toBe(iptablesRuleNumber(save, 'raw', 'PREROUTING', /-d 192\.168\.0\.2\/32 ! -i br-dummy -j DROP/));
    },
  },
  { file: 'iptables/hairpin=true,internal=false,icc=false,masq=true,snat=true,gwm=nat,bindlh=true__iptables.golden' },
  { file: 'iptables/hairpin=true,internal=false,icc=true,masq=true,snat=true,gwm=routed,bindlh=false__iptables.golden' },
  { file: 'iptables/hairpin=false,internal=true,icc=false__iptables.golden' },
  // icc=false with hairpin NAT: a container's own published port is dropped (bridge to same bridge)
  { file: 'iptables/hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=routed,bindlh=false__iptables.golden' },
  {
    // Docker 29, nftables: table ip docker-bridges with verdict maps per bridge
    file: 'nftables/hairpin=false,internal=false,icc=true,masq=true,snat=true,gwm=nat,bindlh=false__ip.golden',
    check: async () => {
      const t = await traceKernel(ID, () => runProbe(ID, 'ext-to-tcp-8080'));
      const syn = firstPacket(t, '10.0.10.26', 8080);
      const dnat = stepIn(syn, 'docker-bridges', 'nat-prerouting-and-output', (s) => s.verdict === 'accept');
      expect(dnat?.rule, describePacket(syn)).toContain('dnat to 192.168.0.2:80');
      expect(dnat?.hook).toBe('prerouting');
      expect(dnat?.baseChain).toBe('nat-PREROUTING');
      expect(dnat?.ruleNumber).toBe(1);
      const vmap = stepIn(syn, 'docker-bridges', 'filter-FORWARD', (s) => s.verdictKind === 'jump');
      expect(vmap?.target).toBe('filter-forward-in__br-dummy');
      expect(vmap?.ruleNumber).toBe(1);
      const acc = stepIn(syn, 'docker-bridges', 'filter-forward-in__br-dummy', (s) => s.verdict === 'accept');
      expect(acc?.rule).toContain('ip daddr 192.168.0.2 tcp dport 80');
      expect(acc?.hook).toBe('forward');
      expect(acc?.ruleNumber).toBe(3);
    },
  },
  { file: 'nftables/hairpin=true,internal=false,icc=false,masq=true,snat=true,gwm=nat-unprotected,bindlh=true__ip.golden' },
  {
    file: 'nftables/hairpin=false,internal=true,icc=true__ip.golden',
    check: async () => {
      const t = await traceKernel(ID, () => runProbe(ID, 'c1-to-outside'));
      const syn = firstPacket(t, '198.51.100.10', 80);
      const drop = syn?.steps.find((s) => s.verdictKind === 'drop');
      expect(drop?.rule, describePacket(syn)).toContain('INTERNAL NETWORK EGRESS');
      expect(drop?.chain).toBe('filter-forward-out__br-dummy');
    },
  },
  { file: 'nftables/hairpin=true,internal=false,icc=true,masq=true,snat=true,gwm=routed,bindlh=true,wsl2mirrored=true__ip.golden' },
  // IPv6 goldens: the lab gets fd00:10::/64 on its uplink and 2001:db8:ff::10 outside
  {
    file: 'nftables/hairpin=true,internal=false,icc=true,masq=true,snat=true,gwm=nat,bindlh=false__ip6.golden',
    check: async () => {
      const t = await traceKernel(ID, () => runProbe(ID, 'ext-to-tcp-8080'));
      const syn = firstPacket(t, 'fd00:10::26', 8080);
      const dnat = stepIn(syn, 'docker-bridges', 'nat-prerouting-and-output', (s) => s.verdict === 'accept');
      expect(dnat?.family, describePacket(syn)).toBe('ip6');
      expect(dnat?.rule).toContain('dnat to [fd49:efd7:54aa::1]:80');
      expect(dnat?.hook).toBe('prerouting');
      expect(syn?.headers.find((h) => h.hook === 'forward')?.header.daddr).toBe('fd49:efd7:54aa::1');
      expect(t.conntrack.find((c) => c.orig.family === 6 && c.orig.dport === 8080)?.reply.src).toBe('fd49:efd7:54aa::1');
    },
  },
  { file: 'iptables/hairpin=false,internal=false,icc=true,masq=true,snat=true,gwm=nat-unprotected,bindlh=false__ip6tables.golden' },
];

describe('replay of moby golden rulesets', () => {
  beforeAll(async () => {
    await assertLabCanRun();
    await labDown(ID);
    expect(existsSync(corpus), `golden corpus missing at ${corpus}`).toBe(true);
  });
  afterAll(async () => {
    await labDown(ID);
  });

  for (const c of CASES) {
    it(`${c.file}: up, traffic, trace, down`, async () => {
      const info = await labUp({ id: ID, ruleset: `${corpus}/${c.file}` });
      try {
        expect(info.scenario).toBe('replay');
        expect(info.dockerHost).toBeNull();
        const v6 = c.file.includes('__ip6');
        expect(info.family ?? 4).toBe(v6 ? 6 : 4);
        expect(info.bridges.map((b) => b.name)).toEqual(['br-dummy']);
        expect(info.bridges[0]?.subnet).toBe(v6 ? 'fd49:efd7:54aa::/64' : '192.168.0.0/24');
        expect(info.containers.map((x) => x.ip)).toContain(v6 ? 'fd49:efd7:54aa::1' : '192.168.0.2');
        // the ruleset is really loaded
        const listing =
          info.rulesetFormat === 'nft'
            ? (await labExec(ID, 'host', ['nft', 'list', 'table', v6 ? 'ip6' : 'ip', 'docker-bridges'])).stdout
            : (await labExec(ID, 'host', [v6 ? 'ip6tables-save' : 'iptables-save'])).stdout;
        expect(listing).toContain('br-dummy');
        const bad: string[] = [];
        for (const p of listProbes('replay', info)) {
          const t = await traceKernel(ID, () => runProbe(ID, p.name));
          const r = t.actionResult;
          if (!r) {
            bad.push(`${p.name}: ${t.actionError ?? 'no result'}`);
            continue;
          }
          if (!r.asExpected) bad.push(`${p.name}: expected ${p.expect}, got ${r.outcome} (${r.output.slice(0, 100)})`);
          const mine = t.packets.filter((x) => x.first?.daddr === r.to.addr && x.first?.dport === r.to.port);
          if (!mine.some((x) => x.steps.length > 0)) bad.push(`${p.name}: no traced path to ${r.to.addr}:${r.to.port}`);
          // (::1 DNATed out of the host is dropped by routing, after the rules: no drop in the trace)
          if (r.outcome === 'timeout' && r.to.addr !== '::1' && !mine.some((x) => x.dropped))
            bad.push(`${p.name}: timed out but the trace shows no drop`);
          if (t.skipped.length) bad.push(`${p.name}: ${t.skipped.length} unreadable trace lines`);
        }
        expect(bad).toEqual([]);
        if (info.bridges[0]?.internal !== true) expect(published(info)).toMatch(/^(ext-to|localhost)-tcp-8080$/);
        await c.check?.(info);
      } finally {
        await labDown(ID);
      }
      expect(await leftovers(labNames(ID))).toEqual([]);
    });
  }
});
