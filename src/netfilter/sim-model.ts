/**
 * What the simulator is asked (SimInput: one packet, its conntrack state and binding) and what it
 * answers (SimResult: every rule step, the NAT set up or applied, the packet as it leaves, what could
 * not be evaluated), with the formatting of an endpoint as steps and notes show it.
 */
import type { Hook, StepVerdict, Verdict } from '../model/explanation.js';
import type { ChoicePoint } from './branches.js';
import type { CChain, CRule } from './compile.js';
import type { PortChoice } from './nat-port.js';
import type { CtState, SimPacket } from './packet.js';

export interface SimStep {
  readonly hook: Hook;
  readonly chain: CChain;
  /** null for a policy step or the implicit return at the end of a regular chain. */
  readonly rule: CRule | null;
  readonly verdict: StepVerdict;
  /** For jump/goto/vmap: the chain entered. */
  readonly target?: string;
  /** For NAT steps: what it did, e.g. "10.0.10.26:8000 → 172.17.0.2:80". */
  readonly nat?: string;
  /** A match the kernel decides from state not seen here (random choice, rate, recent list): what it means for this step. */
  readonly undecided?: string;
  /** True when the step may be absent from the kernel's path (a rule without a verdict whose match is undecided). */
  readonly optional?: boolean;
}

export interface SimIndeterminate {
  readonly chain: string;
  readonly rule: string;
  readonly reason: string;
}

export interface Endpoint {
  addr: string;
  port: number | null;
  /** Set when the kernel chooses the port (src/netfilter/nat-port.ts). */
  portChoice?: PortChoice;
}

export interface SimResult {
  readonly verdict: Verdict;
  readonly steps: SimStep[];
  readonly dnat: { from: Endpoint; to: Endpoint } | null;
  readonly snat: { from: Endpoint; to: Endpoint } | null;
  /** Load-balanced DNAT: every endpoint the kernel may choose (src/netfilter/branches.ts). */
  readonly dnatOneOf?: readonly string[];
  readonly packetOut: SimPacket | null;
  readonly delivery: 'local' | 'forward' | 'output' | null;
  /** The interface the packet came in on (hooks may see none, e.g. postrouting of bridged packets). */
  readonly inputIif: string | null;
  readonly indeterminate: SimIndeterminate[];
  readonly notes: string[];
  /** NAT applied from the conntrack entry (established packets), with the hook and its place on the path. */
  readonly ctNat: SimCtNat[];
  /** Random/hashed choices met on the path (src/netfilter/branches.ts explores every branch). */
  readonly choicePoints?: readonly ChoicePoint[];
}

export interface SimCtNat {
  readonly hook: Hook;
  readonly manip: 'dst' | 'src';
  readonly direction: 'original' | 'reply';
  readonly from: Endpoint;
  readonly to: Endpoint;
  /** Steps recorded before the rewrite. */
  readonly afterSteps: number;
}

/** An existing conntrack entry for explaining later packets (tuples as conntrack prints them). */
export interface CtBinding {
  readonly orig: { readonly src: string; readonly dst: string; readonly sport: number; readonly dport: number };
  readonly reply: { readonly src: string; readonly dst: string; readonly sport: number; readonly dport: number };
  readonly status?: readonly string[];
}

export interface SimInput {
  readonly v: 4 | 6;
  readonly l4: number;
  readonly src: string | null;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly icmpType?: number;
  readonly icmpCode?: number;
  /** Input interface; absent for locally generated packets. */
  readonly iif?: string;
  readonly local?: boolean;
  readonly mark?: number;
  readonly ctState?: CtState;
  readonly direction?: 'original' | 'reply';
  /** The connection's conntrack entry, for established/related packets. */
  readonly conntrack?: CtBinding;
  /** For a first packet: its connection's conntrack entry (live), which says the ports and endpoint the kernel chose. */
  readonly natHint?: CtBinding;
}

/** Whether the protocol has ports NAT rewrites (TCP, UDP, SCTP, UDP-Lite, DCCP). */
export function hasPorts(l4: number): boolean {
  return l4 === 6 || l4 === 17 || l4 === 132 || l4 === 136 || l4 === 33;
}

export function fmt(e: Endpoint): string {
  if (e.port === null) return e.addr;
  // a port the kernel picks is not known here: `*` (the range and the reason come with it)
  const port = e.portChoice?.how === 'kernel' ? '*' : String(e.port);
  return e.addr.includes(':') ? `[${e.addr}]:${port}` : `${e.addr}:${port}`;
}
