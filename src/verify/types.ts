/**
 * The report of `journey verify hairpin` (its `--json` output, documented in docs/verify.md) and of
 * `verifyHairpin()`, which `journey serve` offers over the WebSocket API.
 */
import type { ConntrackEntry } from '../model/conntrack.js';
import type { Explanation } from '../model/explanation.js';
import type { DropInfo } from '../model/events.js';

export const VERIFY_REPORT_VERSION = 1;

/**
 * The hairpin paths checked for every published port (what each means and needs: ./hairpin-paths.ts):
 * another container on the target's bridge -> host address:port; the target container -> its own
 * published port (self-hairpin); a container on another bridge -> host address:port; the host ->
 * 127.0.0.1:port; the host -> its own address:port.
 */
export const HAIRPIN_PATH_KINDS = ['same-bridge', 'self', 'cross-bridge', 'host-loopback', 'host-address'] as const;
export type CheckKind = (typeof HAIRPIN_PATH_KINDS)[number];

/** pass: behaves as this host's configuration says; blocked: refused by Docker's design (isolation, icc=false), as expected. */
export type CheckStatus = 'pass' | 'fail' | 'blocked' | 'skipped';

export interface PortRef {
  readonly proto: string;
  readonly hostIp: string;
  readonly hostPort: number;
  readonly container: string | null;
  readonly containerIp: string;
  readonly containerPort: number;
  readonly bridge: string | null;
  readonly source: 'docker' | 'dnat-rule' | 'docker-proxy';
}

export interface Peer {
  readonly kind: 'container' | 'host';
  /** Container name, or "host". */
  readonly name: string;
  readonly ip: string;
  readonly bridge: string | null;
  readonly pid: number | null;
}

export interface Expectation {
  /** connect: the port should answer; blocked: Docker's configuration refuses this path on purpose. */
  readonly outcome: 'connect' | 'blocked';
  /** Who answers: the userland proxy (docker-proxy) or the container itself through DNAT. */
  readonly via: 'docker-proxy' | 'dnat';
  /** Where DNAT sends the packet ("172.17.0.2:80"), null on the docker-proxy path. */
  readonly dnatTo: string | null;
  /** The source address the target container sees. */
  readonly targetSeesSource: string;
  /** Why it sees that address, in plain words ("the docker0 gateway: MASQUERADE for self-hairpin"). */
  readonly sourceWhy: string;
  /** The host settings this path depends on, in plain words. */
  readonly requires: readonly string[];
  /** For outcome=blocked: Docker's reason. */
  readonly blockedBy: string | null;
  /** The rule that does the source NAT on this path, if any. */
  readonly masqRule: string | null;
  /** The DNAT rule that applies, if any. */
  readonly dnatRule: string | null;
  /** One sentence for people. */
  readonly text: string;
}

export interface ProbeResult {
  readonly connected: boolean;
  /** ECONNREFUSED, ETIMEDOUT, ECONNRESET, EHOSTUNREACH... */
  readonly error: string | null;
  readonly ms: number;
  readonly localAddr: string | null;
  readonly localPort: number;
}

export interface TraceStep {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly rule: string | null;
  readonly handle: number | null;
  /** 1-based position in the chain, when the handle was found. */
  readonly ruleNumber: number | null;
  readonly verdict: string;
  /** "packet" lines (iif/oif/addresses) are not steps; this is the trace id of the packet. */
  readonly traceId: string;
}

export interface Evidence {
  /** Conntrack entries of this probe in the host namespace (and the docker-proxy's own connection). */
  readonly conntrack: readonly ConntrackEntry[];
  /** The docker-proxy's onward connection (gateway -> container), when the proxy answered. */
  readonly proxyLeg: ConntrackEntry | null;
  /** Packets seen in the host namespace (tcpdump -i any), one line each: "vethX In IP a.b > c.d: Flags [S]". */
  readonly packets: readonly string[];
  /** The first packet's journey as the simulator explains it, when src/explain is available. */
  readonly explanation: Explanation | null;
  /** Drops of the probe's packets seen by eBPF (tp_btf/kfree_skb), with the kernel's reason, when available. */
  readonly drops?: readonly DropInfo[];
  /** The kernel's own trace of the probe (nft monitor trace), when taken. */
  readonly trace: readonly TraceStep[];
  /** What the evidence shows, in plain words. */
  readonly observed: readonly string[];
}

export interface HairpinCheck {
  readonly id: string;
  readonly kind: CheckKind;
  readonly port: PortRef;
  readonly from: Peer;
  /** Where the probe connects: "10.0.10.26:8000". */
  readonly to: string;
  readonly status: CheckStatus;
  readonly expected: Expectation | null;
  readonly probe: ProbeResult | null;
  readonly evidence: Evidence | null;
  /** For fail: the causes, in plain words, most likely first. */
  readonly causes: readonly string[];
  /** Differences between what was expected and what was seen that did not make the check fail. */
  readonly deviations: readonly string[];
  /** For skipped: why. */
  readonly skipReason: string | null;
}

export interface HostSummary {
  readonly netns: string | null;
  readonly userlandProxy: boolean | null;
  readonly userlandProxyWhy: string;
  readonly backends: readonly string[];
  /** "docker<28" (isolation chains), "docker28+" (DOCKER-FORWARD / raw rules), "docker29-nftables", "unknown". */
  readonly generation: string;
  readonly bridgeNfCallIptables: boolean | null;
  readonly hostAddress: string | null;
  readonly bridges: readonly {
    readonly name: string;
    readonly addr: string | null;
    readonly routeLocalnet: boolean | null;
    readonly nfCallIptables: boolean | null;
    readonly ports: readonly { readonly ifname: string; readonly hairpin: boolean; readonly endpoint: string | null }[];
  }[];
  readonly dockerProxies: readonly { readonly pid: number; readonly listen: string; readonly to: string }[];
  readonly docker: { readonly reachable: boolean; readonly endpoint: string; readonly reason: string | null };
}

export interface PassiveFlow {
  readonly kind: CheckKind | 'unknown';
  readonly from: string;
  readonly to: string;
  readonly dnatTo: string | null;
  readonly targetSaw: string | null;
  readonly answered: boolean;
  readonly via: 'docker-proxy' | 'dnat';
  readonly status: CheckStatus;
  readonly causes: readonly string[];
  readonly conntrack: ConntrackEntry;
  /** table: already in the conntrack table when watching began; event: happened while watching. */
  readonly seen: 'table' | 'event';
  /** With the live pipeline: where the flow's packets were captured. */
  readonly legs?: readonly string[];
  /** With the live pipeline: drops seen by eBPF for this flow, with the kernel's reason. */
  readonly drops?: readonly string[];
  /** With the live pipeline: the explained path of the flow's first packet. */
  readonly explanation?: Explanation | null;
}

export interface HairpinReport {
  readonly v: typeof VERIFY_REPORT_VERSION;
  readonly mode: 'active' | 'passive';
  readonly startedAt: string;
  readonly durationMs: number;
  readonly host: HostSummary;
  readonly ports: readonly PortRef[];
  readonly checks: readonly HairpinCheck[];
  /** Passive mode: the hairpin flows seen. */
  readonly flows: readonly PassiveFlow[];
  readonly summary: { readonly total: number; readonly pass: number; readonly fail: number; readonly blocked: number; readonly skipped: number };
  /** true when no check failed. */
  readonly ok: boolean;
  readonly notices: readonly string[];
}
