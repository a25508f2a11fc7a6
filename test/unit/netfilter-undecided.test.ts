import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { makeHostContext, parseIpAddr, parseIpRoute } from '../../src/ruleset/host-context.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { explainPacket, type PacketSpec } from '../../src/explain/explain.js';
import { compareSteps, type KernelStepLike } from '../../src/explain/kernel-compare.js';
import { formatExplanation } from '../../src/explain/format.js';
import type { Explanation } from '../../src/model/explanation.js';
import type { Ruleset } from '../../src/ruleset/model.js';

const FIX = join(new URL('../..', import.meta.url).pathname, 'test', 'fixtures', 'ruleset');
const host = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);
const ipt = (text: string): Ruleset => parseIptablesSave(text, { source: 'test' });
const path = (ex: Explanation): string[] =>
  ex.steps.map((s) => `${s.table} ${s.chain} ${s.ruleNumber === null ? '-' : `#${s.ruleNumber}`} ${s.verdict}`);
const explain = (rs: Ruleset, dport: number, extra: Partial<PacketSpec> = {}): Explanation =>
  explainPacket(compileRuleset(rs, host), {
    tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', dst: extra.local ? '10.0.10.26' : '10.0.10.26', sport: 40000, dport },
    iif: 'eth0',
    ...extra,
  });
/** The kernel's trace steps for a path of "table chain #n verdict" (what kernel-trace.ts gives). */
const kernel = (steps: readonly string[]): KernelStepLike[] =>
  steps.map((s) => {
    const [table, chain, num, ...v] = s.split(' ');
    const verdict = v.join(' ');
    const policy = num === '-';
    return {
      family: 'ip',
      table: table as string,
      chain: chain as string,
      kind: policy ? 'policy' : 'rule',
      rule: policy ? null : 'x',
      ruleNumber: policy ? null : Number((num as string).slice(1)),
      verdict: policy ? `policy ${verdict}` : verdict,
      verdictKind: verdict.split(' ')[0] as string,
      ...(verdict.startsWith('jump') ? { target: verdict.split(' ')[1] } : {}),
    };
  });

const UFW_LIKE = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -m recent --set --name ssh --rsource
-A INPUT -p tcp --dport 22 -m recent --update --seconds 60 --hitcount 4 --name ssh --rsource -j DROP
-A INPUT -p tcp --dport 22 -j ACCEPT
-A INPUT -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A INPUT -p tcp --dport 9000 -m limit --limit 1/sec -j ACCEPT
COMMIT
`;

describe('rules with a match the simulator cannot decide', () => {
  it('a LOG under -m limit stays in the path, marked, with both outcomes; the verdict is still decided', () => {
    const ex = explain(ipt(UFW_LIKE), 8000);
    expect(path(ex)).toEqual(['filter INPUT #4 continue', 'filter INPUT - policy-drop']);
    expect(ex.verdict).toBe('drop');
    expect(ex.indeterminate).toEqual([]);
    const log = ex.steps[0];
    expect(log?.optional).toBe(true);
    expect(log?.undecided).toMatch(/^logged if the limit allows \(-m limit --limit 3\/min.*\); the packet goes on to the next rule either way$/);
    expect(formatExplanation(ex, 'p')).toMatch(/\? logged if the limit allows/);
    // the kernel traces the LOG rule only when the limit let it match: both paths compare equal
    const ruleset = ipt(UFW_LIKE);
    expect(compareSteps(ex, kernel(['filter INPUT #4 continue', 'filter INPUT - drop']), ruleset).equal).toBe(true);
    expect(compareSteps(ex, kernel(['filter INPUT - drop']), ruleset).equal).toBe(true);
    // but not a path that differs elsewhere
    expect(compareSteps(ex, kernel(['filter INPUT - accept']), ruleset).equal).toBe(false);
  });

  it('-m recent --set always matches (it records the source); --update with a verdict stays indeterminate', () => {
    const ex = explain(ipt(UFW_LIKE), 22);
    expect(path(ex).slice(0, 2)).toEqual(['filter INPUT #1 continue', 'filter INPUT #2 indeterminate']);
    expect(ex.steps[0]?.undecided).toBeUndefined();
    expect(ex.verdict).toBe('indeterminate');
    expect(ex.indeterminate[0]?.reason).toMatch(/-m recent --update/);
  });

  it("a terminal rule under -m limit keeps today's indeterminate behaviour", () => {
    const ex = explain(ipt(UFW_LIKE), 9000);
    expect(path(ex)).toContain('filter INPUT #5 indeterminate');
    expect(ex.verdict).toBe('indeterminate');
  });
});

const KUBE = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SEP-C - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.0.10.26/32 -p tcp -m tcp --dport 31455 -j KUBE-SVC-WEB
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-B
-A KUBE-SVC-WEB -j KUBE-SEP-C
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 192.168.0.11:8080
-A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 192.168.0.12:8080
-A KUBE-SEP-C -p tcp -m tcp -j DNAT --to-destination 192.168.0.13:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 192.168.0.12/32 -p tcp --dport 8080 -j ACCEPT
-A FORWARD -d 192.168.0.11/32 -p tcp --dport 8080 -j ACCEPT
-A FORWARD -d 192.168.0.13/32 -p tcp --dport 8080 -j ACCEPT
COMMIT
`;

describe('load-balanced DNAT', () => {
  it('kube-proxy statistic chains: accept; DNAT to one of 3 endpoints; the path is one branch', () => {
    const ex = explain(ipt(KUBE), 31455);
    expect(ex.verdict).toBe('accept');
    expect(ex.indeterminate).toEqual([]);
    expect(ex.nat.dnat?.oneOf).toEqual(['192.168.0.11:8080', '192.168.0.12:8080', '192.168.0.13:8080']);
    expect(ex.nat.dnat?.to).toBe('192.168.0.11:8080');
    expect(path(ex).slice(0, 4)).toEqual([
      'nat PREROUTING #1 jump',
      'nat KUBE-SERVICES #1 jump',
      'nat KUBE-SVC-WEB #1 jump',
      'nat KUBE-SEP-A #1 dnat',
    ]);
    expect(ex.steps[2]?.undecided).toMatch(/chosen at random by the kernel \(-m statistic/);
    expect(formatExplanation(ex, 'p')).toMatch(
      /DNAT: 10\.0\.10\.26:31455 → one of 3 endpoints \(192\.168\.0\.11:8080, 192\.168\.0\.12:8080, 192\.168\.0\.13:8080/,
    );
  });

  it('live, the branch conntrack shows is the path (here the last endpoint, no statistic rule taken)', () => {
    const natOf = {
      orig: { src: '10.0.10.5', dst: '10.0.10.26', sport: 40000, dport: 31455 },
      reply: { src: '192.168.0.13', dst: '10.0.10.5', sport: 8080, dport: 40000 },
    };
    const ex = explain(ipt(KUBE), 31455, { natOf });
    expect(ex.nat.dnat?.to).toBe('192.168.0.13:8080');
    expect(path(ex).slice(0, 4)).toEqual([
      'nat PREROUTING #1 jump',
      'nat KUBE-SERVICES #1 jump',
      'nat KUBE-SVC-WEB #3 jump',
      'nat KUBE-SEP-C #1 dnat',
    ]);
    expect(path(ex)).toContain('filter FORWARD #3 accept');
    expect(ex.notes?.some((n) => /the path shown is the one conntrack shows/.test(n))).toBe(true);
  });

  it('where the branches disagree on the verdict, it is indeterminate and says why', () => {
    const rs = ipt(KUBE.replace('-A FORWARD -d 192.168.0.12/32 -p tcp --dport 8080 -j ACCEPT\n', ''));
    const ex = explain(rs, 31455);
    expect(ex.verdict).toBe('indeterminate');
    expect(ex.indeterminate.at(-1)?.reason).toMatch(/depends on the kernel's random choice: accept on 2, drop on 1 of 3 branches/);
  });

  it('nft numgen random mod 2 vmap: one of 2 endpoints', () => {
    const nat = (addr: string) => [{ dnat: { addr, port: 8080 } }];
    const items = [
      { table: { family: 'ip', name: 'kube', handle: 1 } },
      { chain: { family: 'ip', table: 'kube', name: 'pre', handle: 2, type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' } },
      { chain: { family: 'ip', table: 'kube', name: 'ep-a', handle: 3 } },
      { chain: { family: 'ip', table: 'kube', name: 'ep-b', handle: 4 } },
      {
        rule: {
          family: 'ip',
          table: 'kube',
          chain: 'pre',
          handle: 5,
          expr: [
            { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 31455 } },
            {
              vmap: {
                key: { numgen: { mode: 'random', mod: 2, offset: 0 } },
                data: {
                  set: [
                    [0, { goto: { target: 'ep-a' } }],
                    [1, { goto: { target: 'ep-b' } }],
                  ],
                },
              },
            },
          ],
        },
      },
      { rule: { family: 'ip', table: 'kube', chain: 'ep-a', handle: 6, expr: nat('192.168.0.11') } },
      { rule: { family: 'ip', table: 'kube', chain: 'ep-b', handle: 7, expr: nat('192.168.0.12') } },
    ];
    const ex = explain(parseNftJson({ nftables: items }, { source: 'test' }), 31455);
    expect(ex.verdict).toBe('accept');
    expect(ex.nat.dnat?.oneOf).toEqual(['192.168.0.11:8080', '192.168.0.12:8080']);
    expect(ex.steps[0]?.undecided).toMatch(/chosen by the kernel \(numgen/);
  });
});

describe('statistic --mode nth', () => {
  it('is not a random choice between branches: a terminal rule with it stays indeterminate', () => {
    const rs = ipt(
      KUBE.replace(
        '-A KUBE-SVC-WEB -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A',
        '-A KUBE-SVC-WEB -m statistic --mode nth --every 2 --packet 0 -j KUBE-SEP-A',
      ),
    );
    const ex = explain(rs, 31455);
    expect(ex.verdict).toBe('indeterminate');
    expect(ex.indeterminate[0]?.reason).toMatch(/--mode nth/);
    // the walk goes on past it as if it did not match; the random rule after it still branches
    expect(ex.nat.dnat?.oneOf).toEqual(['192.168.0.12:8080', '192.168.0.13:8080']);
  });
});
