/**
 * Every scenario of the lab, with a real dockerd: up -> every probe behaves as the real engine
 * does -> the kernel's trace shows why (the chains Docker made, the rule numbers iptables gives
 * them) -> down leaves nothing behind. Lab id "a". One dockerd per scenario.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labExec, labNames, labUp, leftovers, listProbes, runProbe, traceKernel, type LabInfo } from '../../lab/driver.js';
import type { KernelTrace } from '../../src/netfilter/kernel-trace.js';
import { chainsOf, describePacket, firstPacket, iptablesRuleNumber, stepIn, labTestId } from './lab-helpers.js';

const ID = labTestId('a');

async function iptablesSave(): Promise<string> {
  return (await labExec(ID, 'host', ['iptables-save'])).stdout;
}

async function traceProbe(name: string): Promise<KernelTrace> {
  const t = await traceKernel(ID, async () => {
    const r = await runProbe(ID, name);
    expect(r.asExpected, `${name}: ${r.outcome} ${r.output}`).toBe(true);
    return r;
  });
  expect(t.skipped, JSON.stringify(t.skipped.slice(0, 3))).toEqual([]);
  return t;
}

/** up, probes, down: the common part of each scenario. */
function scenario(name: string, checks: (get: () => LabInfo) => void): void {
  describe(`scenario ${name}`, () => {
    let info: LabInfo | undefined;
    beforeAll(async () => {
      await assertLabCanRun();
      await labDown(ID); // a previous run may have crashed
      info = await labUp({ id: ID, scenario: name });
    });
    afterAll(async () => {
      await labDown(ID);
      expect(await leftovers(labNames(ID))).toEqual([]);
    });
    const get = (): LabInfo => {
      if (!info) throw new Error('lab is not up');
      return info;
    };

    it('describes what it built', () => {
      const i = get();
      expect(i.scenario).toBe(name);
      expect(i.netns).toEqual({ host: `jl-${ID}-host`, ext: `jl-${ID}-ext`, ext2: `jl-${ID}-ext2` });
      expect(i.dockerHost).toBe(`/tmp/jl-${ID}-lab/docker.sock`);
      expect(i.containers.length).toBeGreaterThan(0);
      for (const c of i.containers) {
        expect(c.pid).toBeGreaterThan(0);
        expect(c.ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
        expect(i.bridges.map((b) => b.name)).toContain(c.bridge);
      }
    });

    it('every probe behaves as the real engine does, and the kernel trace shows its path', async () => {
      const bad: string[] = [];
      for (const p of listProbes(name, get())) {
        const t = await traceKernel(ID, () => runProbe(ID, p.name));
        const r = t.actionResult;
        if (!r) {
          bad.push(`${p.name}: ${t.actionError ?? 'no result'}`);
          continue;
        }
        if (!r.asExpected) bad.push(`${p.name}: expected ${p.expect}, got ${r.outcome} (${r.output.slice(0, 120)})`);
        // the probe's own packets are in the trace, with their path through the rules
        const mine = t.packets.filter((x) => x.first?.daddr === r.to.addr && (r.to.port === undefined || x.first?.dport === r.to.port));
        if (mine.length === 0) bad.push(`${p.name}: no packet to ${r.to.addr}:${r.to.port ?? ''} in the trace`);
        else if (!mine.some((x) => x.steps.length > 0)) bad.push(`${p.name}: its packets met no rule`);
        // silence over TCP or ICMP is a drop, and the trace says where
        if (r.outcome === 'timeout' && p.proto !== 'udp' && !mine.some((x) => x.dropped))
          bad.push(`${p.name}: timed out but no packet was dropped in the trace`);
        if (r.answered && mine.some((x) => x.first?.proto === 'tcp' && x.first?.tcpFlags === 'syn' && x.dropped))
          bad.push(`${p.name}: answered but its SYN was dropped`);
        if (t.skipped.length) bad.push(`${p.name}: ${t.skipped.length} unreadable trace lines`);
      }
      expect(bad).toEqual([]);
    });

    checks(get);
  });
}

scenario('default', (get) => {
  it('trace: ext -> published port is DNATed in nat DOCKER and accepted by filter DOCKER', async () => {
    const web = get().containers.find((c) => c.name === 'web');
    const t = await traceProbe('ext-to-published');
    const syn = firstPacket(t, '10.0.10.26', 8000);
    const dnat = stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept');
    expect(dnat?.rule, describePacket(syn)).toContain(`dnat to ${web?.ip}:80`);
    expect(dnat?.hook).toBe('prerouting');
    expect(dnat?.baseChain).toBe('PREROUTING');
    expect(dnat?.ruleNumber).toBe(iptablesRuleNumber(await iptablesSave(), 'nat', 'DOCKER', /-j DNAT/));
    const acc = stepIn(syn, 'filter', 'DOCKER', (s) => s.verdict === 'accept');
    expect(acc?.hook).toBe('forward');
    expect(acc?.ruleNumber).toBe(iptablesRuleNumber(await iptablesSave(), 'filter', 'DOCKER', /--dport 80 -j ACCEPT/));
    expect(syn?.hooks).toEqual(['prerouting', 'forward', 'postrouting']);
    // the header at the forward hook shows the DNAT
    expect(syn?.headers.find((h) => h.hook === 'forward')?.header.daddr).toBe(web?.ip);
    const ct = t.conntrack.find((c) => c.orig.dport === 8000 && c.orig.src === '10.0.10.5');
    expect(ct?.reply.src).toBe(web?.ip);
    expect(ct?.status).toContain('DST_NAT');
  });

  it('trace: hairpin with the userland proxy: nat DOCKER returns for docker0, docker-proxy connects from the gateway', async () => {
    const t = await traceProbe('hairpin');
    const syn = firstPacket(t, '10.0.10.26', 8000);
    expect(stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'return')?.rule, describePacket(syn)).toContain('iifname "docker0"');
    expect(syn?.hooks).not.toContain('forward'); // delivered locally, to docker-proxy
    // docker-proxy's own connection to web:80 leaves through OUTPUT
    const web = get().containers.find((c) => c.name === 'web');
    const proxied = firstPacket(t, web?.ip ?? '', 80);
    expect(proxied?.first?.saddr).toBe('172.17.0.1');
    expect(proxied?.entry).toBe('output');
    expect(t.conntrack.some((c) => c.orig.dst === '10.0.10.26' && c.orig.dport === 8000 && !c.status.includes('DST_NAT'))).toBe(true);
  });

  it('trace: container -> outside is MASQUERADEd in nat POSTROUTING', async () => {
    const t = await traceProbe('container-to-outside');
    const syn = firstPacket(t, '198.51.100.10', 80);
    const masq = stepIn(syn, 'nat', 'POSTROUTING', (s) => /masquerade/.test(s.rule ?? ''));
    expect(masq?.hook, describePacket(syn)).toBe('postrouting');
    expect(masq?.ruleNumber).toBe(iptablesRuleNumber(await iptablesSave(), 'nat', 'POSTROUTING', /-s 172\.17\.0\.0\/16 ! -o docker0 -j MASQUERADE/));
    expect(chainsOf(syn)).toContain('filter DOCKER-ISOLATION-STAGE-2');
    expect(t.conntrack.find((c) => c.orig.dst === '198.51.100.10' && c.orig.proto === 'tcp')?.reply.dst).toBe('10.0.10.26');
  });
});

scenario('noproxy', (get) => {
  it('trace: hairpin is DNATed with no RETURN for docker0, and not SNATed', async () => {
    const web = get().containers.find((c) => c.name === 'web');
    const client = get().containers.find((c) => c.name === 'client');
    const t = await traceProbe('hairpin');
    const syn = firstPacket(t, '10.0.10.26', 8000);
    expect(
      stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'return'),
      describePacket(syn),
    ).toBeUndefined();
    expect(stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept')?.rule).toContain(`dnat to ${web?.ip}:80`);
    const ct = t.conntrack.find((c) => c.orig.src === client?.ip && c.orig.dport === 8000);
    expect(ct?.status).toContain('DST_NAT');
    expect(ct?.status).not.toContain('SRC_NAT');
  });

  it('trace: self-hairpin is DNATed and MASQUERADEd to the gateway', async () => {
    const web = get().containers.find((c) => c.name === 'web');
    const t = await traceProbe('self-hairpin');
    const syn = firstPacket(t, '10.0.10.26', 8000);
    const masq = stepIn(syn, 'nat', 'POSTROUTING', (s) => /masquerade/.test(s.rule ?? ''));
    expect(masq, describePacket(syn)).toBeDefined();
    expect(masq?.ruleNumber).toBe(
      iptablesRuleNumber(await iptablesSave(), 'nat', 'POSTROUTING', new RegExp(`-s ${web?.ip}/32 -d ${web?.ip}/32 .*MASQUERADE`)),
    );
    const ct = t.conntrack.find((c) => c.orig.src === web?.ip && c.orig.dport === 8000);
    expect(ct?.reply.dst).toBe('172.17.0.1');
    expect(ct?.status).toEqual(expect.arrayContaining(['DST_NAT', 'SRC_NAT']));
  });

  it('trace: host -> 127.0.0.1 is DNATed in nat OUTPUT', async () => {
    const t = await traceProbe('host-localhost');
    const syn = firstPacket(t, '127.0.0.1', 8000);
    const dnat = stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept');
    expect(dnat?.hook, describePacket(syn)).toBe('output');
    expect(dnat?.baseChain).toBe('OUTPUT');
  });
});

scenario('docker1', (get) => {
  it('has the seed 003 network: docker1 172.20.0.0/24 with TCP 8080 and UDP 1812/514 published', () => {
    const i = get();
    expect(i.bridges.find((b) => b.name === 'docker1')?.subnet).toBe('172.20.0.0/24');
    const pubs = i.containers.flatMap((c) => c.published.map((p) => `${p.hostPort}/${p.proto}`)).sort();
    expect(pubs).toEqual(['1812/udp', '514/udp', '8080/tcp']);
    expect(i.daemon.userlandProxy).toBe(false);
  });

  it('trace: UDP to 1812 is DNATed to radius', async () => {
    const t = await traceProbe('ext-udp-radius');
    const p = firstPacket(t, '10.0.10.26', 1812);
    const dnat = stepIn(p, 'nat', 'DOCKER', (s) => s.verdict === 'accept');
    expect(dnat?.rule, describePacket(p)).toContain('dnat to 172.20.0.4:1812');
    expect(dnat?.ruleNumber).toBe(iptablesRuleNumber(await iptablesSave(), 'nat', 'DOCKER', /--dport 1812 -j DNAT/));
    expect(t.conntrack.find((c) => c.orig.proto === 'udp' && c.orig.dport === 1812 && c.orig.src === '10.0.10.5')?.reply.src).toBe('172.20.0.4');
  });
});

scenario('hostip', () => {
  it('trace: the DNAT rule is bound to 10.0.10.26', async () => {
    const t = await traceProbe('ext-to-published');
    const syn = firstPacket(t, '10.0.10.26', 81);
    expect(stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept')?.rule, describePacket(syn)).toMatch(
      /ip daddr 10\.0\.10\.26 .*dnat to 172\.17\.0\.\d+:80/,
    );
  });

  it('trace: the host answers pings itself, the outside is pinged through MASQUERADE', async () => {
    const t1 = await traceProbe('ping-host');
    const req = firstPacket(t1, '10.0.10.26');
    expect(req?.first?.icmpType, describePacket(req)).toBe('echo-request');
    expect(req?.hooks).not.toContain('forward'); // delivered locally (filter INPUT is empty: no trace there)
    expect(stepIn(req, 'nat', 'DOCKER', (s) => s.verdict === 'return')).toBeDefined();
    const reply = t1.packets.find((p) => p.entry === 'output' && p.first?.icmpType === 'echo-reply');
    expect(reply?.first?.saddr).toBe('10.0.10.26');
    const t2 = await traceProbe('container-ping-outside');
    const p = firstPacket(t2, '198.51.100.10');
    expect(p?.first?.proto).toBe('icmp');
    expect(
      stepIn(p, 'nat', 'POSTROUTING', (s) => /masquerade/.test(s.rule ?? '')),
      describePacket(p),
    ).toBeDefined();
  });
});

scenario('internal', (get) => {
  it('trace: an internal container is dropped on its way out', async () => {
    const br = get().bridges.find((b) => b.internal);
    expect(br).toBeDefined();
    const t = await traceProbe('internal-to-outside');
    const syn = firstPacket(t, '198.51.100.10', 80);
    expect(syn?.dropped, describePacket(syn)).toBe(true);
    const drop = syn?.steps.find((s) => s.verdictKind === 'drop');
    expect(drop?.chain).toBe('DOCKER-ISOLATION-STAGE-1');
    expect(drop?.hook).toBe('forward');
    expect(drop?.rule).toContain(`iifname "${br?.name}"`);
    expect(drop?.ruleNumber).toBe(
      iptablesRuleNumber(await iptablesSave(), 'filter', 'DOCKER-ISOLATION-STAGE-1', new RegExp(`-i ${br?.name} -j DROP`)),
    );
  });
});

scenario('noicc', () => {
  it('trace: container -> container on docker0 is dropped by filter FORWARD (icc=false)', async () => {
    const t = await traceProbe('container-to-container');
    const syn = t.packets.find((p) => p.first?.dport === 80 && p.first?.tcpFlags === 'syn' && p.first?.iif === 'docker0');
    expect(syn?.dropped, describePacket(syn)).toBe(true);
    const drop = syn?.steps.find((s) => s.verdictKind === 'drop');
    expect(drop?.table).toBe('filter');
    expect(drop?.chain).toBe('FORWARD');
    expect(drop?.ruleNumber).toBe(iptablesRuleNumber(await iptablesSave(), 'filter', 'FORWARD', /-i docker0 -o docker0 -j DROP/));
  });
});

scenario('multi', (get) => {
  it('trace: cross-network traffic is dropped in filter DOCKER-ISOLATION-STAGE-2', async () => {
    const aweb = get().containers.find((c) => c.name === 'aweb');
    const t = await traceProbe('cross-network');
    const syn = firstPacket(t, aweb?.ip ?? '', 80);
    expect(syn?.dropped, describePacket(syn)).toBe(true);
    const drop = syn?.steps.find((s) => s.verdictKind === 'drop');
    expect(drop?.table).toBe('filter');
    expect(drop?.chain).toBe('DOCKER-ISOLATION-STAGE-2');
    expect(drop?.hook).toBe('forward');
    expect(drop?.baseChain).toBe('FORWARD');
    expect(drop?.rule).toContain('oifname "br-neta"');
    expect(drop?.ruleNumber).toBe(iptablesRuleNumber(await iptablesSave(), 'filter', 'DOCKER-ISOLATION-STAGE-2', /-o br-neta -j DROP/));
    // the path: FORWARD -> DOCKER-USER -> FORWARD -> STAGE-1 (jump) -> STAGE-2 (drop)
    expect(chainsOf(syn).filter((c) => c.startsWith('filter '))).toEqual([
      'filter FORWARD',
      'filter DOCKER-USER',
      'filter FORWARD',
      'filter DOCKER-ISOLATION-STAGE-1',
      'filter DOCKER-ISOLATION-STAGE-2',
    ]);
  });

  it('trace: a published port of another network is DNATed, then isolated', async () => {
    const t = await traceProbe('cross-network-published');
    const syn = firstPacket(t, '10.0.10.26', 8001);
    expect(stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept')?.rule, describePacket(syn)).toContain('dnat to 172.22.0.2:80');
    expect(syn?.steps.find((s) => s.verdictKind === 'drop')?.chain).toBe('DOCKER-ISOLATION-STAGE-2');
  });
});

scenario('firewalld', (get) => {
  it('runs firewalld beside dockerd: table inet firewalld and the docker zone', async () => {
    expect(get().firewalld).toBe(true);
    const tables = (await labExec(ID, 'host', ['nft', 'list', 'tables'])).stdout;
    expect(tables).toContain('table inet firewalld');
    expect(tables).toContain('table ip nat');
  });

  it('trace: a published port crosses firewalld chains and Docker DNAT', async () => {
    const t = await traceProbe('ext-to-published');
    const syn = firstPacket(t, '10.0.10.26', 8000);
    const fw = syn?.steps.filter((s) => s.family === 'inet' && s.table === 'firewalld') ?? [];
    expect(fw.length, describePacket(syn)).toBeGreaterThan(0);
    expect(fw.every((s) => s.hook !== null && s.baseChain !== null)).toBe(true);
    expect(stepIn(syn, 'nat', 'DOCKER', (s) => s.verdict === 'accept')?.rule).toContain('dnat to 172.17.0.2:80');
    expect(syn?.dropped).toBe(false);
  });

  it('trace: direct access from outside is rejected by firewalld', async () => {
    const t = await traceProbe('direct-access');
    const syn = firstPacket(t, '172.17.0.2', 80);
    expect(syn?.dropped, describePacket(syn)).toBe(true);
    const drop = syn?.steps.find((s) => s.verdictKind === 'drop');
    expect(drop?.table).toBe('firewalld');
    expect(drop?.hook).toBe('forward');
  });
});
