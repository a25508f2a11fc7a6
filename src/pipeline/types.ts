/** What the pipeline takes and gives (see pipeline.ts for how it runs). */
import type { CaptureBackend } from '../capture/backends/registry.js';
import type { ConntrackBackend } from '../conntrack/select.js';
import type { CorrelatorStats } from '../correlate/correlator.js';
import type { DockerInventory } from '../docker/inventory.js';
import type { JourneyError } from '../model/errors.js';
import type { FlowInfo, JourneyEvent } from '../model/events.js';
import type { CaptureStats } from '../model/observation.js';
import type { HookPlanName } from '../native/index.js';
import type { RulesetFilesSpec } from './flow-explainer.js';
import type { IfaceLoss } from './loss-ledger.js';

export interface PipelineOptions {
  /** Live: each flow.end carries the increments of its path's rule counters during its life (`--rule-counters`). */
  readonly ruleCounters?: boolean;
  /** Network namespace of the Docker host (name under /var/run/netns, path, or pid). */
  readonly netns?: string;
  /** Interfaces to capture (tcpdump's -i); default: every Docker bridge and the uplink. */
  readonly interfaces?: readonly string[];
  /** Capture filter in tcpdump syntax (compiled by libpcap; live capture only). */
  readonly filter?: string;
  /** Capture backend (capture/backends/registry.ts); default native, its fallback announced. */
  readonly backend?: CaptureBackend;
  readonly snaplen?: number;
  /** Kernel ring per interface, MiB (default 32). */
  readonly bufferSizeMiB?: number;
  /** How long a light trickle may wait in the ring before it is handed over, ms (default 1; older kernels round it up to a jiffy). */
  readonly bufferTimeoutMs?: number;
  readonly promisc?: boolean;
  /** Docker endpoint (--docker-host / DOCKER_HOST); false = do not use Docker. */
  readonly dockerHost?: string | false;
  /** Replay: Docker names from a recorded snapshot (DockerSnapshot JSON) instead of a daemon. */
  readonly dockerSnapshot?: string;
  /** Replay: capture files (pcap/pcapng), merged by time. */
  readonly read?: readonly string[];
  /** Replay: conntrack snapshot file(s) (conntrack -L / -E output, /proc format, JSON lines). */
  readonly conntrackSnapshot?: string | readonly string[];
  /** Live conntrack source: auto (netlink, then the conntrack tool, then /proc), or forced. */
  readonly conntrack?: ConntrackBackend;
  /** Keep what was captured in a pcapng file. */
  readonly write?: string;
  /**
   * Live: let the capture fold runs of one connection's packets into one batch entry (the native
   * backend; README "Choices"). Default true; off with `write` (every frame is kept) or
   * JOURNEY_CAPTURE_FOLD=off.
   */
  readonly fold?: boolean;
  /**
   * Live: the kernel's view through eBPF (src/native): drops with the kernel's reason (joined to
   * flows and to the rule that dropped them) and tuples at the netfilter hooks (the in-kernel NAT
   * proof, FlowInfo.hookTuples). Default true; what the kernel refuses is noticed.
   */
  readonly kernel?: boolean;
  /**
   * Live, with the kernel's view: which netfilter hook points the programs are linked at
   * (HOOK_PLANS in src/native: 'after-nat', the default, two links a forwarded packet; 'nat', five).
   */
  readonly hookPoints?: HookPlanName;
  /**
   * Kernel drop reasons never reported, by the kernel's name ("NO_SOCKET"...): filtered in the
   * kernel (openKernelEvents' ignoreReasons). An unknown name is an E_USAGE error.
   */
  readonly ignoreDropReasons?: readonly string[];
  /**
   * Drop reasons not reported when the drop belongs to no flow (default ["NOT_SPECIFIED",
   * "OTHERHOST"]: IPv6 router solicitations and other packets the kernel frees without a reason,
   * noise on any host); a drop with such a reason that joins a flow is still reported — except
   * OTHERHOST, which is never a flow's fate: the host's copy of a frame that the (promiscuous)
   * bridge forwarded from port to port. [] reports every drop.
   */
  readonly quietDropReasons?: readonly string[];
  /** Explain flows with the simulator (default true; a replay needs `rulesetFiles`). */
  readonly explain?: boolean;
  /** Replay: the recorded ruleset and host context to explain flows with. */
  readonly rulesetFiles?: RulesetFilesSpec;
  /**
   * Live: check each flow's explanation against the kernel's own trace of its first packet, for up
   * to this many new flows a second (src/explain/flow-verifier.ts). Off (undefined or 0) by default.
   */
  readonly verify?: number;
  /**
   * Tests only: live, the simulator explains with this recorded ruleset (the host context is still
   * read live) instead of the host's own — a stale ruleset that `verify` must find contradicted.
   */
  readonly testSimulatorRuleset?: RulesetFilesSpec;
  readonly maxFlows?: number;
  readonly idleTimeoutMs?: number;
  /** How long packets wait for their conntrack entry (default 2000 ms). */
  readonly holdMs?: number;
  /**
   * How long a flow waits before flow.start so that its later legs are on it (default 0: flow.start
   * with the first packet, later legs as flow.update; the terminal line view uses 250).
   */
  readonly startDelayMs?: number;
  readonly updateIntervalMs?: number;
  /** capture.stats period (default 5000 ms; 0 = only at the end). */
  readonly statsIntervalMs?: number;
  /** Max events buffered for a slow async-iterator consumer before `lost` is reported (default 10000). */
  readonly iteratorBuffer?: number;
}

export interface PipelineStats {
  readonly capture: readonly CaptureStats[];
  readonly flows: CorrelatorStats;
  readonly decodeSkipped: Readonly<Record<string, number>>;
  readonly nonIp: number;
  readonly written?: { readonly frames: number; readonly dropped: number };
  /** Kernel drops left out because they belong to no flow and their reason is quiet (quietDropReasons). */
  readonly dropsQuiet?: number;
  /** Per interface, where every captured frame went (pipeline/loss-ledger.ts). */
  readonly loss: readonly IfaceLoss[];
}

export interface Pipeline extends AsyncIterable<JourneyEvent> {
  on(event: 'event', fn: (ev: JourneyEvent) => void): this;
  off(event: 'event', fn: (ev: JourneyEvent) => void): this;
  /** Stops capture and sources, ends every flow, emits the final capture.stats. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the pipeline has stopped (replay finished, or after stop()). */
  readonly done: Promise<void>;
  stats(): PipelineStats;
  /** Current flows (for --top / serve snapshots). */
  flows(): FlowInfo[];
  /** What runs and what is missing, as said in the opening notices. */
  readonly notices: readonly string[];
  readonly interfaces: readonly string[];
  readonly mode: 'live' | 'replay';
  readonly docker: DockerInventory | null;
  /** Set when a replay could not be read to the end (the events up to there were delivered). */
  readonly error: JourneyError | null;
}
