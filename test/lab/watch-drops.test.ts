/**
 * Drop noise in the lab (id "g", scenario noproxy): the external namespace re-enabling IPv6 on its
 * interface sends router solicitations (and MLD/DAD) to the host, which the kernel frees with
 * reason NOT_SPECIFIED, belonging to no flow. With default options the pipeline (watch, serve)
 * does not report them (counted: stats().dropsQuiet, a notice at the end); with
 * quietDropReasons [] (`--all-drops`) it does; with ignoreDropReasons ['NOT_SPECIFIED']
 * (`--ignore-drop-reason NOT_SPECIFIED`) the kernel does not even send them. Frames for another
 * MAC (OTHERHOST drops) are left out and counted by the kernel by default, and reported one by one
 * with `--all-drops`. Three pipelines watch the same host at once.
 * And conntrack's own lost events: with the conntrack-tool source, `conntrack -E` reporting
 * ENOBUFS (the kernel dropped events) reaches the user as a notice (E_CONNTRACK) and the flows
 * still come (the source re-lists). `conntrack` is wrapped (first on PATH) to add the warning the
 * real tool prints on overflow to a real event stream. Budget: about 40 s.
 */
import { labTestId, useLab } from './lab-helpers.js';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runProbe } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import { startPipeline, type Pipeline, type PipelineOptions } from '../../src/pipeline/pipeline.js';
import type { DropEvent, JourneyEvent } from '../../src/model/events.js';

const ID = labTestId('g');
const lab = useLab(ID, 'noproxy', {
  beforeDown: async () => {
    for (const p of pipes) await p.stop().catch(() => undefined);
  },
});
const pipes: Pipeline[] = [];

async function watch(extra: Partial<PipelineOptions>): Promise<{ p: Pipeline; evs: JourneyEvent[] }> {
  const p = await startPipeline({ netns: lab.netns.host, dockerHost: `unix://${lab.dockerHost!}`, explain: false, ...extra });
  pipes.push(p);
  const evs: JourneyEvent[] = [];
  p.on('event', (e) => evs.push(e));
  return { p, evs };
}

const drops = (evs: JourneyEvent[]): DropEvent[] => evs.filter((e): e is DropEvent => e.type === 'drop');
const unflowedUnspecified = (evs: JourneyEvent[]): DropEvent[] => drops(evs).filter((d) => d.flowId === null && d.drop.reason === 'NOT_SPECIFIED');
const isRouterSolicitation = (d: DropEvent): boolean =>
  d.drop.tuple?.proto === 'icmpv6' && d.drop.tuple.icmpType === 133 && d.drop.tuple.dst === 'ff02::2';

describe('watch in the lab: drops that belong to no flow', () => {
  it('router solicitations (NOT_SPECIFIED, no flow) are left out by default, shown with --all-drops, not sent with --ignore-drop-reason', async () => {
    const quiet = await watch({});
    const all = await watch({ quietDropReasons: [] });
    const ignored = await watch({ quietDropReasons: [], ignoreDropReasons: ['NOT_SPECIFIED'] });
    for (const w of [quiet, all, ignored]) {
      expect(
        w.evs.filter((e) => e.type === 'notice' && /^kernel: no drop reasons/.test(e.message)),
        'eBPF drops available',
      ).toEqual([]);
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
    // frames for 10.0.10.99 reach the host with a MAC that is not its own: OTHERHOST, one drop each.
    // By default the kernel leaves them out and counts them (added to the quiet count at the end);
    // --all-drops reports every one
    const N = 20;
    await run(['ip', 'neigh', 'replace', '10.0.10.99', 'lladdr', '02:00:00:00:00:99', 'dev', 'lan0', 'nud', 'permanent'], { netns: lab.netns.ext });
    const js = `const s=require('dgram').createSocket('udp4');let n=0;const go=()=>n++<${N}?s.send('x',9,'10.0.10.99',go):s.close();go();`;
    await run([process.execPath, '-e', js], { netns: lab.netns.ext });
    const otherhost = (evs: JourneyEvent[]): DropEvent[] =>
      drops(evs).filter((d) => d.drop.reason === 'OTHERHOST' && d.drop.tuple?.dst === '10.0.10.99');
    for (let t = 0; t < 5000 && otherhost(all.evs).length < N; t += 100) await new Promise((r) => setTimeout(r, 100));
    expect(otherhost(all.evs)).toHaveLength(N);
    expect(otherhost(quiet.evs)).toEqual([]);
    const quietBefore = quiet.p.stats().dropsQuiet ?? 0;
    // the end notice says how many were left out
    await quiet.p.stop();
    expect((quiet.p.stats().dropsQuiet ?? 0) - quietBefore, "the kernel's count of OTHERHOST drops, added at the end").toBeGreaterThanOrEqual(N);
    expect(
      quiet.evs.some((e) => e.type === 'notice' && /kernel drops were not reported \(NOT_SPECIFIED without a flow; OTHERHOST/.test(e.message)),
    ).toBe(true);
  }, 60_000);
});

describe('watch in the lab: conntrack -E overflow (ENOBUFS)', () => {
  it('becomes a notice with E_CONNTRACK; flows keep coming', async () => {
    const real = (await run(['sh', '-c', 'command -v conntrack'])).stdout.trim();
    expect(real).not.toBe('');
    const dir = mkdtempSync(join(tmpdir(), 'jl-g-ct-'));
    const oldPath = process.env['PATH'];
    try {
      writeFileSync(
        join(dir, 'conntrack'),
        `#!/bin/sh\nif [ "$1" = -E ]; then ( sleep 1; echo 'WARNING: We have hit ENOBUFS! We are losing events.' >&2 ) & fi\nexec ${real} "$@"\n`,
      );
      chmodSync(join(dir, 'conntrack'), 0o755);
      process.env['PATH'] = `${dir}:${oldPath ?? ''}`;
      const { p, evs } = await watch({ conntrack: 'tool', kernel: false });
      process.env['PATH'] = oldPath;
      expect(p.notices.join('\n')).toMatch(/\(conntrack: conntrack-tool\)/);
      const deadline = Date.now() + 10_000;
      const overflow = () => evs.find((e) => e.type === 'notice' && e.code === 'E_CONNTRACK' && /ENOBUFS/.test(e.message));
      while (Date.now() < deadline && overflow() === undefined) await new Promise((r) => setTimeout(r, 100));
      expect(overflow(), JSON.stringify(evs.filter((e) => e.type === 'notice'))).toMatchObject({
        message: expect.stringMatching(/^conntrack: conntrack -E overflowed \(ENOBUFS\): events were lost; re-listing the table \(resync 1\)/),
      });
      // the source goes on: a probe's flow still arrives, NATed
      const r = await runProbe(ID, 'ext-to-published');
      expect(r.answered, r.output).toBe(true);
      const until = Date.now() + 8_000;
      const flow = () => evs.find((e) => e.type === 'flow.start' && e.flow.orig.dport === 8000 && e.flow.nat.dnat !== null);
      while (Date.now() < until && flow() === undefined) await new Promise((r2) => setTimeout(r2, 100));
      expect(flow(), "the probe's flow after the overflow").toBeDefined();
      await p.stop();
    } finally {
      process.env['PATH'] = oldPath;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
