/**
 * The report of `journey verify exposure` (its `--json` output, docs/verify.md): who can reach
 * each published port and each container address, and why. One row per (target, source class,
 * IP family), decided by the simulator (src/netfilter) on the host's own ruleset.
 */
import type { Explanation } from '../model/explanation.js';

export const EXPOSURE_REPORT_VERSION = 1;

/**
 * Who sends the packet:
 *   internet      a remote address, arriving on the uplink (it can reach the host's addresses only);
 *   lan           a neighbour on the uplink's subnet, which can route anything to the host:
 *                 container addresses, even 127.0.0.1;
 *   host          the host itself (its addresses and 127.0.0.1);
 *   same-bridge   a container on the target's bridge;
 *   other-bridge  a container on another bridge.
 */
export const SOURCE_CLASSES = ['internet', 'lan', 'host', 'same-bridge', 'other-bridge'] as const;
export type SourceClass = (typeof SOURCE_CLASSES)[number];

export const IP_FAMILIES = [4, 6] as const;
export type IpFamilyNumber = (typeof IP_FAMILIES)[number];

/** reachable: the packet reaches the target; not-reachable: dropped/rejected; indeterminate: the simulator cannot tell (named). */
export const EXPOSURE_STATUSES = ['reachable', 'not-reachable', 'indeterminate'] as const;
export type ExposureStatus = (typeof EXPOSURE_STATUSES)[number];

export interface ExposureTarget {
  /** published: a host address:port Docker publishes; container: a container's own address:port. */
  readonly kind: 'published' | 'container';
  readonly family: IpFamilyNumber;
  readonly proto: string;
  readonly addr: string;
  readonly port: number;
  /** The container behind it: its name (when known), address and port. */
  readonly container: string | null;
  readonly containerIp: string;
  readonly containerPort: number;
  /** The container's bridge. */
  readonly bridge: string | null;
  /** How it was found: the Docker API/snapshot, or the ruleset's DNAT rules. */
  readonly source: 'docker' | 'dnat-rule';
}

/** The rule that decided (or the chain policy), as the simulator saw it. */
import type { DecidingRule } from '../explain/input-bypass.js';
export type { DecidingRule };

export interface ExposureRow {
  /** "published 10.0.10.26:8080/tcp <- lan (v4)". */
  readonly id: string;
  readonly target: ExposureTarget;
  readonly source: SourceClass;
  readonly family: IpFamilyNumber;
  /** The packet the row is about: the source address and interface used. */
  readonly packet: {
    readonly src: string;
    readonly dst: string;
    readonly sport: number;
    readonly dport: number;
    readonly iif: string | null;
    readonly local: boolean;
  };
  readonly status: ExposureStatus;
  /** Reached through docker-proxy (delivered to the host, not DNATed) rather than the kernel's DNAT. */
  readonly via: 'dnat' | 'docker-proxy' | 'direct' | null;
  readonly deciding: DecidingRule | null;
  readonly nat: Explanation['nat'];
  /** In plain words: why, including the firewall the user may expect that was never consulted. */
  readonly why: readonly string[];
  /** What would change the answer: a Docker option, a DOCKER-USER rule, an address to bind... */
  readonly change: readonly string[];
  /** What the simulator could not evaluate (status indeterminate). */
  readonly indeterminate: readonly string[];
  /** --active: what a real probe from such a source did, and whether it agrees. */
  readonly active: ActiveResult | null;
  /** --policy: whether this row is allowed; null without a policy. */
  readonly policy: { readonly allowed: boolean; readonly rule: string | null } | null;
}

export interface ActiveResult {
  /** answered (handshake/answer), refused (RST / ICMP unreachable), dropped (no answer). */
  readonly fate: 'answered' | 'refused' | 'dropped';
  /** Where it was sent from (namespace, address). */
  readonly from: string;
  readonly agrees: boolean;
  /** The kernel's deciding step (nft monitor trace), when traced. */
  readonly kernelDeciding: string | null;
  readonly note: string | null;
}

export interface ExposureReport {
  readonly v: typeof EXPOSURE_REPORT_VERSION;
  readonly check: 'exposure';
  readonly mode: 'live' | 'offline';
  readonly startedAt: string;
  readonly durationMs: number;
  readonly host: {
    readonly netns: string | null;
    readonly uplink: string | null;
    readonly addresses: readonly string[];
    readonly bridges: readonly { readonly name: string; readonly subnets: readonly string[] }[];
    readonly backends: readonly string[];
    readonly userlandProxy: boolean | null;
  };
  readonly targets: readonly ExposureTarget[];
  readonly rows: readonly ExposureRow[];
  readonly summary: {
    readonly rows: number;
    readonly reachable: number;
    readonly notReachable: number;
    readonly indeterminate: number;
    /** --active: rows probed, and how many agreed with the simulator. */
    readonly compared: number;
    readonly agreed: number;
    /** --policy: rows that are reachable and not allowed. */
    readonly violations: number;
  };
  /** false when a policy was given and a row violates it, or when --active found a disagreement. */
  readonly ok: boolean;
  readonly notices: readonly string[];
}
