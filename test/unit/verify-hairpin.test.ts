/**
 * Unit tests of `journey verify hairpin` without root or network, part 2: the causes named for
 * broken hosts, the probe client, evidence selection, passive classification, the text parsers and
 * the report. Part 1 (verify-hairpin-plan.test.ts): ruleset facts, host facts and the plan.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildHostFacts, parseDockerProxyArgs, type HostFacts } from '../../src/verify/host-facts.js';
import { dockerFacts, ruleTextAt } from '../../src/verify/docker-rules.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { emptyRuleset } from '../../src/ruleset/model.js';
import { planChecks } from '../../src/verify/plan.js';
import type { Inventory } from '../../src/verify/endpoints.js';
import { judge, traceCauses, selectConntrack } from '../../src/verify/diagnose.js';
import { classifyFlow } from '../../src/verify/passive.js';
import { parseTcpdumpLine } from '../../src/verify/collectors.js';
import { runProbe, sourcePortBlock } from '../../src/verify/probe.js';
import { createServer, type Server } from 'node:net';
import { formatReport } from '../../src/verify/format.js';
import { summarize } from '../../src/verify/verify-hairpin.js';
import type { HairpinReport, TraceStep } from '../../src/verify/types.js';
import { FIX, iptablesFacts, multiHost, inventory, find, ct, failedProbe, okProbe, noEvidence } from './verify-hairpin-fixtures.js';

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
