/**
 * The simulator's answer for one packet: the path through netfilter, NAT, verdict.
 * This is also the `--json` output of `journey explain` (documented in docs/explain.md).
 */
export type Hook = 'ingress' | 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
export type NfFamily = 'ip' | 'ip6' | 'inet' | 'bridge' | 'arp' | 'netdev';
export type Verdict = 'accept' | 'drop' | 'reject' | 'indeterminate';
export type StepVerdict =
  | 'accept'
  | 'drop'
  | 'reject'
  | 'jump'
  | 'goto'
  | 'return'
  | 'continue'
  | 'policy-accept'
  | 'policy-drop'
  | 'dnat'
  | 'snat'
  | 'masquerade'
  | 'redirect'
  | 'indeterminate';

export interface ExplainStep {
  readonly hook: Hook;
  readonly family: NfFamily;
  readonly table: string;
  readonly chain: string;
  /** Raw rule text (iptables-save line or nft rule text), or null when the chain policy decided. */
  readonly rule: string | null;
  /** 1-based rule number within the chain (iptables) — or null for policy steps. */
  readonly ruleNumber: number | null;
  /** nft handle when the rule came from nftables. */
  readonly handle: number | null;
  readonly verdict: StepVerdict;
  /** The chain entered, for jump/goto verdicts (also through a verdict map). */
  readonly target?: string;
  /** Plain-words meaning (Docker's meaning of the chain/rule), for people. */
  readonly meaning?: string;
  /** For a step in a base chain: the chain's hook priority (e.g. -100 for Docker's nat PREROUTING). */
  readonly priority?: number;
  /**
   * `--rule-counters`, on flow.end: how much the kernel's counters of this rule grew during the
   * flow's life (every packet through the rule counts, not only this flow's).
   */
  readonly counters?: RuleCounterDelta;
  /**
   * The rule's match is decided by the kernel from state not seen here (a random choice, a rate
   * limit, a recent list): what that means for this step, e.g. "logged if the limit allows (…)".
   */
  readonly undecided?: string;
  /** The step may be absent from the kernel's path: a rule without a verdict whose match is undecided. */
  readonly optional?: boolean;
}

/** A rule's packet/byte counter increments over a window. */
export interface RuleCounterDelta {
  readonly packets: number;
  readonly bytes: number;
}

/**
 * NAT that conntrack applies to a packet of an existing connection (no nat chain is consulted):
 * for a reply, de-SNAT before routing (prerouting/output: the destination goes back to the
 * original source) and de-DNAT at postrouting/input (the source goes back to the address the
 * client used); for later original-direction packets, the same translation as the first packet.
 */
export interface ConntrackNat {
  /** Hook at which the NAT core rewrites the packet. */
  readonly hook: Hook;
  /** 'dst' (destination rewritten) or 'src' (source rewritten). */
  readonly manip: 'dst' | 'src';
  /** de-snat / de-dnat for a reply, dnat / snat for a later original-direction packet. */
  readonly kind: 'de-snat' | 'de-dnat' | 'dnat' | 'snat';
  readonly from: string;
  readonly to: string;
  /** Number of steps of `steps` that came before this rewrite (where it falls on the path). */
  readonly afterSteps: number;
}

export interface PacketSummary {
  readonly proto: string;
  readonly src: string;
  readonly sport?: number;
  readonly dst: string;
  readonly dport?: number;
  readonly iif?: string;
  readonly oif?: string;
  /** Where the packet goes after netfilter: delivered to a local socket, forwarded, or sent by the host. */
  readonly delivery?: 'local' | 'forward' | 'output';
}

/**
 * How the kernel chooses a NAT port (nf_nat): `kernel`: it picks one, not known here (`to` shows the
 * port as `*`); `kept-if-unique`: the original port unless another connection holds the tuple;
 * `conntrack`: the kernel's choice, read from the connection's conntrack entry.
 */
export interface NatPortChoice {
  readonly how: 'kernel' | 'kept-if-unique' | 'conntrack';
  /** The range the kernel picks from, e.g. "1024-65535". */
  readonly range: string;
  readonly reason: string;
}

/** One NAT rewrite of the packet: "from → to". */
export interface NatRewrite {
  readonly from: string;
  readonly to: string;
  /** Present when the kernel chooses the port. */
  readonly portChoice?: NatPortChoice;
  /** Load-balanced DNAT: every endpoint the kernel may choose (`to` is the one shown on the path). */
  readonly oneOf?: readonly string[];
}

export interface Explanation {
  readonly verdict: Verdict;
  readonly steps: readonly ExplainStep[];
  readonly nat: {
    readonly dnat: NatRewrite | null;
    readonly snat: NatRewrite | null;
  };
  /** The packet as it leaves (after NAT and routing), or null when dropped. */
  readonly packet_out: PacketSummary | null;
  /** Matches/statements the simulator could not evaluate, each naming rule and reason. */
  readonly indeterminate: readonly { readonly chain: string; readonly rule: string; readonly reason: string }[];
  /** Routing decisions and other facts of the journey, in plain words (optional, additive). */
  readonly notes?: readonly string[];
  /** The packet's direction in its connection (present for established/reply packets). */
  readonly direction?: 'original' | 'reply';
  /** NAT applied by conntrack from the connection's entry, in path order (no nat chain consulted). */
  readonly conntrack_nat?: readonly ConntrackNat[];
  /**
   * The reply direction of the same connection, explained from its conntrack entry (watch/serve
   * flows): the answer as it comes back. Indeterminate (with the reason) when there is no entry.
   */
  readonly reply?: Explanation;
  /**
   * `--rule-counters`, on flow.end: the window over which each step's `counters` grew, from the
   * last reading of the kernel's counters before the flow's first packet to the reading at its end
   * (Unix ms).
   */
  readonly counterWindow?: { readonly fromMs: number; readonly toMs: number };
  /**
   * `--verify`: what the kernel's own trace of the packet said about this explanation. When the
   * kernel contradicted the simulator (or resolved a step it could not evaluate), `steps`,
   * `verdict` and `indeterminate` are the kernel's path and `verification.simulated` keeps the
   * simulator's answer.
   */
  readonly verification?: Verification;
}

export const VERIFICATION_RESULTS = ['verified', 'contradicted', 'unverified'] as const;
export type VerificationResult = (typeof VERIFICATION_RESULTS)[number];

/** One step in the comparison's words: `family table chain #rule verdict` (or `… - policy accept`). */
export interface VerificationDifference {
  /** Index of the first differing step (after normalisation, see docs/explain.md). */
  readonly index: number;
  /** The kernel's step there, or null when the kernel's path ended before. */
  readonly kernel: string | null;
  /** The simulator's step there, or null when the simulator's path ended before. */
  readonly simulator: string | null;
}

export interface Verification {
  readonly result: VerificationResult;
  /** unverified: why (legacy iptables, no nft, the packet never came to the trace, rate limit, …). */
  readonly reason?: string;
  /** contradicted: the first step where kernel and simulator differ. */
  readonly first_difference?: VerificationDifference;
  /** Steps the kernel traced (after normalisation). */
  readonly kernel_steps?: number;
  /** Steps the simulator could not evaluate, settled by the kernel's trace (verified through the trace). */
  readonly resolved?: readonly { readonly chain: string; readonly rule: string; readonly kernel: string }[];
  /** The simulator's own explanation, when the kernel's path replaced it (contradicted or resolved). */
  readonly simulated?: Explanation;
}
