/**
 * Drop noise in the lab (id "g", scenario noproxy): the external namespace re-enabling IPv6 on its
 * interface sends router solicitations (and MLD/DAD) to the host, which the kernel frees with
 * reason NOT_SPECIFIED, belonging to no flow. With default options the pipeline (watch, serve)
 * does not report them (counted: stats().dropsQuiet, a notice at the end); with
 * quietDropReasons [] (`--all-drops`) it does; with ignoreDropReasons ['NOT_SPECIFIED']
 * (`--ignore-drop-reason NOT_SPECIFIED`) the kernel does not even send them. Three pipelines
 * watch the same host at once. Budget: about 30 s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labUp, type LabInfo } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import { startPipeline, type Pipeline, type PipelineOptions } from '../../src/correlate/pipeline.js';
import type { DropEvent, JourneyEvent } from '../../src/model/events.js';

const ID = 'g';
let lab: LabInfo;
const pipes: Pipeline[] = [];

beforeAll(async () => {
  await labDown(ID).catch(() => undefined);
  lab = await labUp({ id: ID, scenario: 'noproxy' });
}, 240_000);

afterAll(async () => {
  for (const p of pipes) await p.stop().catch(() => undefined);
  await labDown(ID);
}, 120_000);

async function watch(extra: Partial<PipelineOptions>): Promise<{ p: Pipeline; evs: JourneyEvent[] }> {
  const p = await startPipeline({ netns: lab.netns.host, dockerHost: `unix://${lab.dockerHost!}`, explain: false, ...extra });
  pipes.push(p);
  const evs: JourneyEvent[] = [];
  p.on('event', (e) => evs.push(e));
  return { p, evs };
}

const drops = (evs: JourneyEvent[]): DropEvent[] => evs.filter((e): e is DropEvent => e.type === 'drop');
const unflowedUnspecified = (evs: JourneyEvent[]): DropEvent[] => drops(evs).filter((d) => d.flowId === null && d.drop.reason === 'NOT_SPECIFIED');
const isRouterSolicitation = (d: DropEvent): boolean => d.drop.tuple?.proto === 'icmpv6' && d.drop.tuple.icmpType === 133 && d.drop.tuple.dst === 'ff02::2';

describe('watch in the lab: drops that belong to no flow', () => {
  it('router solicitations (NOT_SPECIFIED, no flow) are left out by default, shown with --all-drops, not sent with --ignore-drop-reason', async () => {
    const quiet = await watch({});
    const all = await watch({ quietDropReasons: [] });
    const ignored = await watch({ quietDropReasons: [], ignoreDropReasons: ['NOT_SPECIFIED'] });
    for (const w of [quiet, all, ignored]) {
      expect(w.evs.filter((e) => e.type === 'notice' && /^kernel: no drop reasons/.test(e.message)), 'eBPF drops available').toEqual([]);
    }
    await new Promise((r) => setTimeout(r, 500));
    // the external host re-enables IPv6 on its LAN interface: DAD, MLD, router solicitations
    await run(['sysctl', '-qw', 'net.ipv6.conf.lan0.disable_ipv6=1'], { netns: lab.netns.ext });
    await run(['sysctl', '-qw', 'net.ipv6.conf.lan0.disable_ipv6=0'], { netns: lab.netns.ext });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !unflowedUnspecified(all.evs).some(isRouterSolicitation)) await new Promise((r) => setTimeout(r, 200));
    await new Promise((r) => setTimeout(r, 500));
    const seen = unflowedUnspecified(all.evs);
    expect(seen.some(isRouterSolicitation), `--all-drops: ${JSON.stringify(drops(all.evs).map((d) => [d.drop.reason, d.drop.tuple]))}`).toBe(true);
    expect(seen.every((d) => d.drop.tuple?.family === 6)).toBe(true);
    // default: none of them reported, all counted
    expect(unflowedUnspecified(quiet.evs)).toEqual([]);
    expect(quiet.p.stats().dropsQuiet ?? 0).toBeGreaterThanOrEqual(1);
    // filtered in the kernel: no NOT_SPECIFIED drop at all, none counted as quiet
    expect(drops(ignored.evs).filter((d) => d.drop.reason === 'NOT_SPECIFIED')).toEqual([]);
    expect(ignored.p.stats().dropsQuiet).toBeUndefined();
    // the end notice says how many were left out
    await quiet.p.stop();
    expect(quiet.evs.some((e) => e.type === 'notice' && /kernel drops with reason NOT_SPECIFIED that belonged to no flow were not reported/.test(e.message))).toBe(true);
  }, 60_000);
});
