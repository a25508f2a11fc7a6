/**
 * The live source: the Docker host's interfaces through the capture workers (capture/live.ts),
 * its conntrack table (netlink, the conntrack tool, /proc), the kernel's view through eBPF, and
 * ruleset changes through `nft monitor`. Time is the wall clock (a tick every 100 ms).
 */
import type { ChildProcess } from 'node:child_process';
import { bridgeInterfaces, LinkWatcher, uplinkInterface } from '../capture/devices.js';
import { createLiveCapture } from '../capture/live.js';
import { openConntrackSource } from '../conntrack/select.js';
import { SnapshotConntrackSource } from '../conntrack/snapshot-source.js';
import type { ConntrackSource } from '../model/conntrack.js';
import { collectGarbageNow } from '../host/heap.js';
import { JourneyError } from '../model/errors.js';
import type { CaptureStats } from '../model/observation.js';
import { HookProof } from '../native/index.js';
import { KernelView } from './kernel-view.js';
import { watchRuleset } from './ruleset-watch.js';
import type { FrameSource, HookTupleLookup, PipelineSource, SourceContext } from './source.js';
import type { PipelineOptions } from './types.js';

export class LiveSource implements PipelineSource {
  readonly mode = 'live';
  readonly liveSockets = true;
  readonly usesDockerDaemon: boolean;
  readonly hookTuples?: HookTupleLookup;
  interfaces: string[] = [];
  conntrack: ConntrackSource | null = null;
  private frames: FrameSource | null = null;
  private ctx: SourceContext | null = null;
  private readonly hookProof = new HookProof(50_000);
  private kernel: KernelView | null = null;
  private rulesetWatch: ChildProcess | null = null;
  private linkWatch: LinkWatcher | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private statsTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: PipelineOptions) {
    this.usesDockerDaemon = opts.dockerHost !== false;
    if (opts.kernel !== false) this.hookTuples = (t) => this.hookProof.get(t);
  }

  explainWith(): { enabled: boolean } {
    return { enabled: this.opts.explain !== false };
  }

  async open(ctx: SourceContext): Promise<void> {
    this.ctx = ctx;
    const o = this.opts;
    const opened = await openConntrackSource({
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      ...(o.conntrack !== undefined ? { backend: o.conntrack } : {}),
      ...(o.conntrackSnapshot !== undefined ? { snapshot: o.conntrackSnapshot } : {}),
    });
    this.conntrack = opened.source;
    for (const n of opened.notices) ctx.notice(n);
    ctx.correlator.loadDump(await opened.source.dump());
    if (opened.source instanceof SnapshotConntrackSource && opened.source.skipped > 0)
      ctx.notice(`conntrack snapshot: ${opened.source.skipped} lines could not be read`);

    this.interfaces = [...(o.interfaces ?? [])];
    if (this.interfaces.length === 0) {
      const bridges = ctx.docker ? ctx.docker.bridges() : await bridgeInterfaces(o.netns);
      const existing = await bridgeInterfaces(o.netns, true);
      const up = await uplinkInterface(o.netns);
      // a Docker network whose bridge does not exist yet (no container) is skipped until it appears
      this.interfaces = [...new Set([...(up ? [up] : []), ...bridges.filter((b) => existing.includes(b) || !ctx.docker)])];
      if (!up) ctx.notice('no default route: uplink not captured (give -i IFACE)');
    }
    if (this.interfaces.length === 0)
      throw new JourneyError('E_CAPTURE', 'no interface to capture on: no Docker bridge and no default route (give -i IFACE)');
    this.frames = createLiveCapture({
      interfaces: this.interfaces,
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      ...(o.filter !== undefined ? { filter: o.filter } : {}),
      ...(o.snaplen !== undefined ? { snaplen: o.snaplen } : {}),
      ...(o.bufferSizeMiB !== undefined ? { bufferSizeMiB: o.bufferSizeMiB } : {}),
      ...(o.bufferTimeoutMs !== undefined ? { bufferTimeoutMs: o.bufferTimeoutMs } : {}),
      ...(o.promisc !== undefined ? { promisc: o.promisc } : {}),
      ...(o.backend !== undefined ? { backend: o.backend } : {}),
      // runs of one connection's packets reach the correlator as one entry, unless --write keeps
      // every frame (or folding is turned off: `fold: false`, JOURNEY_CAPTURE_FOLD=off)
      fold: o.fold !== false && o.write === undefined && process.env.JOURNEY_CAPTURE_FOLD !== 'off',
    });
    if (!ctx.docker && (o.interfaces ?? []).length === 0) {
      // no Engine API: bridges that appear later are found by their container veths
      this.linkWatch = new LinkWatcher(o.netns, () => this.followBridges());
      this.linkWatch.start();
    }
    ctx.notice(`capturing on ${this.interfaces.join(', ')}${o.netns !== undefined ? ` in ${o.netns}` : ''} (conntrack: ${opened.source.kind})`);
  }

  async run(ctx: SourceContext): Promise<void> {
    const ct = this.conntrack as ConntrackSource;
    const frames = this.frames as FrameSource;
    const statsMs = this.opts.statsIntervalMs ?? 5_000;
    await ct.start(
      (evs) => ctx.correlator.onConntrack(evs),
      (e) => ctx.notice(`conntrack: ${e.message}`, (e as JourneyError).code),
    );
    this.tickTimer = setInterval(() => ctx.correlator.tick(Date.now()), 100);
    if (statsMs > 0) this.statsTimer = setInterval(() => ctx.statsEvent(), statsMs);
    this.rulesetWatch = watchRuleset(ctx);
    if (this.opts.kernel !== false) {
      this.kernel = new KernelView(ctx, this.hookProof);
      await this.kernel.start();
    }
    // the start-up garbage is collected before the first packet, not during the first connections
    collectGarbageNow();
    await frames.start(
      (b) => {
        // the conntrack events already queued first: the batch's new connections then join their
        // entries at once, instead of waiting in the hold queue for the next read
        ct.readQueued?.();
        ctx.onBatch(b);
      },
      (e) => ctx.notice(e.message, (e as JourneyError).code),
    );
  }

  onDockerChange(): void {
    this.followBridges();
  }

  /** New Docker bridges join the capture (from the Engine API, or the host's bridges with container veths). */
  private followBridges(): void {
    const ctx = this.ctx;
    if (!ctx || this.opts.interfaces?.length) return;
    const netns = this.opts.netns;
    void Promise.all([bridgeInterfaces(netns, true), ctx.docker ? null : bridgeInterfaces(netns)]).then(([existing, guessed]) => {
      for (const b of ctx.docker?.bridges() ?? guessed ?? []) {
        if (existing.includes(b) && !this.interfaces.includes(b)) {
          this.interfaces.push(b);
          this.frames?.addInterface?.(b);
          ctx.notice(`capture: new bridge ${b}`);
        }
      }
    });
  }

  captureStats(): CaptureStats[] {
    return this.frames?.stats() ?? [];
  }

  async stop(): Promise<void> {
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.rulesetWatch?.kill('SIGTERM');
    this.linkWatch?.stop();
    await this.kernel?.stop();
    // each is stopped even when another failed: what is left running would keep the process alive
    await this.frames?.stop().catch(() => {
      // each part is stopped even when another failed
    });
    await this.conntrack?.stop().catch(() => {
      // each part is stopped even when another failed
    });
  }
}
