/**
 * Subscription filters and the web page's journey steps (src/output/web/journey-view.js is
 * plain browser JS without DOM access, so it runs here too).
 */
import { describe, expect, it } from 'vitest';
import { eventMatches, flowMatches } from '../../src/output/flow-filter.js';
import { parseClientMessage } from '../../src/output/subscription.js';
import { EventFactory, masqueradeFlow, publishedFlow } from './serve-helpers.js';
// @ts-expect-error plain JS module of the web page
import * as view from '../../src/output/web/journey-view.js';

describe('filters', () => {
  const web = publishedFlow('w', 40000);
  const masq = masqueradeFlow('m', 50000);
  it('matches each criterion on the flow', () => {
    expect(flowMatches({}, web)).toBe(true);
    expect(flowMatches({ port: 8000 }, web)).toBe(true); // published port (original tuple)
    expect(flowMatches({ port: 80 }, web)).toBe(true); // container port (reply tuple)
    expect(flowMatches({ port: 40000 }, web)).toBe(true);
    expect(flowMatches({ port: 8080 }, web)).toBe(false);
    expect(flowMatches({ protocol: 'tcp' }, web)).toBe(true);
    expect(flowMatches({ protocol: 'udp' }, web)).toBe(false);
    expect(flowMatches({ container: 'web' }, web)).toBe(true);
    expect(flowMatches({ container: 'we' }, web)).toBe(false);
    expect(flowMatches({ network: 'bridge' }, web)).toBe(true);
    expect(flowMatches({ network: 'docker1' }, web)).toBe(false);
    expect(flowMatches({ verdict: 'accept' }, web)).toBe(true);
    expect(flowMatches({ verdict: 'drop' }, web)).toBe(false);
    expect(
      flowMatches(
        { verdict: 'drop' },
        { ...web, explanation: null, drops: [{ timeUs: 1, reason: 'NETFILTER_DROP', iface: null, tuple: null, rule: null }] },
      ),
    ).toBe(true);
    expect(flowMatches({ natOnly: true }, web)).toBe(true);
    expect(flowMatches({ natOnly: true }, { ...web, nat: { dnat: null, snat: null } })).toBe(false);
    expect(flowMatches({ natOnly: true, container: 'client', protocol: 'udp', port: 9000 }, masq)).toBe(true);
    expect(flowMatches({ natOnly: true, container: 'client', protocol: 'tcp' }, masq)).toBe(false);
  });
  it('ports never match ICMP echo ids', () => {
    const icmp = { ...masq, orig: { ...masq.orig, proto: 'icmp' as const, protoNum: 1, sport: 7, dport: 7 }, reply: null, legs: [] };
    expect(flowMatches({ port: 7 }, icmp)).toBe(false);
  });
  it('types, and stream-level events', () => {
    const f = new EventFactory();
    const [drop, ruleset, stats, notice] = f.others();
    expect(eventMatches({ port: 1 }, ruleset!)).toBe(true);
    expect(eventMatches({ port: 1 }, stats!)).toBe(true);
    expect(eventMatches({ types: ['drop'] }, stats!)).toBe(false);
    expect(eventMatches({ types: ['drop'] }, drop!)).toBe(true);
    expect(eventMatches({ verdict: 'accept' }, drop!)).toBe(false);
    expect(eventMatches({ port: 80, protocol: 'tcp' }, drop!)).toBe(true);
    expect(eventMatches({ container: 'client' }, drop!, (id) => (id === 'c1' ? masq : undefined))).toBe(true);
    expect(eventMatches({ container: 'web' }, drop!, (id) => (id === 'c1' ? masq : undefined))).toBe(false);
    expect(eventMatches({ container: 'client' }, drop!)).toBe(false);
    expect(eventMatches({ container: 'x' }, notice!)).toBe(true);
  });
  it('parses client messages without throwing, whatever they are', () => {
    for (const text of [
      '',
      '{',
      'null',
      '"x"',
      '{"type":"subscribe","filter":{"port":80}}',
      '\u0000\uffff',
      '{"__proto__":{"x":1},"type":"subscribe"}',
    ]) {
      expect(() => parseClientMessage(text, 4096)).not.toThrow();
    }
    expect(parseClientMessage('{"type":"subscribe","filter":{"port":80}}', 4096)).toMatchObject({ ok: true });
    expect(parseClientMessage('{"type":"subscribe"}', 10)).toMatchObject({ ok: false, code: 'E_TOO_LARGE' });
    expect(parseClientMessage('{"type":"subscribe","filter":{"verdict":"maybe"}}', 4096)).toMatchObject({
      ok: false,
      code: 'E_BAD_MESSAGE',
      message: expect.stringMatching(/\/filter\/verdict must be equal to one of the allowed values \("accept", "drop"/),
    });
  });
});

describe('journey view (web page)', () => {
  it('tells a published-port flow as numbered steps: in on eth0, DNAT, forward, out on docker0, replies', () => {
    const steps = view.journeySteps(publishedFlow('w', 40000)) as { kind: string; title: string; detail?: string; rule?: string; verdict?: string }[];
    const titles = steps.map((s) => s.title);
    expect(titles[0]).toBe('arrives on eth0');
    expect(steps[0]!.detail).toMatch(/^tcp 10\.0\.10\.5:40000 → 10\.0\.10\.26:8000/);
    const dnat = steps.find((s) => s.verdict === 'dnat')!;
    expect(dnat.title).toBe('prerouting · ip nat DOCKER #2');
    expect(dnat.detail).toBe('DNAT 10.0.10.26:8000 → 172.17.0.2:80');
    expect(dnat.rule).toMatch(/--to-destination 172\.17\.0\.2:80/);
    const leave = titles.indexOf('leaves on docker0');
    expect(leave).toBeGreaterThan(titles.indexOf(dnat.title));
    expect(steps[leave]!.detail).toMatch(/10\.0\.10\.5:40000 → 172\.17\.0\.2:80/);
    expect(titles.filter((t) => t.startsWith('reply on'))).toEqual(['reply on docker0', 'reply on eth0']);
    expect(titles.at(-1)).toBe('verdict: ACCEPT');
    expect(titles).toContain('crossed the host in 31 µs (first packet, ingress to egress leg)');
    const proxied = view.journeySteps({ ...publishedFlow('w', 40000), proxiedBy: { pid: 42, peerFlowId: 'ct9' } }) as {
      title: string;
      peer?: string;
    }[];
    expect(proxied.find((s) => s.peer === 'ct9')?.title).toBe('docker-proxy (pid 42) carries this journey on');
    expect(steps.find((s) => s.verdict === 'policy-accept')!.rule).toBe('policy of POSTROUTING');
    expect(view.natBeforeAfter(publishedFlow('w', 40000))).toEqual({
      before: '10.0.10.5:40000 → 10.0.10.26:8000',
      after: '10.0.10.5:40000 → 172.17.0.2:80',
      text: 'DNAT 10.0.10.26:8000 → 172.17.0.2:80',
    });
    expect(view.natBeforeAfter(masqueradeFlow('m', 50000))).toMatchObject({
      before: '172.17.0.3:50000 → 10.0.10.5:9000',
      after: '10.0.10.26:50000 → 10.0.10.5:9000',
    });
  });
  it("draws the reply's own path: its rules, the rewrite conntrack makes from the entry, its verdict", () => {
    const f = publishedFlow('w', 40000);
    const step = (chain: string, rule: string, verdict: string) => ({
      hook: 'forward',
      family: 'ip',
      table: 'filter',
      chain,
      rule,
      ruleNumber: 1,
      handle: null,
      verdict,
    });
    const reply = {
      verdict: 'accept',
      steps: [step('FORWARD', '-A FORWARD -j DOCKER-USER', 'jump'), step('FORWARD', '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT', 'accept')],
      nat: { dnat: null, snat: { from: '172.17.0.2:80', to: '10.0.10.26:8000' } },
      packet_out: null,
      indeterminate: [],
      notes: ['routing: 10.0.10.5 is forwarded out of eth0'],
      direction: 'reply',
      conntrack_nat: [{ hook: 'postrouting', manip: 'src', kind: 'de-dnat', from: '172.17.0.2:80', to: '10.0.10.26:8000', afterSteps: 2 }],
    };
    const steps = view.journeySteps({ ...f, explanation: { ...f.explanation!, reply } } as never) as {
      kind: string;
      title: string;
      detail?: string;
    }[];
    const titles = steps.map((s) => s.title);
    const start = titles.indexOf('the reply, explained from its conntrack entry');
    expect(start).toBe(titles.indexOf('reply on docker0') + 1);
    expect(titles.slice(start + 1, start + 4)).toEqual([
      'forward · ip filter FORWARD #1',
      'forward · ip filter FORWARD #1',
      'postrouting · conntrack: destination NAT undone',
    ]);
    expect(steps[start + 3]!.detail).toBe('source 172.17.0.2:80 → 10.0.10.26:8000 (from the entry; no nat chain is consulted)');
    expect(titles.indexOf('reply verdict: ACCEPT')).toBeLessThan(titles.indexOf('reply on eth0'));
    expect(titles).toContain('reply: routing: 10.0.10.5 is forwarded out of eth0');
    expect(titles.at(-1)).toBe('verdict: ACCEPT');
    const none = view.journeySteps({
      ...f,
      explanation: {
        ...f.explanation!,
        reply: {
          ...reply,
          steps: [],
          conntrack_nat: [],
          notes: [],
          verdict: 'indeterminate',
          indeterminate: [{ chain: '(conntrack)', rule: '(no conntrack entry)', reason: 'no conntrack entry' }],
        },
      },
    } as never) as { title: string }[];
    expect(none.map((s) => s.title)).toContain('reply indeterminate: no conntrack entry');
  });
  it('shows drops and unexplained flows', () => {
    const f = {
      ...masqueradeFlow('m', 50000),
      explanation: null,
      drops: [
        {
          timeUs: 1,
          reason: 'NETFILTER_DROP',
          iface: 'docker0',
          tuple: null,
          rule: { table: 'filter', chain: 'DOCKER-ISOLATION-STAGE-2', rule: '-A DOCKER-ISOLATION-STAGE-2 -o docker1 -j DROP' },
        },
      ],
    };
    const steps = view.journeySteps(f) as { kind: string; title: string; detail?: string }[];
    expect(steps.some((s) => s.kind === 'note' && /no explanation/.test(s.title))).toBe(true);
    const d = steps.find((s) => s.kind === 'drop')!;
    expect(d.title).toBe('dropped at docker0: NETFILTER_DROP');
    expect(d.detail).toMatch(/DOCKER-ISOLATION-STAGE-2/);
    expect(view.flowVerdict(f)).toBe('drop');
  });
});
