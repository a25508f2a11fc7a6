/**
 * The five seed articles' hosts rebuilt in the lab (lab id "s"), each with a real dockerd, and the
 * article's packets sent through them with the kernel tracing (`nft monitor trace`):
 *   000 seed000 (docker0 + a second bridge, proxy on), 001 seed001 (-p 80:80, FORWARD policy DROP),
 *   002 seed002 / seed002noproxy (-p 8799:1337 with the userland proxy on and off), 003 seed003
 *   (firewalld, bridge docker1, UDP 1812, masquerade in the docker zone, proxy off), 004 hostip
 *   (-p 10.0.10.26:81:80, pings to the host and the outside).
 * For every probe, both directions are compared with the kernel's trace, rule for rule:
 *   - explain (src/explain, the live ruleset): the first packet, and the first reply explained
 *     from the connection's conntrack entry (`journey explain --reply`);
 *   - watch (the live pipeline on the same host): the flow's explanation and its `reply`.
 * Also: a flow through the custom-named bridge shows both legs; with -p 80:80 a container's
 * outbound HTTP is not named as the published port. Prints how many paths were compared.
 * SEEDS=000,003 runs some of the hosts only (while developing).
 * Fails (never skips) when the lab cannot run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labUp, listProbes, runProbe, traceKernel, type LabInfo } from '../../lab/driver.js';
import type { ProbeResult } from '../../lab/probes.js';
import { startPipeline, type Pipeline } from '../../src/pipeline/pipeline.js';
import { compileRuleset, explainPacket } from '../../src/explain/explain.js';
import { compareSteps, kernelCase, entryOfCase, kernelFollowUps, type KernelStepLike } from '../../src/explain/kernel-compare.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import type { Explanation } from '../../src/model/explanation.js';
import { hostFromDumps, readHostDumps, readRulesetDumps, rulesetFromDumps } from '../../src/ruleset/load.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('s');
const TRACE_TABLE = 'jl_trace';

interface Compared {
  readonly seed: string;
  readonly probe: string;
  /** explain-request, explain-reply, watch-request, watch-reply */
  readonly what: string;
  readonly equal: boolean;
  readonly detail: string;
}
const compared: Compared[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Steps of the tracer's own table are not the host's ruleset (the watch may have read it mid-trace). */
const withoutTracer = (ex: Explanation): Explanation => ({ ...ex, steps: ex.steps.filter((s) => s.table !== TRACE_TABLE) });

function record(
  seed: string,
  probe: string,
  what: string,
  ex: Explanation,
  kernel: readonly KernelStepLike[],
  rs: Parameters<typeof compareSteps>[2],
) {
  const c = compareSteps(withoutTracer(ex), kernel, rs, TRACE_TABLE);
  compared.push({
    seed,
    probe,
    what,
    equal: c.equal,
    detail: c.equal
      ? ''
      : `\n  simulated: ${c.simulated.join('\n             ')}\n  kernel:    ${c.kernel.join('\n             ')}\n  indeterminate: ${JSON.stringify(ex.indeterminate)}`,
  });
}

function latestFlows(events: readonly JourneyEvent[]): Map<string, FlowInfo> {
  const m = new Map<string, FlowInfo>();
  for (const e of events) if (e.type.startsWith('flow.')) m.set((e as FlowEvent).flow.id, (e as FlowEvent).flow);
  return m;
}

interface SeedHost {
  readonly seed: string;
  readonly scenario: string;
  /** Extra checks on the watched flows of this host (return problems). */
  readonly checks?: (info: LabInfo, flows: (probe: string) => FlowInfo | undefined) => string[];
}

const SEEDS: SeedHost[] = [
  { seed: '000', scenario: 'seed000' },
  {
    seed: '001',
    scenario: 'seed001',
    checks: (_info, flow) => {
      const out: string[] = [];
      const f = flow('container-http-outside');
      if (!f) return ['container-http-outside: no flow'];
      // -p 80:80 publishes port 80 on the host's addresses only: outbound HTTP is not it
      if (f.names.some((n) => n.published !== undefined)) out.push(`outbound HTTP named as published: ${JSON.stringify(f.names)}`);
      if (f.proxiedBy !== undefined) out.push(`outbound HTTP tied to docker-proxy: ${JSON.stringify(f.proxiedBy)}`);
      const direct = flow('direct-access');
      if (direct?.proxiedBy !== undefined) out.push(`direct access to the container tied to docker-proxy: ${JSON.stringify(direct.proxiedBy)}`);
      const pub = flow('ext-to-published');
      if (!pub?.names.some((n) => n.published?.startsWith('80/tcp'))) out.push(`the published port is not named: ${JSON.stringify(pub?.names)}`);
      return out;
    },
  },
  { seed: '002', scenario: 'seed002' },
  { seed: '002 (proxy off)', scenario: 'seed002noproxy' },
  {
    seed: '003',
    scenario: 'seed003',
    checks: (_info, flow) => {
      const out: string[] = [];
      const f = flow('ext-udp-radius');
      if (!f) return ['ext-udp-radius: no flow'];
      // the custom-named bridge is captured by default: both legs of each direction
      const legs = (dir: 'orig' | 'reply') =>
        f.legs
          .filter((l) => l.direction === dir)
          .sort((a, b) => a.firstUs - b.firstUs)
          .map((l) => l.iface);
      if (JSON.stringify(legs('orig')) !== '["eth0","docker1"]') out.push(`orig legs ${JSON.stringify(legs('orig'))}`);
      if (JSON.stringify(legs('reply')) !== '["docker1","eth0"]') out.push(`reply legs ${JSON.stringify(legs('reply'))}`);
      // the reply leg on docker1 as the container sent it: to the gateway address (masqueraded request)
      const onBridge = f.legs.find((l) => l.direction === 'reply' && l.iface === 'docker1');
      if (onBridge?.tuple.dst !== '172.20.0.1' || onBridge.tuple.src !== '172.20.0.4')
        out.push(`docker1 reply leg ${onBridge?.tuple.src} -> ${onBridge?.tuple.dst} (the wire had 172.20.0.4 -> 172.20.0.1)`);
      // the reply as conntrack turns it back: de-SNAT before routing, de-DNAT after, out of eth0
      const r = f.explanation?.reply;
      const kinds = (r?.conntrack_nat ?? []).map((n) => `${n.hook} ${n.kind}`);
      if (JSON.stringify(kinds) !== '["prerouting de-snat","postrouting de-dnat"]') out.push(`reply conntrack NAT ${JSON.stringify(kinds)}`);
      if (r?.packet_out?.oif !== 'eth0' || r.packet_out.dst !== '10.0.10.5') out.push(`reply out ${JSON.stringify(r?.packet_out)}`);
      if ((r?.steps ?? []).some((s) => s.table === 'nat')) out.push('a nat chain consulted for the reply');
      return out;
    },
  },
  { seed: '004', scenario: 'hostip' },
];

async function runSeed(host: SeedHost): Promise<string[]> {
  const problems: string[] = [];
  let p: Pipeline | undefined;
  try {
    await labDown(ID).catch(() => undefined);
    const info = await labUp({ id: ID, scenario: host.scenario });
    const ns = info.netns.host;
    const dumps = await readRulesetDumps({ netns: ns });
    const ruleset = rulesetFromDumps(dumps, `netns ${ns}`);
    const compiled = compileRuleset(ruleset, hostFromDumps(await readHostDumps({ netns: ns }), `netns ${ns}`));
    // bridges not promiscuous here: a promiscuous bridge hands the host's stack a copy of every frame
    // it forwards port to port (OTHERHOST), and the kernel traces those copies too (under the same
    // trace id): they are not the packet's path (README "Bridges are captured promiscuously")
    p = await startPipeline({ netns: ns, dockerHost: info.dockerHost ?? (undefined as never), promisc: false });
    const events: JourneyEvent[] = [];
    p.on('event', (e: JourneyEvent) => events.push(e));
    await sleep(500);
    const byProbe = new Map<string, string>();
    for (const probe of listProbes(info.scenario, info)) {
      const tr = await traceKernel(ID, () => runProbe(ID, probe.name));
      const pr = tr.actionResult as ProbeResult | undefined;
      if (!pr) throw new Error(`${host.scenario}/${probe.name}: probe failed: ${tr.actionError ?? '?'}`);
      if (!pr.asExpected) problems.push(`${probe.name}: ${pr.outcome} (${pr.output})`);
      const kc = kernelCase(probe.name, tr.packets, pr, probe.from === 'host', tr.conntrack);
      if (!kc) throw new Error(`${host.scenario}/${probe.name}: the kernel traced no packet of the probe`);
      // explain: the first packet
      record(
        host.seed,
        probe.name,
        'explain-request',
        explainPacket(compiled, kc.iif === null ? { tuple: kc.tuple, local: true } : { tuple: kc.tuple, iif: kc.iif }),
        kc.steps,
        ruleset,
      );
      // explain --reply: the first reply, from the connection's entry
      const entry = entryOfCase(tr.conntrack, kc);
      const reply = entry ? kernelFollowUps(tr.packets, entry, kc).find((f) => f.direction === 'reply') : undefined;
      if (reply) {
        const rx = explainPacket(compiled, {
          tuple: reply.tuple,
          ...(reply.iif === null ? { local: true } : { iif: reply.iif }),
          ctState: 'established',
          direction: 'reply',
          conntrack: reply.conntrack,
        });
        record(host.seed, probe.name, 'explain-reply', rx, reply.steps, ruleset);
      } else if (pr.answered) problems.push(`${probe.name}: answered, but the kernel traced no reply`);
      // watch: the flow of this connection, its explanation and the reply's
      const key = (f: FlowInfo) =>
        f.orig.src === kc.tuple.src &&
        f.orig.dst === kc.tuple.dst &&
        f.orig.proto === kc.tuple.proto &&
        (kc.tuple.proto === 'icmp' || (f.orig.sport === kc.tuple.sport && f.orig.dport === kc.tuple.dport));
      let flow: FlowInfo | undefined;
      for (let i = 0; i < 60 && flow?.explanation == null; i++) {
        flow = [...latestFlows(events).values()].find(key);
        if (flow?.explanation == null) await sleep(100);
      }
      if (!flow?.explanation) {
        problems.push(`${probe.name}: watch showed no explained flow for ${JSON.stringify(kc.tuple)}`);
        continue;
      }
      byProbe.set(probe.name, flow.id);
      record(host.seed, probe.name, 'watch-request', flow.explanation, kc.steps, ruleset);
      if (reply) {
        if (flow.explanation.reply) record(host.seed, probe.name, 'watch-reply', flow.explanation.reply, reply.steps, ruleset);
        else problems.push(`${probe.name}: the watched flow has no reply explanation`);
      }
    }
    const latest = latestFlows(events);
    problems.push(...(host.checks?.(info, (name) => latest.get(byProbe.get(name) ?? '')) ?? []));
  } finally {
    await p?.stop().catch(() => undefined);
    await labDown(ID);
  }
  return problems;
}

describe('the seed articles’ hosts: request and reply paths against the kernel trace (lab)', () => {
  beforeAll(async () => {
    await assertLabCanRun();
  });
  afterAll(async () => {
    await labDown(ID).catch(() => undefined);
    const n = (what: string) => compared.filter((c) => c.what === what);
    const line = (what: string) => `${what} ${n(what).filter((c) => c.equal).length}/${n(what).length}`;
    process.stdout.write(
      `seeds: compared ${compared.length} explained paths with nft monitor trace, ${compared.filter((c) => c.equal).length} equal ` +
        `(${['explain-request', 'explain-reply', 'watch-request', 'watch-reply'].map(line).join(', ')}) over ${new Set(compared.map((c) => c.seed)).size} seed hosts\n`,
    );
  });

  const only = process.env['SEEDS']?.split(',');
  for (const host of SEEDS.filter((h) => only === undefined || only.some((o) => h.seed.startsWith(o)))) {
    it(`seed ${host.seed} (${host.scenario}): both directions equal the kernel's`, async () => {
      const problems = await runSeed(host);
      const mine = compared.filter((c) => c.seed === host.seed);
      expect(mine.filter((c) => c.what.endsWith('reply')).length).toBeGreaterThan(0);
      expect([...problems, ...mine.filter((c) => !c.equal).map((c) => `${c.probe} ${c.what}:${c.detail}`)]).toEqual([]);
    });
  }
});
