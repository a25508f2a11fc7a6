/**
 * The reply direction explained from the conntrack entry (issue: the whole journey, both
 * directions): the NAT conntrack reverses is shown where it happens (de-SNAT before routing,
 * de-DNAT after), no nat chain is consulted, and without the entry the answer is indeterminate.
 * Inputs: the lab recording of the default scenario (ruleset, addresses, routes, conntrack events).
 */
import { describe, expect, it } from 'vitest';
import { findEntry, readConntrackFile } from '../../src/conntrack/lookup.js';
import { compileRuleset, explainPacket, loadHostContextFiles, loadRulesetFiles } from '../../src/explain/explain.js';
import { formatExplanation, pathItems } from '../../src/explain/format.js';
import type { ExplainStep } from '../../src/model/explanation.js';
import type { Tuple } from '../../src/model/tuple.js';

const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;

async function compiled() {
  const rs = await loadRulesetFiles({ iptablesSave: [`${DIR}iptables-save.txt`] });
  const host = await loadHostContextFiles({ addrs: `${DIR}addrs.json`, routes: `${DIR}routes.json` });
  return compileRuleset(rs, host);
}

const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });

describe('explain --reply from the conntrack entry', () => {
  it('a masqueraded connection: de-SNAT at prerouting before routing, then filter FORWARD out of docker0', async () => {
    const c = await compiled();
    const ct = await readConntrackFile(`${DIR}conntrack.txt`);
    const reply = tcp('198.51.100.10', 80, '10.0.10.26', 39432);
    const hit = findEntry(ct.entries, reply, 'reply');
    expect(hit?.direction).toBe('reply');
    const ex = explainPacket(c, { tuple: reply, iif: 'eth0', ctState: 'established', direction: 'reply', conntrack: hit!.entry });
    expect(ex.verdict).toBe('accept');
    expect(ex.direction).toBe('reply');
    expect(ex.conntrack_nat).toEqual([
      { hook: 'prerouting', manip: 'dst', kind: 'de-snat', from: '10.0.10.26:39432', to: '172.17.0.3:39432', afterSteps: 0 },
    ]);
    // no nat chain is consulted for a packet of an existing connection
    expect(ex.steps.filter((s) => s.table === 'nat')).toEqual([]);
    expect(ex.packet_out).toMatchObject({ dst: '172.17.0.3', dport: 39432, oif: 'docker0', delivery: 'forward' });
    expect(ex.steps.at(-1)).toMatchObject({ table: 'filter', chain: 'FORWARD', ruleNumber: 3, verdict: 'accept' });
    const text = formatExplanation(ex, 'reply');
    expect(text).toMatch(/de-SNAT at prerouting: destination 10\.0\.10\.26:39432 → 172\.17\.0\.3:39432/);
    expect(text.indexOf('de-SNAT')).toBeLessThan(text.indexOf('── forward ──'));
  });

  it('a published port: the reply is forwarded to eth0 and de-DNATed at postrouting', async () => {
    const c = await compiled();
    const ct = await readConntrackFile(`${DIR}conntrack.txt`);
    const reply = tcp('172.17.0.2', 80, '10.0.10.5', 51136);
    const hit = findEntry(ct.entries, reply, 'reply');
    const ex = explainPacket(c, { tuple: reply, iif: 'docker0', ctState: 'established', direction: 'reply', conntrack: hit!.entry });
    expect(ex.verdict).toBe('accept');
    expect(ex.conntrack_nat?.map((n) => [n.hook, n.kind, n.from, n.to])).toEqual([['postrouting', 'de-dnat', '172.17.0.2:80', '10.0.10.26:8000']]);
    expect(ex.packet_out).toMatchObject({ src: '10.0.10.26', sport: 8000, oif: 'eth0' });
    expect(ex.steps.every((s) => s.hook === 'forward')).toBe(true);
  });

  it('without the entry a reply is indeterminate, named, never guessed', async () => {
    const c = await compiled();
    const ex = explainPacket(c, { tuple: tcp('198.51.100.10', 80, '10.0.10.26', 39432), iif: 'eth0', ctState: 'established', direction: 'reply' });
    expect(ex.verdict).toBe('indeterminate');
    expect(ex.indeterminate[0]).toMatchObject({ chain: '(conntrack)' });
    expect(ex.indeterminate[0]?.reason).toMatch(/without its connection's conntrack entry/);
  });

  it('base chains carry their hook priority', async () => {
    const c = await compiled();
    const ex = explainPacket(c, { tuple: tcp('10.0.10.5', 40000, '10.0.10.26', 8000), iif: 'eth0' });
    const pre = ex.steps.find((s) => s.table === 'nat' && s.chain === 'PREROUTING');
    expect(pre?.priority).toBe(-100);
    expect(ex.steps.find((s) => s.chain === 'DOCKER')?.priority).toBeUndefined();
    expect(formatExplanation(ex, 'x')).toMatch(/\[ip nat PREROUTING\] base chain, hook prerouting priority -100/);
  });

  it('chains entered and left without a matching rule are one item unless all are asked', () => {
    const st = (chain: string, verdict: ExplainStep['verdict'], rule: string | null, target?: string): ExplainStep => ({
      hook: 'forward',
      family: 'inet',
      table: 'firewalld',
      chain,
      rule,
      ruleNumber: null,
      handle: rule === null ? null : 1,
      verdict,
      ...(target ? { target } : {}),
    });
    const steps = [
      st('filter_FORWARD', 'jump', 'jump a', 'a'),
      st('a', 'return', null),
      st('filter_FORWARD', 'jump', 'jump b', 'b'),
      st('b', 'return', null),
      st('filter_FORWARD', 'accept', 'accept'),
    ];
    const items = pathItems(steps);
    expect(items.map((i) => i.kind)).toEqual(['empty', 'step']);
    expect(items[0]).toMatchObject({ first: 0, last: 3, chains: ['a', 'b'] });
    expect(pathItems(steps, true)).toHaveLength(5);
  });
});
