/**
 * Unit tests of `journey verify hairpin` over IPv6, without root or network: the IPv6 facts of a
 * host (ip6 tables, global IPv6 addresses, bridge-nf-call-ip6tables), the IPv6 checks planned for a
 * port published on `::` next to the IPv4 ones, their expectations (DNAT to the container's IPv6
 * address, no SNAT between two containers, MASQUERADE to the IPv6 gateway for self-hairpin and the
 * host), `[::1]` skipped by design, and the causes named for broken IPv6 hosts. Fixtures:
 * test/fixtures/verify/ipv6 (recorded from the lab's `ipv6` scenario: dockerd 20.10 with --ipv6,
 * ip6tables, fixed-cidr-v6 fd00:17::/64, userland proxy off; web -p 8000:80, client).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildHostFacts, type HostFacts } from '../../src/verify/host-facts.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { mergeRulesets } from '../../src/ruleset/model.js';
import { planChecks, type PlannedCheck } from '../../src/verify/plan.js';
import { portsFromHost, type Endpoint, type Inventory } from '../../src/verify/endpoints.js';
import { judge } from '../../src/verify/diagnose.js';
import { addrPort, familyOfAddr, hostForFamily } from '../../src/verify/family-view.js';
import { parseTcpdumpLine } from '../../src/verify/collectors.js';
import type { ProbeResult } from '../../src/verify/types.js';

const FIX = join(new URL('../..', import.meta.url).pathname, 'test/fixtures/verify/ipv6');
const read = (f: string): string => readFileSync(join(FIX, f), 'utf8');
const WEB6 = 'fd00:17::242:ac11:2';
const CLIENT6 = 'fd00:17::242:ac11:3';

function ipv6Host(opts: { ip6tables?: string; sysctl?: Record<string, string> } = {}): HostFacts {
  return buildHostFacts({
    netns: 'jl-q6-host',
    netnsInode: null,
    ipLinkJson: read('ip-link.json'),
    ipAddrJson: read('ip-addr.json'),
    bridgeLinkJson: read('bridge-link.json'),
    sysctl: new Map(
      Object.entries({
        '/proc/sys/net/bridge/bridge-nf-call-iptables': '1',
        '/proc/sys/net/bridge/bridge-nf-call-ip6tables': '1',
        '/proc/sys/net/ipv4/ip_forward': '1',
        '/proc/sys/net/ipv6/conf/all/forwarding': '1',
        '/proc/sys/net/ipv4/conf/docker0/route_localnet': '1',
        ...opts.sysctl,
      }),
    ),
    rules: mergeRulesets(
      parseIptablesSave(read('iptables-save.txt'), { family: 'ip' }),
      parseIptablesSave(opts.ip6tables ?? read('ip6tables-save.txt'), { family: 'ip6' }),
    ),
    dockerProxies: [],
  });
}

/** The two containers of the scenario, each with its IPv4 and its IPv6 address (one endpoint per address). */
function endpoints(host: HostFacts): Endpoint[] {
  const port = (i: number): string | null => host.bridges[0]?.ports[i]?.ifname ?? null;
  const ep = (name: string, ip: string, p: string | null, pid: number): Endpoint => ({
    name,
    ip,
    bridge: 'docker0',
    port: p,
    ns: pid,
    pid,
    network: 'bridge',
  });
  return [
    ep('web', '172.17.0.2', port(0), 101),
    ep('web', WEB6, port(0), 101),
    ep('client', '172.17.0.3', port(1), 102),
    ep('client', CLIENT6, port(1), 102),
  ];
}

function inventory(host: HostFacts): Inventory {
  const eps = endpoints(host);
  return {
    endpoints: eps,
    ports: portsFromHost(host, eps),
    docker: { reachable: false, endpoint: '', reason: 'test', userlandProxy: false },
    notices: [],
  };
}

function find(plan: readonly PlannedCheck[], kind: string, dst: string): PlannedCheck {
  const c = plan.find((x) => x.kind === kind && x.dstIp === dst);
  if (!c) throw new Error(`no ${kind} to ${dst}: ${plan.map((x) => x.id).join(', ')}`);
  return c;
}

const failed = (port: number): ProbeResult => ({ connected: false, error: 'ETIMEDOUT', ms: 1000, localAddr: null, localPort: port });
const noEvidence = { conntrack: [], proxyLeg: null, packets: [], explanation: null, trace: [] };

describe('IPv6 host facts', () => {
  it('reads the ip6 tables, the IPv6 gateway and the host IPv6 address; the IPv6 view swaps them in', () => {
    const h = ipv6Host();
    expect(h.v6?.ruleset.dnat).toEqual([
      expect.objectContaining({ family: 6, proto: 'tcp', hostPort: 8000, hostIp: null, containerIp: WEB6, containerPort: 80, notFromIface: null }),
    ]);
    expect(h.ruleset.dnat.map((d) => d.containerIp)).toEqual(['172.17.0.2']);
    expect(h.bridges.find((b) => b.name === 'docker0')?.addrs6).toEqual([{ addr: 'fd00:17::1', prefixlen: 64 }]);
    expect(h.v6?.hostAddrs).toEqual([{ addr: 'fd00:10::26', iface: 'eth0' }]);
    const v = hostForFamily(h, 6);
    expect(v.family).toBe(6);
    expect(v.ruleset).toBe(h.v6?.ruleset);
    expect(v.hostAddrs[0]?.addr).toBe('fd00:10::26');
    expect(familyOfAddr('fd00::1')).toBe(6);
    expect(addrPort('fd00::1', 80)).toBe('[fd00::1]:80');
    expect(addrPort('10.0.0.1', 80)).toBe('10.0.0.1:80');
  });

  it('lists the port published on :: from the ip6 DNAT rule, next to the IPv4 one', () => {
    const h = ipv6Host();
    const ports = inventory(h).ports;
    expect(ports.map((p) => `${p.hostIp} ${p.hostPort} ${p.containerIp}`).sort()).toEqual(['0.0.0.0 8000 172.17.0.2', `:: 8000 ${WEB6}`]);
  });
});

describe('IPv6 plan (userland proxy off, ip6tables on)', () => {
  it('plans same-bridge, self and host-address over IPv6 with their expectations; [::1] skipped by design', () => {
    const h = ipv6Host();
    const plan = planChecks(h, inventory(h));
    const v6 = plan.filter((c) => familyOfAddr(c.dstIp) === 6);
    expect(v6.map((c) => c.id).sort()).toEqual([
      'host-address:host->[fd00:10::26]:8000/tcp',
      'host-loopback:host->[::1]:8000/tcp',
      'same-bridge:client->[fd00:10::26]:8000/tcp',
      'self:web->[fd00:10::26]:8000/tcp',
    ]);
    // the IPv4 checks are unchanged and call the IPv4 address
    expect(plan.filter((c) => familyOfAddr(c.dstIp) === 4).map((c) => c.dstIp)).toEqual(['10.0.10.26', '10.0.10.26', '127.0.0.1', '10.0.10.26']);
    const same = find(plan, 'same-bridge', 'fd00:10::26');
    expect(same.from.ip).toBe(CLIENT6);
    expect(same.expected).toMatchObject({ outcome: 'connect', via: 'dnat', dnatTo: `[${WEB6}]:80`, targetSeesSource: CLIENT6 });
    expect(same.expected?.dnatRule).toContain(`--to-destination [${WEB6}]:80`);
    expect(same.expected?.requires.join()).toContain('bridge-nf-call-ip6tables on');
    const self = find(plan, 'self', 'fd00:10::26');
    expect(self.from.ip).toBe(WEB6);
    expect(self.expected).toMatchObject({ via: 'dnat', targetSeesSource: 'fd00:17::1' });
    expect(self.expected?.masqRule).toBe(`-A POSTROUTING -s ${WEB6}/128 -d ${WEB6}/128 -p tcp -m tcp --dport 80 -j MASQUERADE`);
    const host = find(plan, 'host-address', 'fd00:10::26');
    expect(host.expected).toMatchObject({ via: 'dnat', targetSeesSource: 'fd00:17::1' });
    expect(host.expected?.masqRule).toBe('-A POSTROUTING -o docker0 -m addrtype --src-type LOCAL -j MASQUERADE');
    const lo = find(plan, 'host-loopback', '::1');
    expect(lo.expected).toBeNull();
    expect(lo.skipReason).toMatch(/never DNATed to a container \(IPv6 has no route_localnet\)/);
  });

  it('expects docker-proxy for the IPv6 port when the ip6 DNAT rule skips the bridge (userland proxy on)', () => {
    const text = read('ip6tables-save.txt').replace('-A DOCKER -p tcp', '-A DOCKER ! -i docker0 -p tcp');
    const h = ipv6Host({ ip6tables: text });
    const c = find(planChecks(h, inventory(h)), 'same-bridge', 'fd00:10::26');
    expect(c.expected).toMatchObject({ via: 'docker-proxy', targetSeesSource: 'fd00:17::1', dnatTo: null });
  });
});

describe('IPv6 causes', () => {
  it('names the missing ip6 self-hairpin MASQUERADE', () => {
    const text = read('ip6tables-save.txt').replace(/^-A POSTROUTING -s fd00:17::242:ac11:2\/128 -d .*$/m, '');
    const h = ipv6Host({ ip6tables: text });
    const c = find(planChecks(h, inventory(h)), 'self', 'fd00:10::26');
    expect(c.expected?.sourceWhy).toMatch(/MISSING/);
    // the IPv4 self-hairpin still has its rule
    expect(find(planChecks(h, inventory(h)), 'self', '10.0.10.26').expected?.masqRule).not.toBeNull();
    expect(judge(c, h, failed(41000), noEvidence, null).causes).toContain(`no MASQUERADE for self-hairpin to [${WEB6}]:80`);
  });

  it('names bridge-nf-call-ip6tables off for IPv6 same-bridge, not for IPv4', () => {
    const h = ipv6Host({ sysctl: { '/proc/sys/net/bridge/bridge-nf-call-ip6tables': '0' } });
    const plan = planChecks(h, inventory(h));
    const c6 = find(plan, 'same-bridge', 'fd00:10::26');
    const packets = [
      `vethb53b7bb P IP6 ${CLIENT6}.41001 > fd00:10::26.8000: Flags [S], seq 1`,
      `veth1d6c123 P IP6 ${WEB6}.80 > ${CLIENT6}.41001: Flags [S.], seq 2`,
    ];
    expect(parseTcpdumpLine(`1.5 ${packets[0]}`)).toMatchObject({ src: CLIENT6, sport: 41001, dst: 'fd00:10::26', dport: 8000 });
    const j = judge(c6, h, failed(41001), { ...noEvidence, packets }, null);
    expect(j.causes).toContain('bridge-nf-call-ip6tables is off');
    expect(j.observed.join('\n')).toContain(`SYN-ACK: veth1d6c123 P [${WEB6}]:80 > [${CLIENT6}]:41001`);
    const c4 = find(plan, 'same-bridge', '10.0.10.26');
    expect(judge(c4, h, failed(41002), noEvidence, null).causes.join('\n')).not.toMatch(/bridge-nf-call/);
  });
});
