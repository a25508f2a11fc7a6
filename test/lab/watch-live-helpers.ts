/**
 * What the live watch lab tests share: a lab of a scenario with a pipeline on its host, a recorder
 * of its events, the flows a probe made, and the probes' own addresses and ports.
 */
import { labUp, labDown, type LabInfo, type ProbeResult } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import { startPipeline, type Pipeline, type PipelineOptions } from '../../src/pipeline/pipeline.js';
import { parseConntrackText } from '../../src/conntrack/parse.js';

export class Recorder {
  readonly events: JourneyEvent[] = [];
  constructor(p: Pipeline) {
    p.on('event', (e) => this.events.push(e));
  }
  flows(type: FlowEvent['type']): FlowInfo[] {
    return this.events.filter((e): e is FlowEvent => e.type === type).map((e) => e.flow);
  }
  /** The latest version of every flow (start/update/end). */
  latest(): Map<string, FlowInfo> {
    const m = new Map<string, FlowInfo>();
    for (const e of this.events) if (e.type.startsWith('flow.')) m.set((e as FlowEvent).flow.id, (e as FlowEvent).flow);
    return m;
  }
  notices(): string[] {
    return this.events.filter((e) => e.type === 'notice').map((e) => (e as { message: string }).message);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls `cond` every 100 ms until it holds or `ms` passed. */
export async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end && !cond(); ) await sleep(100);
}

/** The local port a TCP probe used ("local 10.0.10.5:51136 ..."), if it says. */
export function localPort(r: ProbeResult): number | undefined {
  const m = /local \S+:(\d+)/.exec(r.output);
  return m ? Number(m[1]) : undefined;
}
/** The local address it used (the host picks 172.17.0.1 towards a container). */
export function localAddr(r: ProbeResult): string {
  return /local (\d+\.\d+\.\d+\.\d+):\d+/.exec(r.output)?.[1] ?? r.from.addr;
}

export async function conntrackList(ns: string) {
  const r = await run(['conntrack', '-L', '-o', 'extended,id'], { netns: ns, allowFailure: true });
  return parseConntrackText(r.stdout, 'conntrack-tool').lines.map((l) => l.entry);
}

/** Flows started after `t0` whose original tuple goes from `src` to `dst`(:`dport`). */
export function flowsFor(rec: Recorder, q: { src: string; dst: string; dport?: number; sport?: number; proto: string }, t0: number): FlowInfo[] {
  const latest = rec.latest();
  return rec
    .flows('flow.start')
    .filter(
      (f) =>
        f.orig.src === q.src &&
        f.orig.dst === q.dst &&
        f.orig.proto === q.proto &&
        (q.dport === undefined || f.orig.dport === q.dport) &&
        (q.sport === undefined || f.orig.sport === q.sport),
    )
    .filter((f) => f.legs.length === 0 || f.legs.some((l) => l.firstUs / 1000 >= t0 - 50))
    .map((f) => latest.get(f.id) ?? f);
}

/** A fresh lab of `scenario` (a crashed run's left over deleted first) and a pipeline on its host. */
export async function labWithPipeline(
  id: string,
  scenario: string,
  opts: Partial<PipelineOptions> = {},
): Promise<{ info: LabInfo; p: Pipeline; rec: Recorder }> {
  await labDown(id); // a lab left by a crashed run
  const info = await labUp({ scenario, id });
  const p = await startPipeline({ netns: info.netns.host, dockerHost: info.dockerHost ?? (undefined as never), ...opts });
  const rec = new Recorder(p);
  await sleep(500);
  return { info, p, rec };
}

export async function stopLab(id: string, p: Pipeline | undefined): Promise<void> {
  await p?.stop();
  await labDown(id);
}

/** Whether the flow has an orig leg on each of these interfaces (each capture worker delivers its own batches: wait for all). */
export const hasLegsOn = (f: FlowInfo, ifaces: readonly string[]): boolean =>
  ifaces.every((i) => f.legs.some((l) => l.direction === 'orig' && l.iface === i));

export const origIfaces = (f: FlowInfo) =>
  f.legs
    .filter((l) => l.direction === 'orig')
    .sort((a, b) => a.firstUs - b.firstUs)
    .map((l) => l.iface);
