/**
 * The pipeline, assembled: a source (live or replay) -> decode -> conntrack join -> Docker names
 * -> explanation -> JourneyEvents. Used by `journey watch`, `journey serve` and `journey verify hairpin`.
 *
 *   import { startPipeline } from '../pipeline/pipeline.js';
 *   const p = await startPipeline({ netns: 'jl-c2-host' });          // live, every bridge + uplink
 *   const p = await startPipeline({ read: ['x.pcapng'], conntrackSnapshot: 'ct.txt' }); // replay
 *   p.on('event', (ev: JourneyEvent) => ...);     // or: for await (const ev of p) ...
 *   await p.stop();                               // flows end (reason "shutdown"), stats emitted
 *   await p.done;                                 // resolves when a replay is finished / after stop()
 *
 * Events (src/model/events.ts, schema docs/event-schema.json): `notice` first (what runs, what
 * is missing: no Docker, conntrack fallback, no explanations...), then flow.start / flow.update /
 * flow.end, `ruleset.changed` when the live ruleset changes (flows are re-explained), and
 * `capture.stats` every `statsIntervalMs` and once at the end. `seq` increases by one per event.
 * A replay ends by itself: every flow ends with reason "replay-end", then `done` resolves.
 *
 * Setup errors are thrown from startPipeline (JourneyError: E_NO_NETNS, E_CAPTURE, E_CONNTRACK,
 * E_PARSE...). Errors while running (a capture that died, conntrack -E exiting) become `notice`
 * events and the pipeline keeps going with what is left; `p.on('error')` is never required.
 */
import { EventEmitter } from 'node:events';
import { createPcapngWriter, type PcapngWriter } from '../capture/pcapng-writer.js';
import { Correlator } from '../correlate/correlator.js';
import { DockerProxyLinker } from '../correlate/proxy-link.js';
import { FragmentPorts, PacketView, SkipCounters } from '../decode/index.js';
import { processSockets } from '../docker/daemon.js';
import type { DockerInventory } from '../docker/inventory.js';
import { JourneyError } from '../model/errors.js';
import { SCHEMA_VERSION, type EndpointName, type FlowInfo, type JourneyEvent } from '../model/events.js';
import type { CaptureStats, FrameBatch } from '../model/observation.js';
import { openDockerNames } from './docker-names.js';
import { DropReporter } from './drop-reporter.js';
import type { KernelDrop } from '../native/index.js';
import { iterateEvents } from './event-iterator.js';
import { intakeBatch, type IntakeState } from './frame-intake.js';
import { createFlowExplainer, type ReloadableExplainer } from './flow-explainer.js';
import { FlowVerifier, VERIFY_START_DELAY_MS, verifierNotice } from '../explain/flow-verifier.js';
import { LiveSource } from './live-source.js';
import { LossLedger, lossNotice, type IfaceLoss } from './loss-ledger.js';
import { ReplaySource } from './replay-source.js';
import { RuleCounterWatch } from './rule-counter-watch.js';
import { readRuleCounters } from '../ruleset/rule-counters.js';
import type { PipelineSource, SourceContext } from './source.js';
import type { Pipeline, PipelineOptions, PipelineStats } from './types.js';

export type { Pipeline, PipelineOptions, PipelineStats } from './types.js';

class PipelineImpl extends EventEmitter implements Pipeline {
  readonly notices: string[] = [];
  readonly mode: 'live' | 'replay';
  docker: DockerInventory | null = null;
  error: JourneyError | null = null;
  done: Promise<void>;
  private resolveDone!: () => void;
  private correlator!: Correlator;
  private explainer!: ReloadableExplainer;
  private verifier: FlowVerifier | null = null;
  private readonly source: PipelineSource;
  private writer: PcapngWriter | null = null;
  private stopping: Promise<void> | null = null;
  private readonly fragments = new FragmentPorts();
  private readonly skips = new SkipCounters();
  private readonly intakeState: IntakeState = { view: new PacketView(), skips: this.skips, fragments: this.fragments };
  private nonIp = 0;
  private readonly ledger = new LossLedger();
  private drops!: DropReporter;

  constructor(private readonly opts: PipelineOptions) {
    super();
    this.source = opts.read !== undefined && opts.read.length > 0 ? new ReplaySource(opts) : new LiveSource(opts);
    this.mode = this.source.mode;
    this.done = new Promise((r) => {
      this.resolveDone = r;
    });
  }

  get interfaces(): readonly string[] {
    return this.source.interfaces;
  }

  nextSeq(): number {
    return this.correlator.nextSeq();
  }

  /**
   * Events said before the pipeline is released (while it sets up, and until the setImmediate
   * after startPipeline returns) wait here, in order; null once released. Every event goes
   * through here exactly once, so none is delivered twice (a listener that attaches right after
   * startPipeline returns sees the held ones first, then the rest, each once).
   */
  private held: JourneyEvent[] | null = [];

  private emitEvent(ev: JourneyEvent): void {
    if (this.counters !== null) this.counters.push(ev);
    else this.pass(ev);
  }

  private pass(ev: JourneyEvent): void {
    if (this.held !== null) this.held.push(ev);
    else this.emit('event', ev);
  }

  /** `--rule-counters`: flow.end events wait for a reading of the kernel's counters (live only). */
  private counters: RuleCounterWatch | null = null;

  /** Delivers the held events, then lets events through as they come. Idempotent. */
  release(): void {
    const held = this.held;
    if (held === null) return;
    this.held = null;
    for (const ev of held) this.emit('event', ev);
  }

  notice(message: string, code?: string): void {
    this.notices.push(message);
    this.emitEvent({ v: SCHEMA_VERSION, seq: this.nextSeq(), time: Date.now(), type: 'notice', message, ...(code !== undefined ? { code } : {}) });
  }

  private context(): SourceContext {
    return {
      opts: this.opts,
      correlator: this.correlator,
      explainer: this.explainer,
      docker: this.docker,
      notice: (m, c) => this.notice(m, c),
      emitEvent: (ev) => this.emitEvent(ev),
      nextSeq: () => this.nextSeq(),
      onBatch: (b) => this.onBatch(b),
      onKernelDrop: (d) => this.onKernelDrop(d),
      quietInKernel: (n) => {
        this.drops.dropsQuiet += n;
      },
      statsEvent: () => this.statsEvent(),
      stopWith: (r) => this.stopWith(r),
      isStopping: () => this.stopping !== null,
      setError: (e) => {
        this.error = e instanceof JourneyError ? e : new JourneyError('E_PARSE', `replay: ${e.message}`, {}, { cause: e });
      },
    };
  }

  async init(): Promise<void> {
    const o = this.opts;
    const src = this.source;
    const isLocal = (a: string): boolean | null => this.explainer?.isLocal(a) ?? null;
    const names = await openDockerNames(o, src.usesDockerDaemon, isLocal);
    this.docker = names.inventory;
    const pending = [...names.notices];
    if (this.docker) {
      this.docker.on('notice', (m: string) => this.notice(m));
      this.docker.on('change', () => {
        names.clear();
        src.onDockerChange?.();
      });
    }
    const how = src.explainWith();
    const files =
      how.files ??
      (o.testSimulatorRuleset !== undefined && how.enabled && src.mode === 'live' ? { ...o.testSimulatorRuleset, liveHost: true } : undefined);
    this.explainer = await createFlowExplainer({
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      enabled: how.enabled,
      ...(files ? { files } : {}),
    });
    const verify = src.mode === 'live' && this.explainer.unavailable === null ? (o.verify ?? 0) : 0;
    if (verify > 0) {
      this.verifier = await FlowVerifier.start({ ...(o.netns !== undefined ? { netns: o.netns } : {}), rate: verify });
      this.explainer = this.verifier.wrap(this.explainer);
      pending.push(verifierNotice(this.verifier));
    }
    if (this.explainer.unavailable !== null && o.explain !== false) pending.push(how.missing ?? this.explainer.unavailable);
    if (o.ruleCounters === true) {
      if (src.mode !== 'live') pending.push("--rule-counters needs a live host: a capture file does not hold the kernel's rule counters");
      else if (this.explainer.unavailable === null)
        this.counters = new RuleCounterWatch({
          read: () => readRuleCounters(o.netns !== undefined ? { netns: o.netns } : {}),
          deliver: (ev) => this.pass(ev),
          notice: (m) => this.notice(m),
        });
    }
    const proxyLinker = new DockerProxyLinker({
      proxies: () => names.index()?.snapshot.proxies ?? [],
      gateways: () => new Set((names.index()?.snapshot.networks ?? []).flatMap((n) => n.gateways)),
      ...(src.liveSockets ? { sockets: (pid: number) => processSockets(pid) } : {}),
      isLocal,
    });
    this.correlator = new Correlator({
      emit: (ev) => this.emitEvent(ev),
      ...(names.resolver ? { names: names.resolver } : {}),
      ...(this.explainer.unavailable === null ? { explainer: this.explainer } : {}),
      proxyLinker,
      ...(src.hookTuples ? { hookTuples: src.hookTuples } : {}),
      ...(o.maxFlows !== undefined ? { maxFlows: o.maxFlows } : {}),
      ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
      ...(o.holdMs !== undefined ? { holdMs: o.holdMs } : {}),
      // flow.start as soon as the first packet joins its flow, unless a display delay is asked for
      // with --verify, flow.start waits a moment for the kernel's trace of its first packet
      startDelayMs: Math.max(o.startDelayMs ?? 0, verify > 0 ? VERIFY_START_DELAY_MS : 0),
      ...(o.updateIntervalMs !== undefined ? { updateIntervalMs: o.updateIntervalMs } : {}),
    });
    this.drops = new DropReporter(o.quietDropReasons, this.correlator, this.explainer, (ev) => this.emitEvent(ev));
    for (const n of pending) this.notice(n);
    if (o.write !== undefined) this.writer = createPcapngWriter(o.write, { application: 'journey' });
    await src.open(this.context());
  }

  private onBatch(b: FrameBatch): void {
    this.writer?.writeBatch(b);
    this.nonIp += intakeBatch(b, this.intakeState, this.correlator, this.ledger.of(b.iface), this.source.beforePacket?.bind(this.source));
  }

  onKernelDrop(d: KernelDrop): void {
    this.drops.onKernelDrop(d);
  }

  private statsEvent(): void {
    const s = this.correlator.stats();
    this.emitEvent({
      v: SCHEMA_VERSION,
      seq: this.nextSeq(),
      time: Date.now(),
      type: 'capture.stats',
      stats: this.captureStats(),
      flows: { live: s.flowsLive, evicted: s.flowsEvicted },
      loss: this.loss(),
    });
  }

  private captureStats(): CaptureStats[] {
    const skipped = this.skips.snapshot();
    return this.source.captureStats().map((c) => ({ ...c, skipped: { ...c.skipped, ...skipped } }));
  }

  async run(): Promise<void> {
    if (this.stopping) return; // stopped before it ran (e.g. stop() right after startPipeline)
    await this.source.run(this.context());
  }

  flows(): FlowInfo[] {
    return this.correlator.snapshot();
  }

  stats(): PipelineStats {
    const q = this.drops.dropsQuiet;
    return {
      capture: this.captureStats(),
      flows: this.correlator.stats(),
      decodeSkipped: this.skips.snapshot(),
      nonIp: this.nonIp,
      ...(this.writer ? { written: { frames: this.writer.written, dropped: this.writer.dropped } } : {}),
      ...(q > 0 ? { dropsQuiet: q } : {}),
      loss: this.loss(),
    };
  }

  /** Per interface: captured = shown + not shown + lost (+ pending while running). */
  loss(): IfaceLoss[] {
    return this.ledger.report(this.source.captureStats(), this.correlator.ifaceTallies());
  }

  stop(): Promise<void> {
    return this.stopWith('shutdown');
  }

  private stopWith(reason: string): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      await this.source.stop();
      this.docker?.close();
      // stop() may come before init finished (a setup error): nothing to flush then
      if (this.correlator) {
        this.correlator.flush(reason);
        await this.counters?.drain();
        this.counters?.stop();
        await this.verifier?.stop();
        const s = this.correlator.stats();
        if (s.packetsUnmatched > 0 || s.pendingOverflow > 0) {
          const early = s.pendingEarly > 0 ? ` (${s.pendingEarly} stopped waiting early: the hold queue was full)` : '';
          this.notice(
            `${s.packetsUnmatched} packets had no conntrack entry (shown as flows without conntrack)${early}; ${s.pendingOverflow} dropped from a full hold queue`,
          );
        }
        if (this.fragments.orphans > 0)
          this.notice(
            `${this.fragments.orphans} trailing IP fragments came without their first fragment: shown with ports 0 (${this.fragments.joined} joined their datagram's flow)`,
          );
        const quiet = this.drops.finalNotice();
        if (quiet !== null) this.notice(quiet);
        for (const l of this.loss()) {
          const n = lossNotice(l);
          if (n !== null) this.notice(n);
        }
        this.statsEvent();
      }
      if (this.writer) {
        // a capture file that could not be written is an error of the run (exit status), not only a notice
        await this.writer.close().catch((e: unknown) => {
          this.notice(`write: ${(e as Error).message}`, (e as JourneyError).code ?? 'E_CAPTURE');
          this.error ??= e instanceof JourneyError ? e : new JourneyError('E_CAPTURE', `--write: ${(e as Error).message}`, {}, { cause: e });
        });
      }
      this.release();
      this.emit('end');
      this.resolveDone();
    })();
    return this.stopping;
  }

  [Symbol.asyncIterator](): AsyncIterator<JourneyEvent> {
    return iterateEvents(this, () => this.nextSeq(), this.opts.iteratorBuffer ?? 10_000);
  }
}

/**
 * Starts the pipeline (see the header). Listeners attached right after the returned promise
 * resolves get every event, each once: events (the opening notices included) are held until the
 * setImmediate after it returns, then delivered in order; what comes later is delivered as it comes.
 */
export async function startPipeline(opts: PipelineOptions = {}): Promise<Pipeline> {
  const p = new PipelineImpl(opts);
  try {
    await p.init();
    if (p.mode === 'live') await p.run();
  } catch (e) {
    await p.stop().catch(() => {
      // the setup error is what the caller needs to see
    });
    throw e;
  }
  // deliver what was said during the set-up (and since) to listeners that attach now, then run a replay
  setImmediate(() => {
    p.release();
    if (p.mode === 'replay') {
      p.run().catch((e: unknown) => {
        p.notice(`pipeline: ${(e as Error).message}`, (e as JourneyError).code ?? 'E_INTERNAL');
        void p.stop();
      });
    }
  });
  return p;
}

export type { EndpointName };
