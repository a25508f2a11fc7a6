/**
 * `--verify`'s pure parts: the trace table journey adds (it never changes a verdict), the exact
 * match of `explain --verify`, and the verdicts of the comparison (verified, contradicted at the
 * first differing step with the kernel's path winning, an indeterminate step settled by the trace,
 * an incomplete trace unverified) on `nft monitor trace` text in the shape nftables 1.0.6 prints.
 */
import { describe, expect, it } from 'vitest';
import { verifyWithTrace } from '../../src/explain/flow-verify.js';
import { packetMatch } from '../../src/explain/packet-verify.js';
import type { FlowInfo } from '../../src/model/events.js';
import type { Explanation, ExplainStep } from '../../src/model/explanation.js';
import type { Tuple } from '../../src/model/tuple.js';
import { parseNftTrace } from '../../src/netfilter/kernel-trace.js';
import { exactTraceDefinition, TRACE_PRIORITY, traceTableDefinition } from '../../src/netfilter/trace-arm.js';
import { isTraceTableName, withoutTraceTables } from '../../src/ruleset/model.js';

const T = 'journey_trace_4242';
const tuple: Tuple = { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', dst: '10.0.10.26', sport: 40000, dport: 8000 };
const flow: FlowInfo = {
  id: 'f1',
  orig: tuple,
  reply: { ...tuple, src: '172.17.0.2', dst: '10.0.10.5', sport: 80, dport: 40000 },
  nat: { dnat: null, snat: null },
  legs: [],
  names: [],
  ctStatus: [],
  explanation: null,
  drops: [],
};
const hdr = 'iif "eth0" ip saddr 10.0.10.5 ip daddr 10.0.10.26 ip id 7 ip protocol tcp ip length 60 tcp sport 40000 tcp dport 8000 tcp flags == syn';
const hdr2 = hdr.replace('ip daddr 10.0.10.26', 'ip daddr 172.17.0.2').replace('tcp dport 8000', 'tcp dport 80');
/** The kernel's lines for the packet: DNAT in nat DOCKER, then FORWARD → DOCKER-USER (`last` is its first rule). */
const traceText = (docker_user: string, cut = false): string =>
  [
    `trace id aa ip ${T} pre packet: ${hdr}`,
    `trace id aa ip nat PREROUTING packet: ${hdr}`,
    'trace id aa ip nat PREROUTING rule fib daddr type local counter packets 1 bytes 60 jump DOCKER # handle 6 (verdict jump DOCKER)',
    'trace id aa ip nat DOCKER rule iifname != "docker0" tcp dport 8000 counter packets 1 bytes 60 dnat to 172.17.0.2:80 # handle 9 (verdict accept)',
    ...(cut
      ? []
      : [
          `trace id aa ip filter FORWARD packet: ${hdr2}`,
          'trace id aa ip filter FORWARD rule counter packets 1 bytes 60 jump DOCKER-USER # handle 20 (verdict jump DOCKER-USER)',
          docker_user,
          'trace id aa ip filter FORWARD rule counter packets 1 bytes 60 accept # handle 21 (verdict accept)',
        ]),
  ].join('\n');
const ruleset = {
  nftables: [
    { chain: { family: 'ip', table: T, name: 'pre', hook: 'prerouting', prio: TRACE_PRIORITY, type: 'filter', policy: 'accept' } },
    { chain: { family: 'ip', table: 'nat', name: 'PREROUTING', hook: 'prerouting', prio: -100, type: 'nat', policy: 'accept' } },
    { rule: { family: 'ip', table: 'nat', chain: 'PREROUTING', handle: 6 } },
    { chain: { family: 'ip', table: 'nat', name: 'DOCKER' } },
    { rule: { family: 'ip', table: 'nat', chain: 'DOCKER', handle: 8 } },
    { rule: { family: 'ip', table: 'nat', chain: 'DOCKER', handle: 9 } },
    { chain: { family: 'ip', table: 'filter', name: 'FORWARD', hook: 'forward', prio: 0, type: 'filter', policy: 'drop' } },
    { rule: { family: 'ip', table: 'filter', chain: 'FORWARD', handle: 20 } },
    { rule: { family: 'ip', table: 'filter', chain: 'FORWARD', handle: 21 } },
    { chain: { family: 'ip', table: 'filter', name: 'DOCKER-USER' } },
    { rule: { family: 'ip', table: 'filter', chain: 'DOCKER-USER', handle: 30 } },
  ],
};
const RETURN = 'trace id aa ip filter DOCKER-USER rule counter packets 1 bytes 60 return # handle 30 (verdict return)';
const ACCEPT = 'trace id aa ip filter DOCKER-USER rule tcp dport 80 counter packets 1 bytes 60 accept # handle 30 (verdict accept)';

const step = (
  hook: ExplainStep['hook'],
  table: string,
  chain: string,
  n: number | null,
  verdict: ExplainStep['verdict'],
  target?: string,
): ExplainStep => ({
  hook,
  family: 'ip',
  table,
  chain,
  rule: n === null ? null : `rule ${n}`,
  ruleNumber: n,
  handle: null,
  verdict,
  ...(target !== undefined ? { target } : {}),
});
const sim = (user: ExplainStep, extra: Partial<Explanation> = {}): Explanation => ({
  verdict: 'accept',
  steps: [
    step('prerouting', 'nat', 'PREROUTING', 1, 'jump', 'DOCKER'),
    step('prerouting', 'nat', 'DOCKER', 2, 'dnat'),
    step('forward', 'filter', 'FORWARD', 1, 'jump', 'DOCKER-USER'),
    user,
    step('forward', 'filter', 'FORWARD', 2, 'accept'),
  ],
  nat: { dnat: { from: '10.0.10.26:8000', to: '172.17.0.2:80' }, snat: null },
  packet_out: null,
  indeterminate: [],
  ...extra,
});
const check = (ex: Explanation, text: string): Explanation => {
  const t = parseNftTrace(text, { ruleset, traceTable: T });
  const p = t.packets[0];
  expect(p).toBeDefined();
  return verifyWithTrace(ex, flow, t.packets, p as NonNullable<typeof p>, { tables: [], notes: [] }, T);
};

describe('the trace table', () => {
  it('hooks prerouting and output first, traces only new 5-tuples at the rate asked, and never drops', () => {
    const d = traceTableDefinition(T, 5);
    expect(d).toContain(`table inet ${T}`);
    expect(d).toContain(`type filter hook prerouting priority ${TRACE_PRIORITY}; policy accept;`);
    expect(d).toContain(`type filter hook output priority ${TRACE_PRIORITY}; policy accept;`);
    expect(d).toContain('limit rate 5/second burst 5 packets meta nftrace set 1');
    expect(d).not.toMatch(/\b(drop|reject|dnat|snat|masquerade|redirect|queue)\b/);
    expect(d.match(/policy (\w+)/g)?.every((x) => x === 'policy accept')).toBe(true);
    expect(exactTraceDefinition(T, 'ip daddr 1.2.3.4')).not.toMatch(/\bdrop\b/);
  });
  it('its name is known to the ruleset loader, which leaves it out', () => {
    expect(isTraceTableName(T)).toBe(true);
    expect(isTraceTableName('journey_trace_')).toBe(false);
    expect(isTraceTableName('jl_trace')).toBe(false);
    const rs = withoutTraceTables({ tables: [{ family: 'inet', name: T } as never, { family: 'ip', name: 'filter' } as never], notes: [] });
    expect(rs.tables.map((t) => t.name)).toEqual(['filter']);
  });
  it('explain --verify matches exactly the packet asked about', () => {
    expect(packetMatch({ tuple, srcGiven: true, sportGiven: true, local: false, iif: 'eth0' })).toBe(
      'iifname "eth0" ip saddr 10.0.10.5 ip daddr 10.0.10.26 meta l4proto tcp tcp sport 40000 tcp dport 8000 tcp flags & (fin|syn|rst|ack) == syn',
    );
    expect(packetMatch({ tuple: { ...tuple, proto: 'icmp', protoNum: 1 }, srcGiven: false, sportGiven: false, local: true })).toBe(
      'ip daddr 10.0.10.26 icmp type echo-request',
    );
  });
});

describe('verifyWithTrace', () => {
  it('verified: the same steps and the NAT of the conntrack entry', () => {
    const ex = check(sim(step('forward', 'filter', 'DOCKER-USER', 1, 'return')), traceText(RETURN));
    expect(ex.verification).toEqual({ result: 'verified', kernel_steps: 5 });
    expect(ex.steps[3]?.verdict).toBe('return');
  });
  it('contradicted: the first differing step, and the kernel wins', () => {
    const s = sim(step('forward', 'filter', 'DOCKER-USER', 1, 'return'));
    const ex = check(s, traceText(ACCEPT));
    expect(ex.verification?.result).toBe('contradicted');
    expect(ex.verification?.first_difference).toEqual({
      index: 3,
      kernel: 'ip filter DOCKER-USER #1 accept',
      simulator: 'ip filter DOCKER-USER #1 return',
    });
    // the event's explanation is the kernel's path (4 steps: DOCKER-USER accepted), the simulator's is beside it
    expect(ex.steps.map((x) => `${x.chain} ${x.verdict}`)).toEqual([
      'PREROUTING jump',
      'DOCKER dnat',
      'FORWARD jump',
      'DOCKER-USER accept',
      'FORWARD accept',
    ]);
    expect(ex.steps[3]?.rule).toBe('tcp dport 80 counter accept');
    expect(ex.verification?.simulated?.steps).toEqual(s.steps);
  });
  it('an indeterminate step is settled by the trace: verified, the kernel says what the rule did', () => {
    const user = { ...step('forward', 'filter', 'DOCKER-USER', 1, 'indeterminate'), rule: '-A DOCKER-USER -m statistic -j ACCEPT' };
    const s = sim(user, {
      verdict: 'indeterminate',
      indeterminate: [{ chain: 'ip filter DOCKER-USER', rule: '-A DOCKER-USER -m statistic -j ACCEPT', reason: 'not modelled' }],
    });
    const ex = check(s, traceText(ACCEPT));
    expect(ex.verification?.result).toBe('verified');
    expect(ex.verification?.resolved).toEqual([
      { chain: 'ip filter DOCKER-USER', rule: '-A DOCKER-USER -m statistic -j ACCEPT', kernel: 'matched: accept' },
    ]);
    expect(ex.verdict).toBe('accept');
    expect(ex.indeterminate).toEqual([]);
    expect(ex.verification?.simulated?.verdict).toBe('indeterminate');
  });
  it('a trace that stops short of an equal path is unverified, not contradicted', () => {
    const ex = check(sim(step('forward', 'filter', 'DOCKER-USER', 1, 'return')), traceText(RETURN, true));
    expect(ex.verification?.result).toBe('unverified');
    expect(ex.verification?.reason).toMatch(/incomplete/);
  });
  it('the NAT differs from the conntrack entry: contradicted at the NAT', () => {
    const s = sim(step('forward', 'filter', 'DOCKER-USER', 1, 'return'), {
      nat: { dnat: { from: '10.0.10.26:8000', to: '172.17.0.9:80' }, snat: null },
    });
    const ex = check(s, traceText(RETURN));
    expect(ex.verification?.result).toBe('contradicted');
    expect(ex.verification?.first_difference?.kernel).toBe('nat: dnat 10.0.10.26:8000->172.17.0.2:80');
  });
});
