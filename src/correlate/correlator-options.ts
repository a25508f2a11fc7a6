/**
 * What a Correlator is built with and what it counts: the options (with their defaults), the
 * interfaces of its helpers (names, explanations, docker-proxy links) and its statistics.
 */
import type { EndpointName, FlowInfo, JourneyEvent, ProxiedBy } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import type { Tuple } from '../model/tuple.js';

/** Names an address (Docker); null when unknown. */
export type NameResolver = (addr: string, port: number | undefined, proto: string) => EndpointName | null;

/** Explains a flow (the simulator); null when no explanation is available. See explainer.ts. */
export interface FlowExplainer {
  /** Bumped when the ruleset changed: cached explanations of an older generation are redone. */
  readonly generation: number;
  explain(flow: FlowInfo): Explanation | null;
  /** The flow's explanation is waiting for something (the kernel's trace, --verify): ask again. */
  awaits?(flowId: string): boolean;
}

/** What the docker-proxy linker reads of a new flow (its id, tuples and NAT: no legs or explanation). */
export type ProxyLinkFlow = Pick<FlowInfo, 'id' | 'orig' | 'reply' | 'nat'>;

/** Links docker-proxy halves; see proxy-link.ts. */
export interface ProxyLinker {
  /** Called once per new flow; returns links to set (this flow and possibly its peer). */
  onFlow(flow: ProxyLinkFlow, timeUs: number): readonly { flowId: string; proxiedBy: ProxiedBy }[];
}

export interface CorrelatorOptions {
  readonly emit: (ev: JourneyEvent) => void;
  readonly names?: NameResolver;
  readonly explainer?: FlowExplainer;
  readonly proxyLinker?: ProxyLinker;
  readonly maxFlows?: number;
  readonly maxEntries?: number;
  /** A flow with no packet and no conntrack change for this long ends (default 120 s). */
  readonly idleTimeoutMs?: number;
  /** How long a packet waits for its conntrack entry (default 2000 ms). */
  readonly holdMs?: number;
  readonly maxPending?: number;
  /** Wire bytes the hold queue may keep (default 64 MiB). */
  readonly maxPendingBytes?: number;
  /** flow.start comes this long after the flow appears (default 250 ms; up to 4x while no packet is captured). */
  readonly startDelayMs?: number;
  readonly updateIntervalMs?: number;
  /** In-kernel NAT proof (eBPF netfilter hook programs) for a connection, by its original tuple. */
  readonly hookTuples?: (orig: Tuple) => readonly { hook: string; priority: number; tuple: Tuple; ctStatus: readonly string[] }[];
  /** Counter-only flow.update events per tick (default 1000: 10,000/s at the live 100 ms tick). */
  readonly maxCounterUpdatesPerTick?: number;
  /** At most this many drops are kept per flow (default 16; more are counted). */
  readonly maxDropsPerFlow?: number;
  /** A destroyed entry stays findable this long for late packets (default 1500 ms). */
  readonly destroyGraceMs?: number;
  /** Create flows for entries of the initial dump only when packets arrive (default true). */
  readonly lazyDumped?: boolean;
}

export interface CorrelatorStats {
  flowsLive: number;
  flowsStarted: number;
  flowsEnded: number;
  flowsEvicted: number;
  flowsIdled: number;
  ctEntries: number;
  ctEvicted: number;
  packetsMatched: number;
  packetsHeld: number;
  packetsHeldMatched: number;
  /** Held packets that found no conntrack entry in time (became conntrack-less flows). */
  packetsUnmatched: number;
  /** Held packets that stopped waiting before their hold ended because the queue was full (joined or became flows at once). */
  pendingEarly: number;
  /** Packets dropped because the hold queue was full even after that (a packet larger than its byte budget). */
  pendingOverflow: number;
  /** Link-local control packets without conntrack (IPv6 ND/MLD, IGMP, DHCP): counted, not shown as flows. */
  linkControl: number;
  /** Kernel drops seen, drops that found no flow, drops beyond the per-flow limit. */
  drops: number;
  dropsUnjoined: number;
  dropsOverLimit: number;
  /** True copies of one frame seen twice on the same interface (a promiscuous bridge), counted once. */
  sameTwice: number;
  pendingNow: number;
}

/** The statistics kept as plain counters (the others are read from the table, queue and stash). */
export type CorrelatorCounters = Omit<CorrelatorStats, 'flowsLive' | 'ctEntries' | 'ctEvicted' | 'pendingNow' | 'dropsUnjoined'>;

export function newCorrelatorCounters(): CorrelatorCounters {
  return {
    flowsStarted: 0,
    flowsEnded: 0,
    flowsEvicted: 0,
    flowsIdled: 0,
    packetsMatched: 0,
    packetsHeld: 0,
    packetsHeldMatched: 0,
    packetsUnmatched: 0,
    pendingEarly: 0,
    pendingOverflow: 0,
    linkControl: 0,
    drops: 0,
    dropsOverLimit: 0,
    sameTwice: 0,
  };
}

type OptionalHelpers = 'emit' | 'names' | 'explainer' | 'proxyLinker' | 'hookTuples';

/** Options with every default filled in. */
export type ResolvedCorrelatorOptions = Required<Omit<CorrelatorOptions, 'names' | 'explainer' | 'proxyLinker' | 'hookTuples'>> &
  Pick<CorrelatorOptions, 'names' | 'explainer' | 'proxyLinker' | 'hookTuples'>;

export const CORRELATOR_DEFAULTS: Required<Omit<CorrelatorOptions, OptionalHelpers>> = {
  maxFlows: 100_000,
  maxEntries: 262_144,
  idleTimeoutMs: 120_000,
  holdMs: 2_000,
  maxPending: 50_000,
  maxPendingBytes: 64 * 1024 * 1024,
  startDelayMs: 250,
  updateIntervalMs: 2_000,
  lazyDumped: true,
  destroyGraceMs: 1_500,
  maxDropsPerFlow: 16,
  maxCounterUpdatesPerTick: 1_000,
};
