/**
 * `--verify` in the lab (id "kv"): the pipeline on a real dockerd's host namespace, each flow's
 * explanation checked by the kernel's own trace of its first packet (nft monitor trace).
 *  - every scenario: every probe's flow is `verified` (each one a comparison with the kernel);
 *  - a rule the simulator cannot evaluate (-m statistic) becomes verified through the trace, its
 *    explanation the kernel's path (the simulator's indeterminate one beside it);
 *  - a stale ruleset (test-only simulator input: iptables-save taken before a rule was added) is
 *    `contradicted` at the added rule, and the event's explanation is the kernel's path;
 *  - `kill -9` of a journey mid-trace leaves its table; the next start removes it; a normal stop
 *    and `lab down` leave no trace table.
 * Fails loudly when the lab cannot run (never skips).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labUp, listProbes, runProbeDef, SCENARIOS, isIpv6Scenario, type LabInfo } from '../../lab/driver.js';
import { startPipeline, type Pipeline, type PipelineOptions } from '../../src/pipeline/pipeline.js';
import { run } from '../../src/host/exec.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import type { ProbeResult } from '../../lab/probes.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('kv');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let compared = 0;
const tally = { verified: 0, contradicted: 0, unverified: 0 };

async function traceTables(ns: string): Promise<string[]> {
  const r = await run(['nft', 'list', 'tables'], { netns: ns, allowFailure: true });
  return r.stdout
    .split('\n')
    .map((l) => /^table inet (journey_trace_\d+)/.exec(l.trim())?.[1])
    .filter((x): x is string => x !== undefined);
}

async function withPipeline(info: LabInfo, opts: Partial<PipelineOptions> = {}): Promise<{ p: Pipeline; events: JourneyEvent[] }> {
  const p = await startPipeline({ netns: info.netns.host, ...(info.dockerHost ? { dockerHost: info.dockerHost } : {}), verify: 5, ...opts });
  const events: JourneyEvent[] = [];
  p.on('event', (e) => events.push(e));
  await sleep(500);
  return { p, events };
}

/** The flow.start of a probe's connection (its original tuple), once it came. */
async function probeFlow(events: JourneyEvent[], r: ProbeResult, t0: number): Promise<FlowInfo | undefined> {
  const proto = r.proto === 'icmp' ? (r.to.addr.includes(':') ? 'icmpv6' : 'icmp') : r.proto;
  const sameTuple = (t: FlowInfo['orig']): boolean =>
    t.dst === r.to.addr &&
    t.proto === proto &&
    (proto.startsWith('icmp') || r.to.port === undefined || t.dport === r.to.port) &&
    (r.from.port === undefined || proto.startsWith('icmp') || t.sport === r.from.port) &&
    (r.from.where === 'host' || t.src === r.from.addr);
  // the original tuple, or the tuple its first packet was captured with (a flow known only from its packets)
  const match = (f: FlowInfo): boolean =>
    (sameTuple(f.orig) || f.legs.some((l) => l.direction === 'orig' && sameTuple(l.tuple))) &&
    (f.legs.length === 0 || f.legs.some((l) => l.firstUs / 1000 >= t0 - 50));
  for (const end = Date.now() + 8000; Date.now() < end; await sleep(100)) {
    const f = events.filter((e): e is FlowEvent => e.type === 'flow.start').find((e) => match(e.flow));
    if (!f) continue;
    // flow.start may still wait for the kernel's trace (pending): its last word comes in a flow.update
    let last = f.flow;
    for (const until = Date.now() + 5000; Date.now() < until; await sleep(100)) {
      last = events.filter((e): e is FlowEvent => e.type.startsWith('flow.') && (e as FlowEvent).flow.id === f.flow.id).at(-1)?.flow ?? last;
      if (!/^pending/.test(last.explanation?.verification?.reason ?? '')) break;
    }
    return last;
  }
  return undefined;
}

const stepsOf = (f: FlowInfo | undefined): string =>
  (f?.explanation?.steps ?? []).map((s) => `${s.table} ${s.chain} #${s.ruleNumber ?? '-'} ${s.verdict}`).join(' | ');

afterAll(async () => {
  await labDown(ID).catch(() => undefined);
  console.log(
    `watch-verify: ${compared} flows compared with the kernel's trace (nft monitor trace): ${tally.verified} verified, ${tally.contradicted} contradicted, ${tally.unverified} unverified`,
  );
});

// the dual-stack scenarios' IPv6 probes are not part of this IPv4 comparison (lab-ipv6*.test.ts)
describe.each(SCENARIOS.filter((s) => !isIpv6Scenario(s)).map((s) => [s]))('scenario %s: every probe verified by the kernel', (scenario) => {
  it('every probe', async () => {
    await assertLabCanRun();
    await labDown(ID);
    const info = await labUp({ id: ID, scenario });
    const { p, events } = await withPipeline(info);
    const problems: string[] = [];
    try {
      expect(p.notices.join('\n')).toMatch(/--verify: the kernel traces the first packet/);
      const table = (await traceTables(info.netns.host)).find((t) => t === `journey_trace_${process.pid}`);
      expect(table, 'the trace table is in').toBeDefined();
      for (const def of listProbes(scenario, info)) {
        const t0 = Date.now();
        const r = await runProbeDef(info, def);
        expect(r.asExpected, `${def.name}: ${r.outcome} ${r.output}`).toBe(true);
        if (def.name === 'cross-network-published') {
          // Dropped before conntrack confirmed it, this connection is known only from its packets, and
          // br_netfilter DNATs it before the bridge's packet socket sees it: the pipeline has only the
          // tuple after DNAT. The kernel's trace shows the packet as it came in; explained from that
          // tuple, the simulator's path (DNAT in nat, then the isolation drop) is the kernel's.
          const aweb = info.containers.find((c) => c.name === 'aweb')?.ip ?? '';
          const g = await probeFlow(events, { ...r, to: { ...r.to, addr: aweb, port: 80 } }, t0);
          const v = g?.explanation?.verification;
          if (v) tally[v.result]++;
          if (v?.result !== 'unverified') compared++;
          const steps = stepsOf(g);
          if (v?.result !== 'verified' || !/nat DOCKER #\d+ dnat/.test(steps) || !/DOCKER-ISOLATION-STAGE-2 #\d+ drop/.test(steps))
            problems.push(
              `${def.name}: expected the path as the packet came in (DNAT, isolation drop), verified: ${v?.result ?? 'no flow'} ${JSON.stringify(v?.first_difference ?? '')} [${steps}]`,
            );
          await sleep(250);
          continue;
        }
        const f = await probeFlow(events, r, t0);
        if (!f) {
          problems.push(`${def.name}: no flow.start`);
          continue;
        }
        const v = f.explanation?.verification;
        if (v) tally[v.result]++;
        if (v?.result !== 'unverified') compared++;
        if (v?.result !== 'verified')
          problems.push(
            `${def.name}: ${v?.result ?? 'no verification'} ${v?.reason ?? ''} ${JSON.stringify(v?.first_difference ?? '')} [${stepsOf(f)}]`,
          );
        await sleep(250); // the next probe's first packet is the next new flow of the second
      }
    } finally {
      await p.stop();
    }
    expect(await traceTables(info.netns.host), 'a normal stop leaves no trace table').toEqual([]);
    expect(problems).toEqual([]);
    await labDown(ID);
  });
});

describe('what the simulator cannot say, the kernel settles; what it says wrong, the kernel contradicts', () => {
  it('an indeterminate rule becomes verified through the trace; a stale ruleset is contradicted at the added rule', async () => {
    await labDown(ID);
    const info = await labUp({ id: ID, scenario: 'default' });
    const ns = info.netns.host;
    const def = listProbes('default', info).find((d) => d.name === 'ext-to-published');
    expect(def).toBeDefined();
    if (!def) return;
    // the simulator does not model -m statistic: its step is indeterminate
    await run(
      [
        'iptables',
        '-I',
        'DOCKER-USER',
        '-p',
        'tcp',
        '-m',
        'tcp',
        '--dport',
        '80',
        '-m',
        'statistic',
        '--mode',
        'nth',
        '--every',
        '1',
        '--packet',
        '0',
        '-j',
        'ACCEPT',
      ],
      {
        netns: ns,
      },
    );
    {
      const { p, events } = await withPipeline(info);
      try {
        const t0 = Date.now();
        const r = await runProbeDef(info, def);
        const f = await probeFlow(events, r, t0);
        const v = f?.explanation?.verification;
        expect(v?.result, stepsOf(f)).toBe('verified');
        compared++;
        tally.verified++;
        expect(v?.simulated?.verdict).toBe('indeterminate');
        expect(v?.resolved?.[0]?.rule).toMatch(/statistic/);
        expect(v?.resolved?.[0]?.kernel).toBe('matched: accept');
        // the kernel's path: the statistic rule accepted it in DOCKER-USER
        expect(stepsOf(f)).toContain('filter DOCKER-USER #1 accept');
        expect(f?.explanation?.verdict).toBe('accept');
      } finally {
        await p.stop();
      }
    }
    await run(['iptables', '-D', 'DOCKER-USER', '1'], { netns: ns });
    // stale: the simulator reads the ruleset as it was before this rule went in
    const dir = mkdtempSync(join(tmpdir(), 'jl-verify-'));
    const stale = join(dir, 'stale.iptables-save');
    writeFileSync(stale, (await run(['iptables-save'], { netns: ns })).stdout);
    await run(['iptables', '-I', 'DOCKER-USER', '-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'ACCEPT'], { netns: ns });
    {
      const { p, events } = await withPipeline(info, { testSimulatorRuleset: { iptablesSave: [stale] } });
      try {
        const t0 = Date.now();
        const r = await runProbeDef(info, def);
        const f = await probeFlow(events, r, t0);
        const v = f?.explanation?.verification;
        expect(v?.result, stepsOf(f)).toBe('contradicted');
        compared++;
        tally.contradicted++;
        // nat PREROUTING, nat DOCKER, filter FORWARD, then DOCKER-USER's new first rule
        expect(v?.first_difference).toEqual({ index: 3, kernel: 'ip filter DOCKER-USER #1 accept', simulator: 'ip filter DOCKER-USER #1 return' });
        expect(stepsOf(f)).toContain('filter DOCKER-USER #1 accept');
        expect((v?.simulated?.steps ?? []).map((s) => `${s.chain} ${s.verdict}`)).toContain('DOCKER-USER return');
      } finally {
        await p.stop();
      }
    }
    expect(await traceTables(ns)).toEqual([]);
  });

  it('kill -9 mid-trace leaves the table; the next start removes it; lab down leaves none', async () => {
    const info = { netns: { host: `jl-${ID}-host` } };
    const child = spawn(process.execPath, ['dist/src/cli/main.js', 'watch', '--netns', info.netns.host, '--no-docker', '--verify', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    for (const end = Date.now() + 30_000; Date.now() < end && !/capturing on/.test(out); ) await sleep(100);
    expect(out).toMatch(/--verify: the kernel traces/);
    // started as root, journey runs dropped in a process of its own (docs/watch.md#privilege): the
    // table is named after that process, the one killed here
    const table = (await traceTables(info.netns.host)).find((t) => t.startsWith('journey_trace_')) ?? 'none';
    const pid = Number(table.slice('journey_trace_'.length));
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('main.js');
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => child.once('close', r));
    expect(await traceTables(info.netns.host), 'kill -9 leaves the table behind').toContain(table);
    const p = await startPipeline({ netns: info.netns.host, dockerHost: false, verify: 5 });
    try {
      expect(p.notices.join('\n')).toContain(`removed ${table} left by a journey that was killed`);
      expect(await traceTables(info.netns.host)).toEqual([`journey_trace_${process.pid}`]);
    } finally {
      await labDown(ID); // while the trace runs: the namespace goes, and its table with it
      await p.stop();
    }
    const ns = await run(['ip', 'netns', 'list'], {});
    expect(ns.stdout).not.toContain(info.netns.host);
  });
});
