/**
 * Where a pipeline's packets and conntrack events come from: one interface, two implementations
 * (live-source.ts: capture workers, the live conntrack table, eBPF, `nft monitor`; replay-source.ts:
 * capture files, a conntrack snapshot or event log, time driven by the packets).
 */
import type { ConntrackSource } from '../model/conntrack.js';
import type { Correlator } from '../correlate/correlator.js';
import type { DockerInventory } from '../docker/inventory.js';
import type { JourneyEvent } from '../model/events.js';
import type { CaptureStats, FrameBatch } from '../model/observation.js';
import type { Tuple } from '../model/tuple.js';
import type { KernelDrop } from '../native/index.js';
import type { ReloadableExplainer, RulesetFilesSpec } from './flow-explainer.js';
import type { PipelineOptions } from './types.js';

/** Frames: capture workers or files. */
export interface FrameSource {
  readonly kind: string;
  /** Starts delivering batches; resolves when capture is running (live) or finished (replay). */
  start(onBatch: (b: FrameBatch) => void, onError: (e: Error) => void): Promise<void>;
  /** Interfaces added after the start (a new Docker network); no-op for replays. */
  addInterface?(iface: string): void;
  stats(): CaptureStats[];
  stop(): Promise<void>;
}

/** What a source may use of the pipeline it feeds. */
export interface SourceContext {
  readonly opts: PipelineOptions;
  readonly correlator: Correlator;
  readonly explainer: ReloadableExplainer;
  readonly docker: DockerInventory | null;
  notice(message: string, code?: string): void;
  emitEvent(ev: JourneyEvent): void;
  nextSeq(): number;
  /** Decodes a batch and joins its packets to flows. */
  onBatch(b: FrameBatch): void;
  /** A packet the kernel dropped (eBPF): joined to its flow, reported or counted as quiet. */
  onKernelDrop(d: KernelDrop): void;
  /** Quiet drops the kernel counted without sending them (OTHERHOST, filtered there): added to the quiet count. */
  quietInKernel(n: number): void;
  /** Emits capture.stats now. */
  statsEvent(): void;
  /** Ends the pipeline (replay end). */
  stopWith(reason: string): Promise<void>;
  isStopping(): boolean;
  /** Records that a replay could not be read to the end. */
  setError(e: Error): void;
}

export type HookTupleLookup = (orig: Tuple) => readonly { hook: string; priority: number; tuple: Tuple; ctStatus: readonly string[] }[];

export interface PipelineSource {
  readonly mode: 'live' | 'replay';
  /** Interfaces captured (live: grows as Docker bridges appear). */
  readonly interfaces: readonly string[];
  /** Whether Docker's Engine API is asked for names (a replay only when --docker-host is given). */
  readonly usesDockerDaemon: boolean;
  /** The explainer's ruleset: live, the recorded files, or none (then why). */
  explainWith(): { enabled: boolean; files?: RulesetFilesSpec; missing?: string };
  /** For the correlator: the in-kernel NAT proof by original tuple (live with eBPF). */
  readonly hookTuples?: HookTupleLookup;
  /** For docker-proxy pairing: look at the proxy's sockets (live only). */
  readonly liveSockets: boolean;
  /** Opens conntrack and frames (setup errors are thrown: E_NO_NETNS, E_CAPTURE, E_PARSE...). */
  open(ctx: SourceContext): Promise<void>;
  /** Live: returns once everything runs. Replay: reads to the end, then stops the pipeline. */
  run(ctx: SourceContext): Promise<void>;
  /** A packet at `ms` is about to join its flow (a replay drives its clock from the packets). */
  beforePacket?(ms: number): void;
  /** Docker's networks changed (live: capture new bridges). */
  onDockerChange?(): void;
  captureStats(): CaptureStats[];
  stop(): Promise<void>;
  /** The conntrack source (for its kind in notices). */
  readonly conntrack: ConntrackSource | null;
}
