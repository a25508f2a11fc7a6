/**
 * Unit tests of `journey verify hairpin` without root or network: ruleset facts (Docker 20.10 as
 * recorded in the lab, moby's Docker 28 iptables and Docker 29 nftables goldens), the checks and
 * expectations per host configuration, the causes named for broken hosts, passive classification,
 * and the text parsers. Fixtures: test/fixtures/verify/multi (recorded from the lab's "multi"
 * scenario: userland proxy off, docker0 + br-neta + br-netb) and ../shared/corpus (the goldens).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildHostFacts, parseDockerProxyArgs, type HostFacts } from '../../src/verify/host-facts.js';
import { dockerFacts, inCidr, masqFor, ruleTextAt } from '../../src/verify/docker-rules.js';
import { parseIptablesSave, tokenize } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { emptyRuleset, mergeRulesets } from '../../src/ruleset/model.js';
import { gunzipSync } from 'node:zlib';
import { planChecks, generationOf, type PlannedCheck } from '../../src/verify/plan.js';
import { peerIsInTarget, portsFromHost, type Endpoint, type Inventory } from '../../src/verify/endpoints.js';
import { judge, traceCauses, selectConntrack } from '../../src/verify/diagnose.js';
import { classifyFlow } from '../../src/verify/passive.js';
import { parseTcpdumpLine } from '../../src/verify/collectors.js';
import { runProbe, sourcePortBlock } from '../../src/verify/probe.js';
import { createServer, type Server } from 'node:net';
import { formatReport } from '../../src/verify/format.js';
import { summarize } from '../../src/verify/verify-hairpin.js';
import type { ConntrackEntry } from '../../src/model/conntrack.js';
import type { HairpinReport, ProbeResult, TraceStep } from '../../src/verify/types.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const FIX = join(ROOT, 'test/fixtures/verify/multi');
const CORPUS = [join(ROOT, '..', 'shared', 'corpus', 'moby-golden'), '/work/shared/corpus/moby-golden'].find((p) => existsSync(p)) ?? '';
const golden = (dir: string, name: string): string => {
  if (CORPUS === '') throw new Error('the moby goldens (../shared/corpus/moby-golden) are missing');
  return readFileSync(join(CORPUS, dir, name), 'utf8');
};
const G28_PROXY_OFF = 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden';
const G28_PROXY_ON = 'hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden';
const G28_BINDLH = 'hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=true__iptables.golden';
const G29_PROXY_OFF = 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden';
const G29_NOICC = 'hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden';
/** moby's nft goldens as `nft -j` (test/fixtures/ruleset/moby-nft-goldens.json.gz, keyed by name without .golden). */
const NFT_BUNDLE = JSON.parse(gunzipSync(readFileSync(join(ROOT, 'test/fixtures/ruleset/moby-nft-goldens.json.gz'))).toString('utf8')) as Record<
  string,
  unknown
>;
/** The facts of one ruleset, read through the one model (src/ruleset), as verify reads them. */
const iptablesFacts = (text: string) => dockerFacts(parseIptablesSave(text));
const nftFacts = (name: string) => dockerFacts(parseNftJson(NFT_BUNDLE[name.replace(/\.golden$/, '')], { source: name }));
const nftGolden = (_dir: string, name: string): string => name;

function sysctl(over: Record<string, string> = {}): Map<string, string> {
  return new Map(
    Object.entries({
      '/proc/sys/net/bridge/bridge-nf-call-iptables': '1',
      '/proc/sys/net/ipv4/ip_forward': '1',
      '/proc/sys/net/ipv4/conf/all/route_localnet': '0',
      '/proc/sys/net/ipv4/conf/docker0/route_localnet': '1',
      '/proc/sys/net/ipv4/conf/br-neta/route_localnet': '1',
      '/proc/sys/net/ipv4/conf/br-netb/route_localnet': '1',
      ...over,
    }),
  );
}

function multiHost(opts: { iptables?: string; sysctl?: Record<string, string>; hairpinOff?: string; nft?: string } = {}): HostFacts {
  let blink = readFileSync(join(FIX, 'bridge-link.json'), 'utf8');
  const links = JSON.parse(blink) as { ifname: string; hairpin?: boolean }[];
  for (const l of links) l.hairpin = l.ifname !== opts.hairpinOff;
  blink = JSON.stringify(links);
  return buildHostFacts({
    netns: 'jl-f-host',
    netnsInode: null,
    ipLinkJson: readFileSync(join(FIX, 'ip-link.json'), 'utf8'),
    ipAddrJson: readFileSync(join(FIX, 'ip-addr.json'), 'utf8'),
    bridgeLinkJson: blink,
    sysctl: sysctl(opts.sysctl),
    rules: mergeRulesets(
      parseIptablesSave(opts.iptables ?? readFileSync(join(FIX, 'iptables-save.txt'), 'utf8')),
      opts.nft ? parseNftJson(NFT_BUNDLE[opts.nft]) : emptyRuleset(),
    ),
    dockerProxies: [],
  });
}

const ENDPOINTS = JSON.parse(readFileSync(join(FIX, 'endpoints.json'), 'utf8')) as Endpoint[];

function inventory(host: HostFacts, endpoints: readonly Endpoint[] = ENDPOINTS): Inventory {
  return {
    endpoints,
    ports: portsFromHost(host, endpoints),
    docker: { reachable: false, endpoint: '', reason: 'test', userlandProxy: null },
    notices: [],
  };
}

function find(plan: readonly PlannedCheck[], kind: string, port: number, from?: string): PlannedCheck {
  const c = plan.find((x) => x.kind === kind && x.dstPort === port && (from === undefined || x.from.name === from));
  if (!c) throw new Error(`no ${kind} ${port} ${from ?? ''}: ${plan.map((x) => x.id).join(', ')}`);
  return c;
}

function ct(
  o: [string, number, string, number],
  r: [string, number, string, number],
  status: ConntrackEntry['status'] = ['SEEN_REPLY', 'ASSURED'],
  tcpState = 'TIME_WAIT',
): ConntrackEntry {
  const t = (x: [string, number, string, number]) => ({
    family: 4 as const,
    proto: 'tcp' as const,
    protoNum: 6,
    src: x[0],
    sport: x[1],
    dst: x[2],
    dport: x[3],
  });
  return { id: `${o.join('/')}`, orig: t(o), reply: t(r), status, tcpState, mark: 0, zone: 0, timeout: 100, source: 'conntrack-tool' };
}

const failedProbe = (port: number): ProbeResult => ({ connected: false, error: 'ETIMEDOUT', ms: 1000, localAddr: null, localPort: port });
const okProbe = (port: number): ProbeResult => ({ connected: true, error: null, ms: 3, localAddr: null, localPort: port });
const noEvidence = { conntrack: [], proxyLeg: null, packets: [], explanation: null, trace: [] as TraceStep[] };

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

describe('causes for broken hosts', () => {
  it('names hairpin_mode off on the target port for a failing self-hairpin', () => {
    const h = multiHost({ hairpinOff: 'vethd12539f' });
    const c = find(planChecks(h, inventory(h)), 'self', 8000);
    const j = judge(c, h, failedProbe(40000), noEvidence, 'vethd12539f');
    expect(j.status).toBe('fail');
    expect(j.causes).toContain('hairpin_mode is 0 on vethd12539f (port of web)');
    expect(j.causes.some((x) => x.startsWith('no MASQUERADE'))).toBe(false);
  });

  it('names the missing self-hairpin MASQUERADE', () => {
    const text = readFileSync(join(FIX, 'iptables-save.txt'), 'utf8').replace(/^-A POSTROUTING -s 172\.17\.0\.2\/32 -d 172\.17\.0\.2\/32.*$/m, '');
    const h = multiHost({ iptables: text });
    const c = find(planChecks(h, inventory(h)), 'self', 8000);
    expect(c.expected?.sourceWhy).toMatch(/MISSING/);
    const j = judge(c, h, failedProbe(40001), noEvidence, 'vethd12539f');
    expect(j.causes).toContain('no MASQUERADE for self-hairpin to 172.17.0.2:80');
  });

  it('names the DOCKER-USER rule the kernel trace saw drop the packet', () => {
    const text = readFileSync(join(FIX, 'iptables-save.txt'), 'utf8').replace(
      '-A DOCKER-USER -j RETURN',
      '-A DOCKER-USER -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j DROP\n-A DOCKER-USER -j RETURN',
    );
    const h = multiHost({ iptables: text });
    expect(h.ruleset.dockerUser.map((r) => r.ruleNumber)).toEqual([1]);
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 8000);
    const trace: TraceStep[] = [
      {
        family: 'ip',
        table: 'nat',
        chain: 'DOCKER',
        rule: 'tcp dport 8000 dnat to 172.17.0.2:80',
        handle: 9,
        ruleNumber: 1,
        verdict: 'accept',
        traceId: 'a',
      },
      {
        family: 'ip',
        table: 'filter',
        chain: 'FORWARD',
        rule: 'counter jump DOCKER-USER',
        handle: 3,
        ruleNumber: 1,
        verdict: 'jump DOCKER-USER',
        traceId: 'a',
      },
      {
        family: 'ip',
        table: 'filter',
        chain: 'DOCKER-USER',
        rule: 'ip daddr 172.17.0.2 tcp dport 80 counter drop',
        handle: 40,
        ruleNumber: 1,
        verdict: 'drop',
        traceId: 'a',
      },
    ];
    const j = judge(c, h, failedProbe(40002), { ...noEvidence, trace }, 'veth63ddaa2');
    expect(j.causes[0]).toBe('dropped in DOCKER-USER by rule 1: -A DOCKER-USER -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j DROP');
    expect(traceCauses([{ ...trace[2]!, verdict: 'policy drop', rule: null }], h)[0]).toBe(
      'dropped by the policy of filter DOCKER-USER (policy drop)',
    );
    expect(ruleTextAt(parseIptablesSave(text), 'ip', 'filter', 'DOCKER-USER', 2)).toBe('-A DOCKER-USER -j RETURN');
  });

  it('names bridge-nf-call-iptables off and the reply that escaped un-DNAT', () => {
    const h = multiHost({ sysctl: { '/proc/sys/net/bridge/bridge-nf-call-iptables': '0' } });
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 8000);
    const own = ct(['172.17.0.3', 40003, '10.0.10.26', 8000], ['172.17.0.2', 80, '172.17.0.3', 40003], [], 'SYN_SENT');
    const packets = [
      'veth63ddaa2 P IP 172.17.0.3.40003 > 10.0.10.26.8000: Flags [S], seq 1',
      'vethd12539f P IP 172.17.0.2.80 > 172.17.0.3.40003: Flags [S.], seq 2',
    ];
    const j = judge(c, h, failedProbe(40003), { ...noEvidence, conntrack: [own], packets }, 'veth63ddaa2');
    expect(j.causes).toContain('bridge-nf-call-iptables is off');
    expect(j.causes.join('\n')).toContain('the reply reached client from 172.17.0.2:80 without un-DNAT');
    expect(j.observed.join('\n')).toMatch(/SYN-ACK: vethd12539f P 172\.17\.0\.2:80 > 172\.17\.0\.3:40003/);
    // br_netfilter not loaded at all
    const none = multiHost({ sysctl: { '/proc/sys/net/bridge/bridge-nf-call-iptables': '' } });
    const h2: HostFacts = { ...none, bridgeNfCallIptables: null };
    expect(judge(c, h2, failedProbe(40004), noEvidence, null).causes[0]).toMatch(/bridge-nf-call-iptables is off \(br_netfilter not loaded\)/);
  });

  it('names route_localnet 0 for the host calling 127.0.0.1', () => {
    const h = multiHost({ sysctl: { '/proc/sys/net/ipv4/conf/docker0/route_localnet': '0' } });
    const c = find(planChecks(h, inventory(h)), 'host-loopback', 8000);
    const j = judge(c, h, failedProbe(40005), noEvidence, null);
    expect(j.causes).toContain('route_localnet is 0 on docker0 so 127.0.0.1 is not NATed');
  });

  it('names a missing docker-proxy and a refused connection', () => {
    const text = readFileSync(join(FIX, 'iptables-save.txt'), 'utf8').replace(
      '-A DOCKER -p tcp',
      '-A DOCKER -i docker0 -j RETURN\n-A DOCKER ! -i docker0 -p tcp',
    );
    const h = multiHost({ iptables: text });
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 8000);
    expect(c.expected?.via).toBe('docker-proxy');
    const j = judge(c, h, { ...failedProbe(40006), error: 'ECONNREFUSED' }, noEvidence, null);
    expect(j.causes[0]).toMatch(/^no docker-proxy listens on 0\.0\.0\.0:8000\/tcp/);
    const h2 = multiHost();
    const c2 = find(planChecks(h2, inventory(h2)), 'same-bridge', 8000);
    const own = ct(['172.17.0.3', 40007, '10.0.10.26', 8000], ['172.17.0.2', 80, '172.17.0.3', 40007], []);
    const j2 = judge(c2, h2, { ...failedProbe(40007), error: 'ECONNREFUSED' }, { ...noEvidence, conntrack: [own] }, null);
    expect(j2.causes).toContain('nothing listens on 172.17.0.2:80 in web (connection refused)');
  });

  it('passes a working path and reports deviations from the expected source', () => {
    const h = multiHost();
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 8000);
    const good = ct(['172.17.0.3', 40008, '10.0.10.26', 8000], ['172.17.0.2', 80, '172.17.0.3', 40008]);
    expect(judge(c, h, okProbe(40008), { ...noEvidence, conntrack: [good] }, null)).toMatchObject({ status: 'pass', deviations: [] });
    const masq = ct(['172.17.0.3', 40009, '10.0.10.26', 8000], ['172.17.0.2', 80, '172.17.0.1', 40009]);
    const j = judge(c, h, okProbe(40009), { ...noEvidence, conntrack: [masq] }, null);
    expect(j.status).toBe('pass');
    expect(j.deviations).toEqual(['the target saw 172.17.0.1 as the source, expected 172.17.0.3']);
  });

  it('passes a UDP path whose datagram was delivered though the service stayed silent', () => {
    const h = multiHost();
    const inv = inventory(h);
    const udpInv: Inventory = {
      ...inv,
      ports: [{ proto: 'udp', hostIp: '0.0.0.0', hostPort: 5514, containerIp: '172.17.0.2', containerPort: 514, container: 'web', source: 'docker' }],
    };
    const c = find(planChecks(h, udpInv), 'same-bridge', 5514);
    expect(c.skipReason).toBeNull();
    const silent = { ...failedProbe(40012), error: 'NOREPLY' };
    const delivered = ['vethd12539f Out IP 172.17.0.3.40012 > 172.17.0.2.514: UDP, length 23'];
    const j = judge(c, h, silent, { ...noEvidence, packets: delivered }, null);
    expect(j.status).toBe('pass');
    expect(j.deviations[0]).toMatch(/no answer from the UDP service \(NOREPLY\), but the datagram reached web through vethd12539f/);
    expect(judge(c, h, silent, noEvidence, null).status).toBe('fail');
  });

  it('treats icc=false (Docker 20.10: -i docker0 -o docker0 -j DROP) as blocking same-bridge hairpin by design', () => {
    const text = readFileSync(join(FIX, 'iptables-save.txt'), 'utf8').replace(
      '-A FORWARD -i docker0 -o docker0 -j ACCEPT',
      '-A FORWARD -i docker0 -o docker0 -j DROP',
    );
    const h = multiHost({ iptables: text });
    expect(h.ruleset.iccDisabledBridges).toEqual(['docker0']);
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 8000);
    expect(c.expected?.outcome).toBe('blocked');
    const trace: TraceStep[] = [
      {
        family: 'ip',
        table: 'filter',
        chain: 'FORWARD',
        rule: 'iifname "docker0" oifname "docker0" counter packets 0 bytes 0 drop',
        handle: 30,
        ruleNumber: 6,
        verdict: 'drop',
        traceId: 'c',
      },
    ];
    const j = judge(c, h, failedProbe(40030), { ...noEvidence, trace }, null);
    expect(j.status).toBe('blocked');
    expect(j.causes[0]).toMatch(/icc=false/);
    // another drop in FORWARD is not Docker's design
    const other: TraceStep[] = [{ ...trace[0]!, rule: 'ip saddr 172.17.0.3 counter drop', ruleNumber: 1 }];
    expect(judge(c, h, failedProbe(40031), { ...noEvidence, trace: other }, null).status).toBe('fail');
  });

  it('fails a docker-proxy path whose own connection to the container was not answered', () => {
    const text = readFileSync(join(FIX, 'iptables-save.txt'), 'utf8').replace(
      '-A DOCKER -p tcp',
      '-A DOCKER -i docker0 -j RETURN\n-A DOCKER ! -i docker0 -p tcp',
    );
    const h = multiHost({ iptables: text });
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 8000);
    const own = ct(['172.17.0.3', 40020, '10.0.10.26', 8000], ['10.0.10.26', 8000, '172.17.0.3', 40020]);
    const deadLeg = ct(['172.17.0.1', 50000, '172.17.0.2', 80], ['172.17.0.2', 80, '172.17.0.1', 50000], [], 'SYN_SENT');
    const j = judge(c, h, okProbe(40020), { ...noEvidence, conntrack: [own], proxyLeg: deadLeg }, null);
    expect(j.status).toBe('fail');
    expect(j.causes).toEqual(['docker-proxy accepted the connection, but its connection to web (172.17.0.2:80) got no answer (SYN_SENT)']);
    const liveLeg = ct(['172.17.0.1', 50001, '172.17.0.2', 80], ['172.17.0.2', 80, '172.17.0.1', 50001]);
    const ok = judge(c, h, okProbe(40021), { ...noEvidence, conntrack: [own], proxyLeg: liveLeg }, null);
    expect(ok.status).toBe('pass');
    expect(ok.observed).toContain('web saw 172.17.0.1 as the source');
  });

  it('keeps a probe blocked by isolation as "blocked", not failed', () => {
    const h = multiHost();
    const c = find(planChecks(h, inventory(h)), 'cross-bridge', 8000, 'bcli');
    const trace: TraceStep[] = [
      {
        family: 'ip',
        table: 'filter',
        chain: 'DOCKER-ISOLATION-STAGE-2',
        rule: 'oifname "docker0" counter drop',
        handle: 5,
        ruleNumber: 3,
        verdict: 'drop',
        traceId: 'b',
      },
    ];
    const j = judge(c, h, failedProbe(40010), { ...noEvidence, trace }, null);
    expect(j.status).toBe('blocked');
    expect(j.causes).toContain('dropped in DOCKER-ISOLATION-STAGE-2 by rule 3: -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP');
    // dropped elsewhere (DOCKER-USER): a failure even though isolation would block it too
    const other: TraceStep[] = [{ ...trace[0]!, chain: 'DOCKER-USER', ruleNumber: 1 }];
    expect(judge(c, h, failedProbe(40011), { ...noEvidence, trace: other }, null).status).toBe('fail');
  });
});

describe('the probe client (loopback only)', () => {
  const listen = (port = 0): Promise<Server> =>
    new Promise((resolve, reject) => {
      const srv = createServer((sock) => sock.end());
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => resolve(srv));
    });
  const portOf = (s: Server): number => (s.address() as { port: number }).port;

  it('connects from the chosen source port, moves on when it is taken, reports refusals', async () => {
    const srv = await listen();
    const busy = await listen(); // occupies a port the probe is asked to use
    try {
      const ok = await runProbe({ ns: null, dstIp: '127.0.0.1', dstPort: portOf(srv), srcPort: sourcePortBlock(1)[0]!, timeoutMs: 2000 });
      expect(ok.connected).toBe(true);
      const moved = await runProbe({ ns: null, dstIp: '127.0.0.1', dstPort: portOf(srv), srcPort: portOf(busy), timeoutMs: 2000 });
      expect(moved.connected).toBe(true);
      expect(moved.localPort).not.toBe(portOf(busy));
      const closedPort = portOf(busy);
      await new Promise<void>((r) => busy.close(() => r()));
      const refused = await runProbe({ ns: null, dstIp: '127.0.0.1', dstPort: closedPort, srcPort: sourcePortBlock(1)[0]!, timeoutMs: 2000 });
      expect(refused).toMatchObject({ connected: false, error: 'ECONNREFUSED' });
    } finally {
      srv.close();
      busy.close();
    }
  });
});

describe('evidence selection, passive classification, parsers, report', () => {
  it('selects the probe own conntrack entry and the docker-proxy leg', () => {
    const h = multiHost();
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 8000);
    const own = ct(['172.17.0.3', 41000, '10.0.10.26', 8000], ['10.0.10.26', 8000, '172.17.0.3', 41000]);
    const leg = ct(['172.17.0.1', 52000, '172.17.0.2', 80], ['172.17.0.2', 80, '172.17.0.1', 52000]);
    const old = ct(['172.17.0.1', 51000, '172.17.0.2', 80], ['172.17.0.2', 80, '172.17.0.1', 51000]);
    const sel = selectConntrack(
      [
        { entry: old, event: 'new', timeMs: 1_000 },
        { entry: own, event: 'new', timeMs: 10_000 },
        { entry: leg, event: 'new', timeMs: 10_002 },
      ],
      c,
      41000,
      { from: 9_990, to: 10_100 },
      '172.17.0.1',
    );
    expect(sel.own?.id).toBe(own.id);
    expect(sel.proxyLeg?.id).toBe(leg.id);
  });

  it('classifies hairpin flows from conntrack (passive mode)', () => {
    const h = multiHost();
    const inv = inventory(h);
    const self = classifyFlow(ct(['172.17.0.2', 42000, '10.0.10.26', 8000], ['172.17.0.2', 80, '172.17.0.1', 42000]), h, inv);
    expect(self).toMatchObject({ kind: 'self', via: 'dnat', dnatTo: '172.17.0.2:80', targetSaw: '172.17.0.1', status: 'pass' });
    const lo = classifyFlow(ct(['127.0.0.1', 42001, '127.0.0.1', 8000], ['172.17.0.2', 80, '172.17.0.1', 42001]), h, inv);
    expect(lo?.kind).toBe('host-loopback');
    const cross = classifyFlow(ct(['172.23.0.2', 42002, '10.0.10.26', 8000], ['172.17.0.2', 80, '172.23.0.2', 42002], [], 'SYN_SENT'), h, inv);
    expect(cross).toMatchObject({ kind: 'cross-bridge', status: 'blocked' });
    const stuck = classifyFlow(
      ct(['172.17.0.3', 42003, '10.0.10.26', 8000], ['172.17.0.2', 80, '172.17.0.3', 42003], [], 'SYN_SENT'),
      { ...h, bridgeNfCallIptables: false },
      inv,
    );
    expect(stuck?.status).toBe('fail');
    expect(stuck?.causes).toContain('bridge-nf-call-iptables is off');
    // from outside the host: not a hairpin flow
    expect(classifyFlow(ct(['10.0.10.5', 42004, '10.0.10.26', 8000], ['172.17.0.2', 80, '10.0.10.5', 42004]), h, inv)).toBeNull();
  });

  it('parses tcpdump -i any lines, docker-proxy command lines, source port blocks', () => {
    expect(
      parseTcpdumpLine('1795407369.445107 veth1a2b In  IP 172.17.0.3.41000 > 10.0.10.26.8000: Flags [S], seq 1, win 64240, length 0'),
    ).toMatchObject({
      iface: 'veth1a2b',
      dir: 'In',
      src: '172.17.0.3',
      sport: 41000,
      dst: '10.0.10.26',
      dport: 8000,
      flags: 'S',
      timeMs: 1795407369445,
    });
    expect(parseTcpdumpLine('garbage')).toBeNull();
    // IPv6 packets are read too (verify hairpin probes IPv6 published ports)
    expect(parseTcpdumpLine('1.0 lo In IP6 ::1.1 > ::1.2: Flags [S]')).toMatchObject({ src: '::1', sport: 1, dst: '::1', dport: 2, flags: 'S' });
    expect(
      parseDockerProxyArgs(9, [
        '/usr/bin/docker-proxy',
        '-proto',
        'tcp',
        '-host-ip',
        '0.0.0.0',
        '-host-port',
        '8000',
        '-container-ip',
        '172.17.0.2',
        '-container-port',
        '80',
      ]),
    ).toEqual({
      pid: 9,
      proto: 'tcp',
      hostIp: '0.0.0.0',
      hostPort: 8000,
      containerIp: '172.17.0.2',
      containerPort: 80,
    });
    expect(parseDockerProxyArgs(9, ['/usr/bin/docker-proxy', '-proto', 'tcp'])).toBeNull();
    const b = sourcePortBlock(5, () => 0.5);
    expect(b).toHaveLength(5);
    expect(b[4]! - b[0]!).toBe(4);
    expect(b[0]!).toBeGreaterThanOrEqual(33_000);
  });

  it('formats a report for people and counts the outcome', () => {
    const h = multiHost({ hairpinOff: 'vethd12539f' });
    const c = find(planChecks(h, inventory(h)), 'self', 8000);
    const j = judge(c, h, failedProbe(40000), noEvidence, 'vethd12539f');
    const check = {
      id: c.id,
      kind: c.kind,
      port: c.port,
      from: c.from,
      to: '10.0.10.26:8000',
      status: j.status,
      expected: c.expected,
      probe: failedProbe(40000),
      evidence: { ...noEvidence, observed: j.observed },
      causes: j.causes,
      deviations: j.deviations,
      skipReason: null,
    };
    const summary = summarize([check]);
    const r: HairpinReport = {
      v: 1,
      mode: 'active',
      startedAt: '2026-01-01T00:00:00Z',
      durationMs: 10,
      host: {
        netns: 'jl-f-host',
        userlandProxy: false,
        userlandProxyWhy: 'test',
        backends: ['iptables'],
        generation: 'docker<28',
        bridgeNfCallIptables: true,
        hostAddress: '10.0.10.26',
        bridges: [],
        dockerProxies: [],
        docker: { reachable: false, endpoint: '', reason: 'test' },
      },
      ports: [c.port],
      checks: [check],
      flows: [],
      summary,
      ok: summary.fail === 0,
      notices: [],
    };
    expect(summary).toEqual({ total: 1, pass: 0, fail: 1, blocked: 0, skipped: 0 });
    const text = formatReport(r);
    expect(text).toMatch(/FAIL\s+self\s+web 172\.17\.0\.2 -> 10\.0\.10\.26:8000 \[ETIMEDOUT\]/);
    expect(text).toContain('cause: hairpin_mode is 0 on vethd12539f (port of web)');
    expect(text.trim().split('\n').pop()).toBe('FAILED: 1 checks: 0 pass, 1 fail, 0 blocked by design, 0 skipped');
  });

  it('never throws on malformed host data: a clear E_PARSE', () => {
    expect(() =>
      buildHostFacts({
        netns: null,
        netnsInode: null,
        ipLinkJson: '{bad',
        ipAddrJson: '[]',
        bridgeLinkJson: '[]',
        sysctl: new Map(),
        rules: emptyRuleset(),
        dockerProxies: [],
      }),
    ).toThrow(/E_PARSE|malformed JSON/);
    // a malformed ruleset is the one parser's E_PARSE (src/ruleset), never a crash or a silent half
    expect(() => iptablesFacts('*nat\n-A DOCKER -p tcp -j DNAT --to-destination\n-A\ngarbage\n')).toThrow(/E_PARSE|undeclared chain/);
    expect(() => parseNftJson('{"nftables":[{"rule":{"family":"ip","table":"docker-bridges","chain":"x","expr":"garbage"}}]}')).toThrow();
    expect(dockerFacts(emptyRuleset()).dnat).toEqual([]);
  });
});
