import type { Explanation } from './explanation.js';
import type { NatMapping, ConntrackEntry } from './conntrack.js';
import type { Tuple } from './tuple.js';
import type { CaptureStats } from './observation.js';

/**
 * The versioned event schema shared by `journey watch --json` (one event per line) and the
 * WebSocket stream of `journey serve`. Published as a JSON Schema under docs/. Any change that
 * removes or renames a field bumps SCHEMA_VERSION.
 */
export const SCHEMA_VERSION = 1;

/** One leg of a flow: the packets of one direction seen on one interface. */
export interface FlowLeg {
  readonly iface: string;
  /** orig = in the direction of the connection's first packet; reply = the answer. */
  readonly direction: 'orig' | 'reply';
  /** The tuple as seen on this interface (pre-NAT on the uplink, post-NAT on the bridge...). */
  readonly tuple: Tuple;
  readonly firstUs: number;
  readonly lastUs: number;
  readonly packets: number;
  readonly bytes: number;
}

/** Names Docker gives to an address, when the Engine API is reachable. */
export interface EndpointName {
  readonly addr: string;
  readonly container?: string;
  readonly network?: string;
  /** e.g. "8000/tcp -> 80" when the address:port is a published port. */
  readonly published?: string;
}

export interface FlowInfo {
  /** Stable id of the flow (conntrack id or derived key). */
  readonly id: string;
  readonly orig: Tuple;
  readonly reply: Tuple | null;
  readonly nat: NatMapping;
  readonly legs: readonly FlowLeg[];
  readonly names: readonly EndpointName[];
  readonly tcpState?: string;
  readonly ctStatus: readonly string[];
  /** Delay between the first packet on the ingress leg and on the egress leg, in microseconds. */
  readonly legDelayUs?: number;
  /** docker-proxy: the other half of a proxied journey, and the source the container sees. */
  readonly proxiedBy?: ProxiedBy;
  readonly explanation: Explanation | null;
  /** Drops seen by eBPF for this flow, if any. */
  readonly drops: readonly DropInfo[];
  /** In-kernel NAT proof: tuples seen by the netfilter hook programs. */
  readonly hookTuples?: readonly { readonly hook: string; readonly priority: number; readonly tuple: Tuple; readonly ctStatus: readonly string[] }[];
}

/**
 * A journey through docker-proxy (the userland proxy): two connections, two conntrack entries (of
 * two families when an IPv6 client reaches an IPv4 container), one journey.
 */
export interface ProxiedBy {
  readonly pid: number;
  /** The other half's flow id (null until it appears). */
  readonly peerFlowId: string | null;
  /** Which half this flow is: the client's connection to docker-proxy, or docker-proxy's own to the container. */
  readonly half?: 'client' | 'container';
  /** The client half's original tuple (client -> host:port), once known. */
  readonly client?: Tuple | null;
  /** The container half's original tuple (docker-proxy's end -> container:port), once known. */
  readonly container?: Tuple | null;
  /** The source the container sees: docker-proxy's end of its own connection (a bridge gateway), never the client. */
  readonly containerSees?: { readonly addr: string; readonly port: number } | null;
  /** One sentence: who the container sees, and that the client's address is lost to it. */
  readonly note?: string;
}

export interface DropInfo {
  readonly timeUs: number;
  readonly reason: string;
  readonly iface: string | null;
  readonly tuple: Tuple | null;
  /** The rule that dropped it, joined from the explainer, when reason is NETFILTER_DROP. */
  readonly rule: { readonly table: string; readonly chain: string; readonly rule: string | null } | null;
}

interface EventBase {
  readonly v: typeof SCHEMA_VERSION;
  /** Monotonic sequence number of the event within this journey process. */
  readonly seq: number;
  /** Milliseconds since the epoch. */
  readonly time: number;
  /** The host that produced the event, in a fleet view (`journey serve --from nats://…`); absent for the local host. */
  readonly host?: string;
}

export interface FlowEvent extends EventBase {
  readonly type: 'flow.start' | 'flow.update' | 'flow.end';
  readonly flow: FlowInfo;
  /** flow.end only: why it ended — destroyed (conntrack), idle, evicted (table full), shutdown, replay-end. */
  readonly reason?: string;
}
export interface DropEvent extends EventBase {
  readonly type: 'drop';
  readonly drop: DropInfo;
  readonly flowId: string | null;
}
export interface RulesetChangedEvent extends EventBase {
  readonly type: 'ruleset.changed';
  readonly tables: readonly string[];
}
export interface CaptureStatsEvent extends EventBase {
  readonly type: 'capture.stats';
  readonly stats: readonly CaptureStats[];
  readonly flows: { readonly live: number; readonly evicted: number };
  /** Per interface: captured = shown + not shown + lost (where) + pending (still held). */
  readonly loss?: readonly IfaceLossCount[];
}
/** Where one interface's captured frames went (the pipeline's loss ledger). */
export interface IfaceLossCount {
  readonly iface: string;
  readonly captured: number;
  readonly delivered: number;
  readonly shown: number;
  readonly notShown: { readonly nonIp: number; readonly undecodable: number; readonly copies: number; readonly linkControl: number };
  readonly lost: { readonly kernelRing: number; readonly interface: number; readonly pipe: number; readonly holdQueue: number };
  readonly pending: number;
}
/** The stream tells a client how many events it lost (slow consumer), in band. */
export interface LostEvent extends EventBase {
  readonly type: 'lost';
  readonly count: number;
  /** seq of the first and last lost event, when the lost messages included events (serve). */
  readonly firstSeq?: number;
  readonly lastSeq?: number;
}
export interface NoticeEvent extends EventBase {
  readonly type: 'notice';
  /** e.g. "no drop reasons: eBPF unavailable: EPERM". */
  readonly message: string;
  readonly code?: string;
}

export type JourneyEvent = FlowEvent | DropEvent | RulesetChangedEvent | CaptureStatsEvent | LostEvent | NoticeEvent;

export type { ConntrackEntry };
