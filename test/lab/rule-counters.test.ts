/**
 * `--rule-counters` in the lab (scenario default, Docker 20.10): a real connection from the external
 * namespace to the published port, ended by deleting its conntrack entry. The flow's end carries,
 * for the rules of its path, how much the kernel's counters grew; the test reads the same counters
 * itself (iptables-save -c) before the probe and after the end, on a lab with no other forwarded
 * traffic, and the two agree: the DNAT rule counted the connection's first packet only (nat sees
 * only new connections), FORWARD's jump to DOCKER-USER every forwarded packet of both directions.
 */
import { describe, expect, it } from 'vitest';
import { runProbe } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import type { FlowEvent, JourneyEvent } from '../../src/model/events.js';
import { formatRuleCounters } from '../../src/output/rule-counter-lines.js';
import { startPipeline, type Pipeline } from '../../src/pipeline/pipeline.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { countersOfRuleset, counterDelta, type RuleCounters } from '../../src/ruleset/rule-counters.js';
import { labTestId, useLab } from './lab-helpers.js';

const ID = labTestId('rc');
const lab = useLab(ID, 'default', { beforeDown: () => p?.stop().catch(() => undefined) });
let p: Pipeline | undefined;

async function kernelCounters(): Promise<RuleCounters> {
  const r = await run(['iptables-save', '-c'], { netns: lab.netns.host });
  return countersOfRuleset(parseIptablesSave(r.stdout, { family: 'ip', source: 'test' }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('--rule-counters', () => {
  it("a flow's end carries its rules' increments, equal to the kernel's counters read around it", async () => {
    p = await startPipeline({ netns: lab.netns.host, dockerHost: `unix://${lab.dockerHost!}`, ruleCounters: true });
    const evs: JourneyEvent[] = [];
    p.on('event', (e) => evs.push(e));
    await sleep(2500); // a reading of the counters before the first packet
    const before = await kernelCounters();
    const r = await runProbe(ID, 'ext-to-published');
    expect(r.answered, r.output).toBe(true);
    const sport = r.from.port;
    expect(sport, r.output).toBeDefined();
    const mine = (e: JourneyEvent): e is FlowEvent => e.type === 'flow.end' && e.flow.orig.sport === sport && e.flow.orig.dport === 8000;
    // end the connection now: its conntrack entry deleted (the kernel's DESTROY event ends the flow)
    for (let i = 0; i < 60 && !evs.some((e) => (e.type === 'flow.start' || e.type === 'flow.update') && e.flow.orig.sport === sport); i++)
      await sleep(100);
    await sleep(1000);
    await run(['conntrack', '-D', '-p', 'tcp', '--orig-port-src', String(sport), '--orig-port-dst', '8000'], { netns: lab.netns.host });
    for (let i = 0; i < 150 && !evs.some(mine); i++) await sleep(100);
    const after = await kernelCounters();
    const end = evs.find(mine);
    expect(end, evs.map((e) => e.type).join(' ')).toBeDefined();
    const ex = end!.flow.explanation!;
    expect(ex.counterWindow, JSON.stringify(ex.notes)).toBeDefined();
    const dnat = ex.steps.find((s) => s.table === 'nat' && s.chain === 'DOCKER' && s.verdict === 'dnat')!;
    const fwd = ex.steps.find((s) => s.table === 'filter' && s.chain === 'FORWARD' && s.target === 'DOCKER-USER')!;
    const key = (s: typeof dnat) => `ip ${s.table} ${s.chain} #${s.ruleNumber}`;
    const kDnat = counterDelta(before, after, key(dnat));
    const kFwd = counterDelta(before, after, key(fwd));
    // the packets of the flow that crossed FORWARD: every packet of both directions (legs on the uplink)
    const legs = end!.flow.legs;
    const forwarded = legs.filter((l) => l.iface === 'eth0').reduce((n, l) => n + l.packets, 0);
    console.log(
      `rule counters: DNAT ${JSON.stringify(dnat.counters)} (kernel ${JSON.stringify(kDnat)}), FORWARD -j DOCKER-USER ${JSON.stringify(fwd.counters)} (kernel ${JSON.stringify(kFwd)}, flow's packets on eth0 ${forwarded}); 2 rules compared with the kernel's counters`,
    );
    expect(dnat.counters).toEqual({ packets: 1, bytes: kDnat!.bytes });
    expect(kDnat!.packets).toBe(1);
    expect(fwd.counters).toEqual(kFwd);
    expect(fwd.counters!.packets).toBe(forwarded);
    // the terminal shows them after the END line
    const text = formatRuleCounters(end!.flow)!;
    expect(text).toMatch(/rule counters, .* → /);
    expect(text).toMatch(new RegExp(`\\+1 pkts\\s+\\+${kDnat!.bytes} B\\s+ip nat DOCKER #${dnat.ruleNumber}`));
  }, 90_000);
});
