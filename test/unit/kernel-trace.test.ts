/**
 * The parser of `nft -a monitor trace` (nftables 1.0.6) on trace text recorded in the lab
 * (test/fixtures/kernel-trace/, recorded with lab/tools/record-trace-fixture.ts together with
 * the ruleset (`nft -a -j list ruleset`), `iptables-save` and `conntrack -L` of the same moment).
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseConntrackList } from '../../src/netfilter/kernel-conntrack.js';
import { parseNftTrace, parsePacketHeader, type KernelTrace, type TracePacket } from '../../src/netfilter/kernel-trace.js';
import { indexNftRuleset } from '../../src/netfilter/ruleset-index.js';

const FIX = new URL('../fixtures/kernel-trace/', import.meta.url);
const read = (name: string): string => readFileSync(new URL(name, FIX), 'utf8');

function load(name: string): { t: KernelTrace; save: string } {
  const ct = parseConntrackList(read(`${name}.conntrack.txt`)).entries;
  const t = parseNftTrace(read(`${name}.trace.txt`), { ruleset: read(`${name}.ruleset.json`), conntrack: ct });
  return { t, save: read(`${name}.iptables-save.txt`) };
}

/** The iptables rule number of the first `-A CHAIN` line in TABLE matching re. */
function iptNum(save: string, table: string, chain: string, re: RegExp): number | null {
  let cur = '';
  let n = 0;
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) {
      cur = l.slice(1).trim();
      n = 0;
    } else if (cur === table && l.startsWith(`-A ${chain} `)) {
      n++;
      if (re.test(l)) return n;
    }
  }
  return null;
}

const syn = (t: KernelTrace, daddr: string, dport: number): TracePacket | undefined =>
  t.packets.find((p) => p.first?.daddr === daddr && p.first?.dport === dport && p.first?.tcpFlags === 'syn');

/** Every packet enters through the trace table: as many packets as `jl_trace … packet:` lines. */
const entries = (text: string): number => text.split('\n').filter((l) => / ip jl_trace (pre|out) packet: /.test(l)).length;

describe('parseNftTrace on recorded lab traces', () => {
  it('default, ext -> published port: DNAT in nat DOCKER, accept in filter DOCKER, rule numbers = iptables', () => {
    const { t, save } = load('default-ext-to-published');
    expect(t.skipped).toEqual([]);
    expect(t.packets.length).toBe(entries(t.text));
    const p = syn(t, '10.0.10.26', 8000);
    expect(p?.hooks).toEqual(['prerouting', 'forward', 'postrouting']);
    expect(p?.steps.map((s) => [s.table, s.chain, s.ruleNumber, s.verdict])).toEqual([
      ['nat', 'PREROUTING', iptNum(save, 'nat', 'PREROUTING', /-j DOCKER/), 'jump DOCKER'],
      ['nat', 'DOCKER', iptNum(save, 'nat', 'DOCKER', /-j DNAT/), 'accept'],
      ['filter', 'FORWARD', iptNum(save, 'filter', 'FORWARD', /-j DOCKER-USER/), 'jump DOCKER-USER'],
      ['filter', 'DOCKER-USER', 1, 'return'],
      ['filter', 'FORWARD', iptNum(save, 'filter', 'FORWARD', /-j DOCKER-ISOLATION-STAGE-1/), 'jump DOCKER-ISOLATION-STAGE-1'],
      ['filter', 'DOCKER-ISOLATION-STAGE-1', iptNum(save, 'filter', 'DOCKER-ISOLATION-STAGE-1', /-j RETURN/), 'return'],
      ['filter', 'FORWARD', iptNum(save, 'filter', 'FORWARD', /-o docker0 -j DOCKER/), 'jump DOCKER'],
      ['filter', 'DOCKER', iptNum(save, 'filter', 'DOCKER', /--dport 80 -j ACCEPT/), 'accept'],
      ['nat', 'POSTROUTING', null, 'policy accept'],
    ]);
    const dnat = p?.steps[1];
    expect(dnat).toMatchObject({ family: 'ip', hook: 'prerouting', baseChain: 'PREROUTING', priority: -100, kind: 'rule', verdictKind: 'accept' });
    expect(dnat?.rule).toMatch(/^iifname != "docker0" tcp dport 8000 counter packets \d+ bytes \d+ dnat to 172\.17\.0\.2:80$/);
    expect(dnat?.handle).toBeGreaterThan(0);
    // regular chains inherit hook and base chain
    expect(p?.steps[3]).toMatchObject({ chain: 'DOCKER-USER', hook: 'forward', baseChain: 'FORWARD', priority: 0 });
    expect(p?.steps[0]).toMatchObject({ verdictKind: 'jump', target: 'DOCKER' });
    // the header at each hook shows the DNAT
    expect(p?.headers.map((h) => [h.hook, h.header.daddr, h.header.dport])).toEqual([
      ['prerouting', '10.0.10.26', 8000],
      ['forward', '172.17.0.2', 80],
      ['postrouting', '172.17.0.2', 80],
    ]);
    expect(p?.final).toBe('policy accept');
    expect(p?.dropped).toBe(false);
  });

  it('joins a reply whose trace id changed between hooks, and splits packets that reuse an id', () => {
    const { t } = load('default-ext-to-published');
    const synack = t.packets.find((p) => p.first?.saddr === '172.17.0.2' && p.first?.tcpFlags === '0x12');
    expect(synack).toBeDefined();
    // the SYN-ACK entered the trace table under one id and reached filter FORWARD under another
    const ids = new Set(
      t.text
        .split('\n')
        .filter((l) => l.includes('tcp flags == 0x12'))
        .map((l) => l.split(' ')[2]),
    );
    expect(synack?.traceIds.length).toBe(ids.size);
    expect(synack?.hooks).toEqual(['forward']);
    expect(synack?.steps.at(-1)?.rule).toContain('iifname "docker0" oifname != "docker0"');
    // every packet is seen at most once per base chain
    for (const p of t.packets) {
      const bases = p.headers.map((h) => `${h.table} ${h.chain}`);
      expect(new Set(bases).size, JSON.stringify(bases)).toBe(bases.length);
    }
    const ids2 = t.packets.flatMap((p) => p.traceIds);
    expect(ids2.length).toBeGreaterThan(new Set(ids2).size); // ids are reused by later packets
  });

  it('default, hairpin: nat DOCKER returns for docker0; docker-proxy connects from the gateway through OUTPUT', () => {
    const { t, save } = load('default-hairpin');
    expect(t.skipped).toEqual([]);
    const p = syn(t, '10.0.10.26', 8000);
    const ret = p?.steps.find((s) => s.table === 'nat' && s.chain === 'DOCKER');
    expect(ret).toMatchObject({ verdict: 'return', ruleNumber: iptNum(save, 'nat', 'DOCKER', /-i docker0 -j RETURN/) });
    // then INPUT to docker-proxy: filter INPUT is an empty iptables-nft built-in, absent from the kernel
    expect(p?.hooks).toEqual(['prerouting']);
    expect(p?.entry).toBe('prerouting');
    expect(p?.steps.at(-1)).toMatchObject({ table: 'nat', chain: 'PREROUTING', kind: 'policy', verdict: 'policy accept' });
    const proxied = syn(t, '172.17.0.2', 80);
    expect(proxied?.first?.saddr).toBe('172.17.0.1');
    expect(proxied?.entry).toBe('output');
    expect(proxied?.hooks).toEqual(['output', 'postrouting']);
    expect(proxied?.steps.find((s) => s.table === 'nat' && s.chain === 'OUTPUT')?.hook).toBe('output');
    const ct = t.conntrack.find((c) => c.orig.dport === 8000 && c.orig.src === '172.17.0.3');
    expect(ct?.reply.src).toBe('10.0.10.26'); // answered by the host itself (docker-proxy)
    expect(ct?.status).not.toContain('DST_NAT');
  });

  it('noproxy, self-hairpin: DNAT then MASQUERADE to the gateway (conntrack shows both)', () => {
    const { t, save } = load('noproxy-self-hairpin');
    expect(t.skipped).toEqual([]);
    const p = syn(t, '10.0.10.26', 8000);
    const masq = p?.steps.find((s) => s.table === 'nat' && s.chain === 'POSTROUTING' && /masquerade/.test(s.rule ?? ''));
    expect(masq?.hook).toBe('postrouting');
    expect(masq?.ruleNumber).toBe(iptNum(save, 'nat', 'POSTROUTING', /-s 172\.17\.0\.2\/32 -d 172\.17\.0\.2\/32 .*MASQUERADE/));
    const ct = t.conntrack.find((c) => c.orig.src === '172.17.0.2' && c.orig.dport === 8000);
    expect(ct?.reply).toMatchObject({ src: '172.17.0.2', sport: 80, dst: '172.17.0.1' });
    expect(ct?.status).toEqual(expect.arrayContaining(['DST_NAT', 'SRC_NAT', 'ASSURED', 'SEEN_REPLY']));
    expect(ct?.source).toBe('conntrack-tool');
    expect(ct?.tcpState).toBeDefined();
  });

  it('multi, cross-network: dropped in filter DOCKER-ISOLATION-STAGE-2 under FORWARD', () => {
    const { t, save } = load('multi-cross-network');
    expect(t.skipped).toEqual([]);
    const p = syn(t, '172.22.0.2', 80);
    expect(p?.dropped).toBe(true);
    expect(p?.final).toBe('drop');
    const drop = p?.steps.at(-1);
    expect(drop).toMatchObject({
      table: 'filter',
      chain: 'DOCKER-ISOLATION-STAGE-2',
      hook: 'forward',
      baseChain: 'FORWARD',
      verdict: 'drop',
      verdictKind: 'drop',
    });
    expect(drop?.ruleNumber).toBe(iptNum(save, 'filter', 'DOCKER-ISOLATION-STAGE-2', /-o br-neta -j DROP/));
    // retransmitted SYNs are packets of their own, each dropped
    expect(t.packets.filter((x) => x.first?.daddr === '172.22.0.2' && x.dropped).length).toBeGreaterThanOrEqual(1);
  });

  it('firewalld: inet firewalld chains (goto, jump, policy) beside iptables-nft tables', () => {
    const { t } = load('firewalld-ext-to-published');
    expect(t.skipped).toEqual([]);
    const p = syn(t, '10.0.10.26', 8000);
    const fw = p?.steps.filter((s) => s.family === 'inet' && s.table === 'firewalld') ?? [];
    expect(fw.length).toBeGreaterThan(5);
    expect(fw.some((s) => s.verdictKind === 'goto')).toBe(true);
    for (const s of fw) {
      expect(s.hook, `${s.chain}`).not.toBeNull();
      if (s.kind === 'rule') expect(s.ruleNumber, `${s.chain} ${s.rule}`).not.toBeNull();
    }
    // both tables at the prerouting hook, in priority order: firewalld's nat (dstnat + 10) after Docker's
    const pre = p?.steps.filter((s) => s.hook === 'prerouting' && s.baseChain !== null) ?? [];
    const prios = pre.map((s) => s.priority ?? 0);
    expect([...prios].sort((a, b) => a - b)).toEqual(prios);
    expect(p?.steps.find((s) => s.table === 'nat' && s.chain === 'DOCKER' && s.verdict === 'accept')?.rule).toContain('dnat to 172.17.0.2:80');
  });

  it('hostip, ping to the outside: one ICMP echo followed across a trace id change, MASQUERADEd, its reply de-NATed', () => {
    const { t, save } = load('hostip-ping-outside');
    expect(t.skipped).toEqual([]);
    const req = t.packets.find((p) => p.first?.icmpType === 'echo-request');
    expect(req?.first).toMatchObject({ proto: 'icmp', saddr: '172.17.0.3', daddr: '198.51.100.10', iif: 'docker0' });
    expect(req?.traceIds.length).toBeGreaterThanOrEqual(2);
    expect(req?.hooks).toEqual(['prerouting', 'forward', 'postrouting']);
    const masq = req?.steps.find((s) => s.table === 'nat' && s.chain === 'POSTROUTING' && s.verdict === 'accept');
    expect(masq?.rule).toContain('masquerade');
    expect(masq?.ruleNumber).toBe(iptNum(save, 'nat', 'POSTROUTING', /-s 172\.17\.0\.0\/16 ! -o docker0 -j MASQUERADE/));
    const rep = t.packets.find((p) => p.first?.icmpType === 'echo-reply');
    expect(rep?.first?.daddr).toBe('10.0.10.26');
    expect(rep?.headers.find((h) => h.hook === 'forward')?.header.daddr).toBe('172.17.0.3');
    expect(rep?.final).toBe('accept');
    const ct = t.conntrack.find((c) => c.orig.proto === 'icmp' && c.orig.dst === '198.51.100.10');
    expect(ct?.reply.dst).toBe('10.0.10.26');
    expect(ct?.orig.sport).toBeGreaterThan(0); // the echo id
    expect(ct?.status).toContain('SRC_NAT');
  });

  it('firewalld, direct access: rejected in inet firewalld (reject prints as verdict drop)', () => {
    const { t } = load('firewalld-direct-access');
    expect(t.skipped).toEqual([]);
    const p = syn(t, '172.17.0.2', 80);
    expect(p?.dropped).toBe(true);
    const drop = p?.steps.at(-1);
    expect(drop).toMatchObject({
      family: 'inet',
      table: 'firewalld',
      chain: 'filter_FWD_public',
      verdict: 'drop',
      hook: 'forward',
      baseChain: 'filter_FORWARD',
    });
    expect(drop?.rule).toBe('reject with icmpx admin-prohibited');
    const rules = indexNftRuleset(read('firewalld-direct-access.ruleset.json')).get('inet firewalld filter_FWD_public');
    expect(drop?.ruleNumber).toBe((rules?.handles.indexOf(drop?.handle ?? -1) ?? -2) + 1);
    expect(drop?.ruleNumber).toBeGreaterThan(0);
  });

  it('Docker 29 nft golden: vmap jumps to per-bridge chains, named chains keep nft rule order', () => {
    const { t } = load('nft29-ext-to-published');
    expect(t.skipped).toEqual([]);
    const p = syn(t, '10.0.10.26', 8080);
    expect(p?.steps.map((s) => [s.chain, s.ruleNumber, s.verdict])).toEqual(
      expect.arrayContaining([
        ['nat-PREROUTING', 1, 'jump nat-prerouting-and-output'],
        ['nat-prerouting-and-output', 1, 'accept'],
        ['filter-FORWARD', 1, 'jump filter-forward-in__br-dummy'],
        ['filter-forward-in__br-dummy', 3, 'accept'],
      ]),
    );
    const acc = p?.steps.find((s) => s.chain === 'filter-forward-in__br-dummy');
    expect(acc).toMatchObject({ family: 'ip', table: 'docker-bridges', hook: 'forward', baseChain: 'filter-FORWARD' });
  });
});

describe('parseNftTrace on hand-made input', () => {
  const RULESET = JSON.stringify({
    nftables: [
      { chain: { family: 'ip', table: 'filter', name: 'FORWARD', handle: 1, type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } },
      { chain: { family: 'ip', table: 'filter', name: 'X', handle: 2 } },
      { rule: { family: 'ip', table: 'filter', chain: 'FORWARD', handle: 7, expr: [] } },
      { rule: { family: 'ip', table: 'filter', chain: 'FORWARD', handle: 5, expr: [] } },
      { rule: { family: 'ip', table: 'filter', chain: 'X', handle: 9, expr: [] } },
    ],
  });
  const TEXT = [
    'trace id 0000abcd ip jl_trace pre packet: iif "eth0" ip saddr 10.0.10.5 ip daddr 172.17.0.2 ip id 7 ip length 84 icmp type echo-request icmp code net-unreachable icmp id 3 icmp sequence 1 ',
    'trace id 0000abcd ip jl_trace pre unknown rule handle 3 (verdict continue)',
    'trace id 0000abcd ip jl_trace pre policy accept ',
    'trace id 0000abcd ip filter FORWARD packet: iif "eth0" oif "docker0" ip saddr 10.0.10.5 ip daddr 172.17.0.2 ip id 7 ip length 84 icmp type echo-request icmp id 3 ',
    'trace id 0000abcd ip filter FORWARD rule counter packets 1 bytes 84 jump X # handle 7 (verdict jump X)',
    'trace id 0000abcd ip filter X verdict continue ',
    'trace id 0000abcd ip filter FORWARD unknown rule handle 5 (verdict goto X)',
    'trace id 0000abcd ip filter FORWARD policy drop ',
    'garbage line',
    'trace id 0000abcd ip filter FORWARD rule accept # handle 5',
  ].join('\n');

  it('a policy line with the packet\'s mark appended (kube-proxy\'s 0x4000) is still "policy accept|drop"', () => {
    const t = parseNftTrace(TEXT.replace('FORWARD policy drop ', 'FORWARD policy drop meta mark 0x00004000 '), { ruleset: RULESET });
    expect(t.packets[0]?.steps.at(-1)).toMatchObject({ kind: 'policy', verdict: 'policy drop' });
    expect(t.packets[0]?.dropped).toBe(true);
  });

  it('reads ICMP headers, unknown rules, implicit returns, policies, and counts bad lines', () => {
    const t = parseNftTrace(TEXT, { ruleset: RULESET });
    expect(t.packets.length).toBe(1);
    const p = t.packets[0];
    expect(p?.first).toMatchObject({ proto: 'icmp', icmpType: 'echo-request', icmpId: 3, ipId: 7, length: 84, iif: 'eth0' });
    expect(p?.steps.map((s) => [s.chain, s.kind, s.handle, s.ruleNumber, s.verdict, s.hook])).toEqual([
      ['FORWARD', 'rule', 7, 1, 'jump X', 'forward'],
      ['X', 'return', null, null, 'continue', 'forward'],
      ['FORWARD', 'rule', 5, 2, 'goto X', 'forward'],
      ['FORWARD', 'policy', null, null, 'policy drop', 'forward'],
    ]);
    expect(p?.steps[2]?.rule).toBeNull();
    expect(p?.dropped).toBe(true);
    expect(t.skipped.map((s) => [s.line, s.reason])).toEqual([
      [9, 'not a trace line'],
      [10, 'rule line without "(verdict …)"'],
    ]);
  });

  it('never throws on truncated or random input', () => {
    const real = read('default-ext-to-published.trace.txt');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: real.length }), fc.string(), (cut, junk) => {
        const t = parseNftTrace(real.slice(0, cut) + junk);
        expect(Array.isArray(t.packets)).toBe(true);
      }),
      { numRuns: 200 },
    );
    expect(parseNftTrace('').packets).toEqual([]);
    expect(indexNftRuleset('{not json').size).toBe(0);
    expect(indexNftRuleset({ nftables: 'x' }).size).toBe(0);
  });

  it('reads packet headers of IPv6 and UDP', () => {
    expect(
      parsePacketHeader('iif "eth0" ip6 saddr fd00::1 ip6 daddr fd00::2 ip6 hoplimit 64 udp sport 5353 udp dport 53 udp length 20'),
    ).toMatchObject({
      saddr: 'fd00::1',
      daddr: 'fd00::2',
      proto: 'udp',
      sport: 5353,
      dport: 53,
      ttl: 64,
    });
  });
});

describe('parseConntrackList', () => {
  it('reads conntrack -L -o extended,id (tcp, udp, icmp, unknown), derives NAT bits, skips junk', () => {
    const text = [
      'ipv4     2 tcp      6 117 TIME_WAIT src=10.0.10.5 dst=10.0.10.26 sport=40000 dport=8000 src=172.17.0.2 dst=10.0.10.5 sport=80 dport=40000 [ASSURED] mark=0 use=1 id=3583820322',
      'ipv4     2 udp      17 29 src=172.17.0.3 dst=198.51.100.10 sport=43290 dport=53 [UNREPLIED] src=198.51.100.10 dst=10.0.10.26 sport=53 dport=43290 mark=0 zone=3 use=1 id=12',
      'ipv4     2 icmp     1 29 src=172.17.0.3 dst=198.51.100.10 type=8 code=0 id=12 src=198.51.100.10 dst=10.0.10.26 type=0 code=0 id=12 mark=0 use=1 id=99',
      'ipv4     2 unknown  2 541 src=172.17.0.1 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=172.17.0.1 mark=0 use=1 id=5',
      'conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.',
      'ipv4 2 tcp',
    ].join('\n');
    const { entries, skipped } = parseConntrackList(text);
    expect(skipped).toBe(1);
    expect(entries.map((e) => [e.id, e.orig.proto, e.tcpState ?? null, e.status.filter((s) => s.endsWith('NAT'))])).toEqual([
      ['3583820322', 'tcp', 'TIME_WAIT', ['DST_NAT']],
      ['12', 'udp', null, ['SRC_NAT']],
      ['99', 'icmp', null, ['SRC_NAT']],
      ['5', 'other', null, []],
    ]);
    expect(entries[1]?.zone).toBe(3);
    expect(entries[1]?.status).not.toContain('SEEN_REPLY');
    expect(entries[2]?.orig).toMatchObject({ sport: 12, dport: 12, icmpType: 8, icmpCode: 0, protoNum: 1 });
  });
});
