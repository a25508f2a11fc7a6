/**
 * The replay source: capture files (merged by time), a conntrack snapshot or event log, and time
 * driven by the packets themselves, so a replay behaves like the live run it recorded. It runs to
 * the end by itself; then every flow ends with reason "replay-end".
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { readCaptureFiles } from '../capture/pcap-file.js';
import { openConntrackSource } from '../conntrack/select.js';
import { SnapshotConntrackSource } from '../conntrack/snapshot-source.js';
import type { ConntrackEvent, ConntrackSource } from '../model/conntrack.js';
import { JourneyError } from '../model/errors.js';
import type { CaptureStats, FrameBatch } from '../model/observation.js';
import type { RulesetFilesSpec } from './flow-explainer.js';
import type { FrameSource, PipelineSource, SourceContext } from './source.js';
import type { PipelineOptions } from './types.js';

/** Capture files as frames (merged by time). */
export class ReplayFrames implements FrameSource {
  readonly kind = 'replay';
  private readonly received = new Map<string, number>();
  private readonly skipped: Record<string, number> = {};
  private stopped = false;
  constructor(private readonly files: readonly string[]) {}

  async start(onBatch: (b: FrameBatch) => void): Promise<void> {
    for await (const b of readCaptureFiles(this.files, { skipped: this.skipped })) {
      if (this.stopped) break;
      this.received.set(b.iface, (this.received.get(b.iface) ?? 0) + b.count);
      onBatch(b);
      // let timers (stats, stop) run between batches
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  stats(): CaptureStats[] {
    return [...this.received].map(([iface, n]) => ({
      iface,
      received: n,
      kernelDropped: 0,
      ifDropped: 0,
      ownDropped: 0,
      skipped: { ...this.skipped },
    }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }
}

function noSnapshot(o: PipelineOptions): boolean {
  return o.conntrackSnapshot === undefined || (Array.isArray(o.conntrackSnapshot) && o.conntrackSnapshot.length === 0);
}

export class ReplaySource implements PipelineSource {
  readonly mode = 'replay';
  readonly liveSockets = false;
  readonly usesDockerDaemon: boolean;
  readonly interfaces: readonly string[] = [];
  conntrack: ConntrackSource | null = null;
  private frames: ReplayFrames | null = null;
  private ctx: SourceContext | null = null;
  /** Recorded conntrack events (conntrack -E -o timestamp), fed in time order with the packets. */
  private timeline: ConntrackEvent[] = [];
  private next = 0;
  private tickMs = 0;

  constructor(private readonly opts: PipelineOptions) {
    this.usesDockerDaemon = opts.dockerHost !== undefined && opts.dockerHost !== false;
  }

  explainWith(): { enabled: boolean; files?: RulesetFilesSpec; missing?: string } {
    const files = this.opts.rulesetFiles;
    if (files === undefined) return { enabled: false, missing: 'no explanations in a replay without the recorded ruleset (--ruleset FILE)' };
    return { enabled: this.opts.explain !== false, files };
  }

  async open(ctx: SourceContext): Promise<void> {
    this.ctx = ctx;
    const o = this.opts;
    const opened = await openConntrackSource({
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      ...(o.conntrack !== undefined ? { backend: o.conntrack } : {}),
      snapshot: o.conntrackSnapshot ?? [],
    });
    const ct = opened.source;
    this.conntrack = ct;
    for (const n of opened.notices) ctx.notice(n);
    if (noSnapshot(o)) ctx.notice('replay without a conntrack snapshot (--conntrack FILE): packets are grouped by tuple, NAT legs are not joined');
    const dump = noSnapshot(o) ? [] : await ct.dump();
    if (ct instanceof SnapshotConntrackSource && ct.events.some((e) => e.time > 0)) {
      // an event log (conntrack -E -o timestamp): replayed in time order with the packets, as live
      this.timeline = ct.events.filter((e) => e.time > 0).sort((a, b) => a.time - b.time);
      const withEvents = new Set(this.timeline.map((e) => e.entry.id));
      ctx.correlator.loadDump(dump.filter((e) => !withEvents.has(e.id)));
    } else {
      ctx.correlator.loadDump(dump);
    }
    if (ct instanceof SnapshotConntrackSource && ct.skipped > 0) ctx.notice(`conntrack snapshot: ${ct.skipped} lines could not be read`);

    for (const f of o.read ?? []) {
      try {
        await access(f, constants.R_OK);
      } catch (e) {
        throw new JourneyError('E_PARSE', `${f}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: f });
      }
    }
    if (o.filter !== undefined) ctx.notice('the capture filter applies to live capture only; use the display filters on a replay');
    this.frames = new ReplayFrames(o.read ?? []);
  }

  /** Time moves with the packets: recorded conntrack events up to now, a tick every 100 ms of it. */
  beforePacket(ms: number): void {
    const ctx = this.ctx as SourceContext;
    const next = this.timeline[this.next];
    if (next !== undefined && next.time <= ms) this.feedConntrack(ms);
    if (ms - this.tickMs >= 100) {
      ctx.correlator.tick(ms);
      this.tickMs = ms;
    }
  }

  private feedConntrack(ms: number): void {
    const batch: ConntrackEvent[] = [];
    while (this.next < this.timeline.length && (this.timeline[this.next] as ConntrackEvent).time <= ms) {
      batch.push(this.timeline[this.next++] as ConntrackEvent);
    }
    if (batch.length > 0) this.ctx?.correlator.onConntrack(batch);
  }

  async run(ctx: SourceContext): Promise<void> {
    const frames = this.frames as ReplayFrames;
    try {
      await frames.start((b) => ctx.onBatch(b));
    } catch (e) {
      ctx.notice(`replay: ${(e as Error).message}`, (e as JourneyError).code ?? 'E_PARSE');
      ctx.setError(e as Error);
    }
    // conntrack events after the last packet (destroys) still count, in their own time
    // (ticking every 100 ms of their time, as packets do: a tick per event made a long log quadratic)
    let tickMs = Number.NEGATIVE_INFINITY;
    for (let k = this.next; k < this.timeline.length; k++) {
      const ev = this.timeline[k] as ConntrackEvent;
      ctx.correlator.onConntrack([ev]);
      if (ev.time - tickMs >= 100 || k === this.timeline.length - 1) {
        ctx.correlator.tick(ev.time);
        tickMs = ev.time;
      }
    }
    this.next = this.timeline.length;
    await ctx.stopWith('replay-end');
  }

  captureStats(): CaptureStats[] {
    return this.frames?.stats() ?? [];
  }

  async stop(): Promise<void> {
    await this.frames?.stop();
    await this.conntrack?.stop().catch(() => {
      // a snapshot has nothing running
    });
  }
}
