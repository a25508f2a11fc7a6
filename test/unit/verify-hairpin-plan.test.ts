/**
 * Unit tests of `journey verify hairpin` without root or network, part 1: the facts read from
 * rulesets (Docker 20.10 as recorded in the lab, moby's Docker 28 iptables and Docker 29 nftables
 * goldens), the host facts, and the checks and expectations planned per host configuration.
 * Part 2 (verify-hairpin.test.ts): causes, the probe client, evidence and the report.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildHostFacts, type HostFacts } from '../../src/verify/host-facts.js';
import { inCidr, masqFor } from '../../src/verify/docker-rules.js';
import { tokenize } from '../../src/ruleset/iptables-save.js';
import { emptyRuleset } from '../../src/ruleset/model.js';
import { planChecks, generationOf } from '../../src/verify/plan.js';
import { peerIsInTarget, type Endpoint } from '../../src/verify/endpoints.js';
import {
  FIX,
  golden,
  G28_PROXY_OFF,
  G28_PROXY_ON,
  G28_BINDLH,
  G29_PROXY_OFF,
  G29_NOICC,
  iptablesFacts,
  nftFacts,
  nftGolden,
  sysctl,
  multiHost,
  ENDPOINTS,
  inventory,
  find,
} from './verify-hairpin-fixtures.js';

describe('ruleset facts', () => {
  it('reads Docker 20.10 with the userland proxy off (recorded in the lab)', () => {
    const f = iptablesFacts(readFileSync(join(FIX, 'iptables-save.txt'), 'utf8'));
    expect(f.dnat.map((d) => [d.hostPort, d.containerIp, d.containerPort, d.notFromIface])).toEqual(
      expect.arrayContaining([
        [8000, '172.17.0.2', 80, null],
        [8001, '172.22.0.2', 80, null],
      ]),
    );
    expect(f.natReturnIfaces).toEqual([]);
    expect(f.outputNatsLoopback).toBe(true);
    expect(f.isolatedBridges.sort()).toEqual(['br-neta', 'br-netb', 'docker0']);
    expect(f.masq.find((m) => m.src === '172.17.0.2' && m.dst === '172.17.0.2')?.dport).toBe(80);
    expect(
      f.masq
        .filter((m) => m.srcLocal)
        .map((m) => m.outIface)
        .sort(),
    ).toEqual(['br-neta', 'br-netb', 'docker0']);
  });

  it('reads a Docker 28 golden: proxy on skips the bridge with `! -i`, OUTPUT excludes loopback, raw DROP', () => {
    const on = iptablesFacts(golden('iptables', G28_PROXY_ON));
    expect(on.dnat).toHaveLength(1);
    expect(on.dnat[0]).toMatchObject({ hostPort: 8080, containerIp: '192.168.0.2', containerPort: 80, notFromIface: 'br-dummy', hostIp: null });
    expect(on.outputNatsLoopback).toBe(false);
    expect(on.rawDrops[0]?.raw).toBe('-A PREROUTING -d 192.168.0.2/32 ! -i br-dummy -j DROP');
    const off = iptablesFacts(golden('iptables', G28_PROXY_OFF));
    expect(off.dnat[0]?.notFromIface).toBeNull();
    expect(off.outputNatsLoopback).toBe(true);
    expect(masqFor(off, { src: '192.168.0.2', dst: '192.168.0.2', proto: 'tcp', dport: 80, oif: 'br-dummy', srcIsLocal: false })?.raw).toBe(
      '-A POSTROUTING -s 192.168.0.2/32 -d 192.168.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE',
    );
    const lh = iptablesFacts(golden('iptables', G28_BINDLH));
    expect(lh.dnat[0]?.hostIp).toBe('127.0.0.1');
    expect(lh.iccDisabledBridges).toEqual(['br-dummy']);
  });

  it('reads a Docker 29 nftables golden (table ip docker-bridges)', () => {
    const f = nftFacts(nftGolden('nftables', G29_PROXY_OFF));
    expect(f.backends).toEqual(['nftables']);
    expect(f.dnat[0]).toMatchObject({
      backend: 'nftables',
      proto: 'tcp',
      hostPort: 8080,
      containerIp: '192.168.0.2',
      containerPort: 80,
      notFromIface: null,
    });
    const own = masqFor(f, { src: '192.168.0.2', dst: '192.168.0.2', proto: 'tcp', dport: 80, oif: 'br-dummy', srcIsLocal: false });
    expect(own?.raw).toMatch(/MASQ TO OWN PORT/);
    const fromHost = masqFor(f, { src: '127.0.0.1', dst: '192.168.0.2', proto: 'tcp', dport: 80, oif: 'br-dummy', srcIsLocal: true });
    expect(fromHost?.raw).toMatch(/MASQUERADE FROM HOST/);
    expect(f.outputNatsLoopback).toBe(true);
    expect(f.rawDrops).toHaveLength(1);
    expect(nftFacts(nftGolden('nftables', G29_NOICC)).iccDisabledBridges).toEqual(['br-dummy']);
    expect(nftFacts(nftGolden('nftables', 'hairpin=true,internal=true,icc=true__ip.golden')).internalBridges).toEqual(['br-dummy']);
    expect(iptablesFacts(golden('iptables', 'hairpin=true,internal=true,icc=true,wsl2mirrored=true__iptables.golden')).internalBridges).toEqual([
      'br-dummy',
    ]);
  });

  it('tokenizes quoted comments and matches CIDRs', () => {
    expect(tokenize('-A X -m comment --comment "a b" -j DROP')).toEqual(['-A', 'X', '-m', 'comment', '--comment', 'a b', '-j', 'DROP']);
    expect(inCidr('172.17.0.3', '172.17.0.0/16')).toBe(true);
    expect(inCidr('172.18.0.3', '172.17.0.0/16')).toBe(false);
    expect(inCidr('10.0.0.1', '0.0.0.0/0')).toBe(true);
    expect(inCidr('not-an-ip', '10.0.0.0/8')).toBe(false);
  });
});

describe('host facts and plan', () => {
  it('reads bridges, ports with hairpin_mode, route_localnet and the host address', () => {
    const h = multiHost({ hairpinOff: 'vethd12539f' });
    expect(h.bridges.map((b) => b.name).sort()).toEqual(['br-neta', 'br-netb', 'docker0']);
    const d0 = h.bridges.find((b) => b.name === 'docker0');
    expect(d0?.addrs[0]).toEqual({ addr: '172.17.0.1', prefixlen: 16 });
    expect(d0?.ports.find((p) => p.ifname === 'vethd12539f')?.hairpin).toBe(false);
    expect(d0?.routeLocalnet).toBe(true);
    expect(h.hostAddrs[0]).toEqual({ addr: '10.0.10.26', iface: 'eth0' });
    expect(h.bridgeNfCallIptables).toBe(true);
    expect(generationOf(h)).toBe('docker<28');
  });

  it('reads ports and hairpin_mode from `ip -d link` when the bridge tool gave nothing', () => {
    const h = buildHostFacts({
      netns: null,
      netnsInode: null,
      ipLinkJson: readFileSync(join(FIX, 'ip-link.json'), 'utf8'),
      ipAddrJson: readFileSync(join(FIX, 'ip-addr.json'), 'utf8'),
      bridgeLinkJson: '[]',
      sysctl: sysctl(),
      rules: emptyRuleset(),
      dockerProxies: [],
    });
    const d0 = h.bridges.find((b) => b.name === 'docker0');
    expect(d0?.ports.map((p) => [p.ifname, p.hairpin]).sort()).toEqual([
      ['veth63ddaa2', true],
      ['vethd12539f', true],
    ]);
  });

  it('keeps only endpoints whose veth peer is in the target namespace', () => {
    const names = new Map([[0, 'jl-f-host']]);
    expect(peerIsInTarget(0, names, 'jl-f-host')).toBe(true);
    expect(peerIsInTarget(0, new Map([[0, 'jl-d-host']]), 'jl-f-host')).toBe(false); // another lab, same addresses
    expect(peerIsInTarget(1, names, null)).toBe(true); // both unnamed (the root namespace)
    expect(peerIsInTarget(0, names, null)).toBe(false);
    expect(peerIsInTarget(undefined, names, 'jl-f-host')).toBe(true);
  });

  it('plans every path for each published port, with expectations for the proxy-off host', () => {
    const h = multiHost();
    const plan = planChecks(h, inventory(h));
    // 8000 (web, docker0): same-bridge from client, self, cross from neta and netb, host x2
    expect(
      plan
        .filter((c) => c.dstPort === 8000)
        .map((c) => c.kind)
        .sort(),
    ).toEqual(['cross-bridge', 'cross-bridge', 'host-address', 'host-loopback', 'same-bridge', 'self']);
    const same = find(plan, 'same-bridge', 8000, 'client');
    expect(same.expected).toMatchObject({ outcome: 'connect', via: 'dnat', dnatTo: '172.17.0.2:80', targetSeesSource: '172.17.0.3' });
    expect(same.dstIp).toBe('10.0.10.26');
    const self = find(plan, 'self', 8000);
    expect(self.expected).toMatchObject({ via: 'dnat', targetSeesSource: '172.17.0.1' });
    expect(self.expected?.requires.join(' ')).toMatch(/hairpin_mode on vethd12539f \(port of web\)/);
    const cross = find(plan, 'cross-bridge', 8000, 'bcli');
    expect(cross.expected?.outcome).toBe('blocked');
    expect(cross.expected?.blockedBy).toMatch(/DOCKER-ISOLATION-STAGE-2/);
    const lo = find(plan, 'host-loopback', 8000);
    expect(lo.dstIp).toBe('127.0.0.1');
    expect(lo.expected).toMatchObject({ via: 'dnat', targetSeesSource: '172.17.0.1' });
    // 8001 (aweb, alone on br-neta): no same-bridge caller
    expect(find(plan, 'same-bridge', 8001).skipReason).toMatch(/no other container on br-neta/);
  });

  it('expects docker-proxy when Docker 20.10 returns traffic from the bridges (proxy on)', () => {
    const text = readFileSync(join(FIX, 'iptables-save.txt'), 'utf8')
      .replace('-A DOCKER -p tcp', '-A DOCKER -i docker0 -j RETURN\n-A DOCKER -i br-netb -j RETURN\n-A DOCKER ! -i docker0 -p tcp')
      .replace('-A OUTPUT -m addrtype', '-A OUTPUT ! -d 127.0.0.0/8 -m addrtype')
      .replace(/^-A POSTROUTING -o \S+ -m addrtype --src-type LOCAL -j MASQUERADE$/gm, ''); // not installed with the proxy on
    const h = {
      ...multiHost({ iptables: text }),
      dockerProxies: [{ pid: 42, proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8000, containerIp: '172.17.0.2', containerPort: 80 }],
    };
    const plan = planChecks(h, inventory(h), { ports: ['8000'] });
    for (const k of ['same-bridge', 'self', 'host-loopback']) {
      expect(find(plan, k, 8000).expected).toMatchObject({ via: 'docker-proxy', targetSeesSource: '172.17.0.1' });
    }
    expect(find(plan, 'cross-bridge', 8000, 'bcli').expected?.via).toBe('docker-proxy');
    expect(find(plan, 'host-address', 8000).expected).toMatchObject({ via: 'dnat', targetSeesSource: '10.0.10.26' });
  });

  it('expects Docker 28 and 29 behaviour from the goldens (cross-bridge accepted, proxy skips the own bridge, bindlh)', () => {
    // the golden's bridge br-dummy 192.168.0.1/24 with one container 192.168.0.2, next to the lab's bridges
    const ipt = golden('iptables', G28_PROXY_ON);
    const base = multiHost({ iptables: ipt });
    const dummy = {
      name: 'br-dummy',
      ifindex: 99,
      addrs: [{ addr: '192.168.0.1', prefixlen: 24 }],
      nfCallIptables: null,
      routeLocalnet: false,
      ports: [{ ifname: 'vethdummy', ifindex: 100, bridge: 'br-dummy', hairpin: false, state: 'forwarding', peerIfindex: null }],
    };
    const h: HostFacts = {
      ...base,
      bridges: [...base.bridges, dummy],
      dockerProxies: [{ pid: 7, proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8080, containerIp: '192.168.0.2', containerPort: 80 }],
    };
    const eps: Endpoint[] = [
      ...ENDPOINTS,
      { name: 'c1', ip: '192.168.0.2', bridge: 'br-dummy', port: 'vethdummy', ns: 1, pid: 1, network: 'br-dummy' },
    ];
    const plan = planChecks(h, inventory(h, eps));
    expect(generationOf(h)).toBe('docker28+');
    expect(find(plan, 'self', 8080).expected?.via).toBe('docker-proxy');
    const cross = find(plan, 'cross-bridge', 8080, 'client');
    expect(cross.expected).toMatchObject({ outcome: 'connect', via: 'dnat', dnatTo: '192.168.0.2:80' });
    // bindlh (Docker 28): only the host's 127.0.0.1 path exists
    const lh: HostFacts = { ...h, ruleset: iptablesFacts(golden('iptables', G28_BINDLH)), dockerProxies: [] };
    const plan2 = planChecks(lh, inventory(lh, eps));
    expect(find(plan2, 'host-loopback', 8080).expected?.via).toBe('dnat');
    expect(find(plan2, 'self', 8080).skipReason).toMatch(/published on 127\.0\.0\.1 only/);
    expect(plan2.some((c) => c.kind === 'host-address' && c.dstPort === 8080)).toBe(false);
    // Docker 29 nftables, proxy off, icc=false: same-bridge and self blocked by design
    const nft: HostFacts = { ...h, ruleset: nftFacts(nftGolden('nftables', G29_NOICC)), dockerProxies: [] };
    const plan3 = planChecks(
      nft,
      inventory(nft, [...eps, { name: 'c2', ip: '192.168.0.3', bridge: 'br-dummy', port: null, ns: 2, pid: 2, network: 'br-dummy' }]),
    );
    expect(generationOf(nft)).toBe('docker29-nftables');
    expect(find(plan3, 'same-bridge', 8080).expected?.outcome).toBe('blocked');
    expect(find(plan3, 'host-loopback', 8080).expected).toMatchObject({ via: 'dnat', targetSeesSource: '192.168.0.1' });
  });
});
