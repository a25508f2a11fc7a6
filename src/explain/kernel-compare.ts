/**
 * Compares an Explanation with the kernel's own trace (`nft monitor trace`, parsed by
 * src/netfilter/kernel-trace.ts) and with the conntrack entry of the connection.
 *
 * Normalisation (both sides, documented in docs/explain.md):
 *  - NAT verdicts (dnat, snat, masquerade, redirect) are `accept` in the kernel (the NAT statement
 *    ends the chain with NF_ACCEPT); `reject` is traced as `drop` (it answers, then drops).
 *  - The implicit return at the end of a regular chain is a step of the explanation (rule null,
 *    verdict return) but this kernel prints no trace line for it; kernel `return` lines without a rule
 *    are dropped the same way.
 *  - iptables-nft creates built-in chains lazily: an empty built-in chain may not exist in the
 *    kernel (iptables-save still prints it), so its policy step cannot be traced. Such steps are left
 *    out of the comparison (the simulator still shows them: that is what iptables-save says). Which
 *    chains exist is read from the live `nft -j list ruleset` (see ghostChains).
 *  - Steps in the tracer's own table (jl_trace) are not part of the ruleset and are left out.
 */
import type { Explanation, ExplainStep, NatRewrite } from '../model/explanation.js';
import type { ConntrackEntry } from '../model/conntrack.js';
import type { Ruleset } from '../ruleset/model.js';
import type { TracePacketHeader } from '../netfilter/kernel-trace.js';
import { canonicalIp } from '../ruleset/ip.js';

/** The subset of kernel-trace's TraceStep the comparison needs. */
export interface KernelStepLike {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly kind: string;
  readonly rule: string | null;
  readonly ruleNumber: number | null;
  readonly verdict: string;
  readonly verdictKind: string;
  readonly target?: string;
}

const NAT_VERDICTS = new Set(['dnat', 'snat', 'masquerade', 'redirect']);

function simKey(s: ExplainStep, targets: readonly string[], i: number): string {
  let v: string = s.verdict;
  if (NAT_VERDICTS.has(v)) v = 'accept';
  if (v === 'reject') v = 'drop';
  if (v === 'policy-accept') v = 'policy accept';
  if (v === 'policy-drop') v = 'policy drop';
  if (v === 'jump' || v === 'goto') v = `${v} ${targets[i] ?? '?'}`;
  return `${s.family} ${s.table} ${s.chain} ${s.rule === null ? '-' : `#${s.ruleNumber ?? '?'}`} ${v}`;
}

function kernelKey(k: KernelStepLike): string {
  let v = k.verdictKind;
  if (k.kind === 'policy') v = k.verdict.startsWith('policy') ? k.verdict : `policy ${k.verdict}`;
  if (v === 'jump' || v === 'goto') v = `${v} ${k.target ?? k.verdict.split(' ')[1] ?? '?'}`;
  return `${k.family} ${k.table} ${k.chain} ${k.kind === 'policy' ? '-' : `#${k.ruleNumber ?? '?'}`} ${v}`;
}

/**
 * Chains that iptables-save shows but the kernel does not have. When the live nft listing was read
 * (Table.kernelChains), exactly the built-in chains missing there; otherwise the empty built-in
 * chains with an ACCEPT policy (what iptables-nft leaves uncreated when rules are added one by one;
 * iptables-restore creates the ones its input declares).
 */
export function ghostChains(ruleset: Ruleset): Set<string> {
  const out = new Set<string>();
  for (const t of ruleset.tables) {
    if (t.origin !== 'iptables') continue;
    for (const c of t.chains.values()) {
      if (c.base === null) continue;
      const absent = t.kernelChains !== undefined ? !t.kernelChains.has(c.name) : c.rules.length === 0 && c.base.policy === 'accept';
      if (absent) out.add(`${t.family} ${t.name} ${c.name}`);
    }
  }
  return out;
}

export interface StepComparison {
  readonly equal: boolean;
  readonly simulated: string[];
  readonly kernel: string[];
  /** First differing index, -1 when equal. */
  readonly firstDifference: number;
}

/** Compares steps (chain, rule number, verdict) after the normalisation above. */
export function compareSteps(ex: Explanation, kernel: readonly KernelStepLike[], ruleset: Ruleset, traceTable = 'jl_trace'): StepComparison {
  const ghosts = ghostChains(ruleset);
  const targets = ex.steps.map((s) => {
    if (s.verdict !== 'jump' && s.verdict !== 'goto') return '';
    if (s.target !== undefined) return s.target;
    const m = /(?:-j|-g|jump|goto)\s+(\S+)/.exec(s.rule ?? '');
    return m?.[1] ?? '';
  });
  const sim0: { key: string; optional: boolean }[] = [];
  ex.steps.forEach((s, i) => {
    if (s.rule === null && s.verdict === 'return') return;
    if (s.rule === null && ghosts.has(`${s.family} ${s.table} ${s.chain}`)) return;
    sim0.push({ key: simKey(s, targets, i), optional: s.optional === true });
  });
  const ker: string[] = [];
  for (const k of kernel) {
    if (k.table === traceTable) continue;
    if (k.kind === 'return' && k.rule === null) continue;
    ker.push(kernelKey(k));
  }
  // a rule without a verdict whose match is undecided (a log under -m limit) is in the kernel's path
  // only when it matched: such a step is compared where the kernel has it, left out where it has not
  const sim: string[] = [];
  for (const s of sim0) if (!s.optional || ker[sim.length] === s.key) sim.push(s.key);
  let first = -1;
  for (let i = 0; i < Math.max(sim.length, ker.length); i++) {
    if (sim[i] !== ker[i]) {
      first = i;
      break;
    }
  }
  return { equal: first === -1, simulated: sim, kernel: ker, firstDifference: first };
}

const ep = (addr: string, port: number | null): string => {
  const a = canonicalIp(addr);
  if (port === null) return a;
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
};

/** The NAT a conntrack entry shows, in the Explanation's `nat` shape. */
export function natFromConntrack(e: ConntrackEntry): Explanation['nat'] {
  const ports = e.orig.proto === 'tcp' || e.orig.proto === 'udp' || e.orig.proto === 'sctp';
  const p = (n: number): number | null => (ports ? n : null);
  const dnatChanged = canonicalIp(e.orig.dst) !== canonicalIp(e.reply.src) || (ports && e.orig.dport !== e.reply.sport);
  const snatChanged = canonicalIp(e.orig.src) !== canonicalIp(e.reply.dst) || (ports && e.orig.sport !== e.reply.dport);
  return {
    dnat: dnatChanged ? { from: ep(e.orig.dst, p(e.orig.dport)), to: ep(e.reply.src, p(e.reply.sport)) } : null,
    snat: snatChanged ? { from: ep(e.orig.src, p(e.orig.sport)), to: ep(e.reply.dst, p(e.reply.dport)) } : null,
  };
}

/**
 * Simulated NAT (a) against conntrack's (b). Equal when the addresses and ports agree — or where the
 * explanation marks the port as the kernel's choice (`portChoice`), the addresses agree and the port
 * lies in the marked range; `chosenByKernel` then says which rewrites were settled that way. A
 * load-balanced DNAT agrees when conntrack's endpoint is one of those it lists.
 */
export function natComparison(a: Explanation['nat'], b: Explanation['nat']): { equal: boolean; chosenByKernel: string[] } {
  const chosen: string[] = [];
  const split = (e: string): { addr: string; port: string | null } => {
    const m = /^\[(.+)\]:(.+)$/.exec(e) ?? /^([^:]+):(.+)$/.exec(e);
    return m ? { addr: m[1] as string, port: m[2] as string } : { addr: e, port: null };
  };
  const same = (what: string, x: NatRewrite | null, y: NatRewrite | null): boolean => {
    if (x === null || y === null) {
      // a masquerade to the same address with a port the kernel may keep: conntrack shows no NAT
      if (x !== null && y === null && x.portChoice !== undefined && x.portChoice.how !== 'conntrack' && split(x.to).addr === split(x.from).addr) {
        chosen.push(`${what}: ${x.portChoice.reason}; the kernel kept ${x.from}`);
        return true;
      }
      return x === y;
    }
    if (x.from !== y.from) return false;
    if (x.to === y.to) return true;
    if (x.oneOf?.includes(y.to)) {
      chosen.push(`${what}: endpoint ${y.to} chosen at random by the kernel (one of ${x.oneOf.length}: ${x.oneOf.join(', ')})`);
      return true;
    }
    const pc = x.portChoice;
    if (pc === undefined || pc.how === 'conntrack') return false;
    const xs = split(x.to);
    const ys = split(y.to);
    if (xs.addr !== ys.addr || ys.port === null) return false;
    const [lo, hi] = pc.range.split('-').map(Number) as [number, number];
    const port = Number(ys.port);
    if (!(port >= lo && port <= hi)) return false;
    chosen.push(`${what}: port ${port} chosen by the kernel (${pc.reason})`);
    return true;
  };
  const equal = same('DNAT', a.dnat, b.dnat) && same('SNAT', a.snat, b.snat);
  return { equal, chosenByKernel: chosen };
}

export function natEqual(a: Explanation['nat'], b: Explanation['nat']): boolean {
  return natComparison(a, b).equal;
}

/** What a recorded or live probe gives the comparison: the first packet as the kernel saw it. */
export interface KernelCase {
  readonly name: string;
  readonly tuple: import('../model/tuple.js').Tuple;
  /** Input interface, or null for a packet the host sent. */
  readonly iif: string | null;
  readonly steps: KernelStepLike[];
  /** NAT from the conntrack entry of the connection, or null when there was none (dropped). */
  readonly conntrackNat: Explanation['nat'] | null;
}

type HeaderLike = Pick<TracePacketHeader, 'iif' | 'oif' | 'saddr' | 'daddr' | 'proto' | 'sport' | 'dport' | 'icmpType' | 'icmpId' | 'tcpFlags'>;

export type TracedPacket = {
  readonly first: HeaderLike | null;
  readonly steps: readonly KernelStepLike[];
  readonly headers?: readonly { readonly header: HeaderLike & { readonly oif?: string } }[];
};

/**
 * A packet the host sends to itself leaves through lo and comes back in (prerouting, input): the
 * trace starts a new packet there (the tracer's chain sees it again). Joins that second half.
 */
export function withLoopback(packets: readonly TracedPacket[], pk: TracedPacket): readonly KernelStepLike[] {
  const h = pk.first;
  const lastHeader = pk.headers?.at(-1)?.header ?? h;
  if (!h || h.iif !== undefined || lastHeader?.oif !== 'lo') return pk.steps;
  const i = packets.indexOf(pk);
  const back = packets
    .slice(i + 1)
    .find(
      (p) =>
        p.first?.iif === 'lo' &&
        p.first.saddr === (lastHeader.saddr ?? h.saddr) &&
        p.first.sport === (lastHeader.sport ?? h.sport) &&
        p.first.dport === (lastHeader.dport ?? h.dport),
    );
  return back ? [...pk.steps, ...back.steps] : pk.steps;
}

/**
 * Finds a probe's first packet in a kernel trace (by destination, port and — unless the host picked
 * it — source) and makes a comparison case of it.
 */
export function kernelCase(
  name: string,
  packets: readonly TracedPacket[],
  probe: { readonly proto: string; readonly from: { readonly addr: string }; readonly to: { readonly addr: string; readonly port?: number } },
  fromHost: boolean,
  conntrack: readonly ConntrackEntry[],
): KernelCase | null {
  const pk = packets.find((p) => {
    const h = p.first;
    if (!h || h.daddr !== probe.to.addr) return false;
    if (probe.to.port !== undefined && h.dport !== probe.to.port) return false;
    if (probe.proto === 'icmp' && h.icmpType !== undefined && h.icmpType !== 'echo-request') return false;
    return fromHost || h.saddr === probe.from.addr;
  });
  if (!pk?.first) return null;
  const h = pk.first;
  const steps0 = withLoopback(packets, pk);
  const v6 = (h.daddr ?? probe.to.addr).includes(':');
  const proto = (v6 && (h.proto ?? probe.proto) === 'icmp' ? 'icmpv6' : (h.proto ?? probe.proto)) as import('../model/tuple.js').L4Proto;
  const icmp = proto === 'icmp' || proto === 'icmpv6';
  const tuple = {
    family: (v6 ? 6 : 4) as 4 | 6,
    proto,
    protoNum: proto === 'tcp' ? 6 : proto === 'udp' ? 17 : proto === 'icmpv6' ? 58 : 1,
    src: h.saddr ?? probe.from.addr,
    dst: h.daddr ?? probe.to.addr,
    sport: icmp ? (h.icmpId ?? 0) : (h.sport ?? 0),
    dport: icmp ? (h.icmpId ?? 0) : (h.dport ?? 0),
    ...(icmp ? { icmpType: v6 ? 128 : 8, icmpCode: 0 } : {}),
  };
  const ct = conntrack.find(
    (e) =>
      e.orig.src === tuple.src &&
      e.orig.dst === tuple.dst &&
      e.orig.proto === proto &&
      (icmp || (e.orig.sport === tuple.sport && e.orig.dport === tuple.dport)),
  );
  const steps = steps0.map((s) => ({
    family: s.family,
    table: s.table,
    chain: s.chain,
    kind: s.kind,
    rule: s.rule,
    ruleNumber: s.ruleNumber,
    verdict: s.verdict,
    verdictKind: s.verdictKind,
    ...(s.target !== undefined ? { target: s.target } : {}),
  }));
  return { name, tuple, iif: h.iif ?? null, steps, conntrackNat: ct ? natFromConntrack(ct) : null };
}

/** A later packet of a probe's connection, as the kernel traced it, with what explaining it needs. */
export interface KernelFollowUp extends KernelCase {
  readonly direction: 'original' | 'reply';
  readonly conntrack: ConntrackEntry;
}

/**
 * One packet's steps when the kernel reused its trace id for the next packet (the id is the skb's
 * address): after an accept, a chain this packet already entered cannot come again, so the steps
 * from there on are another packet's.
 */
export function firstTraversal<T extends { family: string; table: string; chain: string; ruleNumber: number | null; verdictKind: string }>(
  steps: readonly T[],
): readonly T[] {
  const key = (s: T): string => `${s.family} ${s.table} ${s.chain} ${s.ruleNumber ?? '-'}`;
  const seen = new Set<string>();
  for (const [i, s] of steps.entries()) {
    if (i > 0 && steps[i - 1]!.verdictKind === 'accept' && seen.has(key(s))) return steps.slice(0, i);
    seen.add(key(s));
  }
  return steps;
}

/** The conntrack entry a traced first packet created: same addresses, protocol and (except ICMP) ports. */
export function entryOfCase(entries: readonly ConntrackEntry[], first: KernelCase): ConntrackEntry | undefined {
  const t = first.tuple;
  const icmp = t.proto === 'icmp' || t.proto === 'icmpv6';
  return entries.find(
    (e) =>
      e.orig.src === t.src && e.orig.dst === t.dst && e.orig.proto === t.proto && (icmp || (e.orig.sport === t.sport && e.orig.dport === t.dport)),
  );
}

/**
 * The later packets of a connection in a kernel trace: the first reply (SYN-ACK, UDP/ICMP answer) and
 * the second packet in the original direction; both are `established` for conntrack.
 */
export function kernelFollowUps(packets: readonly TracedPacket[], entry: ConntrackEntry, first: KernelCase): KernelFollowUp[] {
  const icmp = entry.orig.proto === 'icmp' || entry.orig.proto === 'icmpv6';
  const same = (h: HeaderLike, t: { src: string; dst: string; sport: number; dport: number }): boolean =>
    h.saddr === t.src && h.daddr === t.dst && (icmp || (h.sport === t.sport && h.dport === t.dport));
  const out: KernelFollowUp[] = [];
  const firstIdx = packets.findIndex((p) => p.first !== null && same(p.first, entry.orig) && p.first.iif === (first.iif ?? undefined));
  const later = packets.slice(firstIdx + 1);
  const reply = later.find((p) => p.first !== null && same(p.first, entry.reply) && (!icmp || p.first.icmpType === 'echo-reply'));
  // a retransmitted SYN is not a later packet: conntrack ignores it (it is not `established` for the rules)
  const again = later.find(
    (p) => p.first !== null && same(p.first, entry.orig) && p.first.iif === (first.iif ?? undefined) && p.first.tcpFlags !== 'syn',
  );
  const mk = (p: (typeof packets)[number], direction: 'original' | 'reply'): KernelFollowUp => {
    const h = p.first as HeaderLike;
    const tuple = {
      ...first.tuple,
      src: h.saddr ?? '',
      dst: h.daddr ?? '',
      sport: icmp ? first.tuple.sport : (h.sport ?? 0),
      dport: icmp ? first.tuple.dport : (h.dport ?? 0),
      ...(icmp ? { icmpType: first.tuple.family === 6 ? (direction === 'reply' ? 129 : 128) : direction === 'reply' ? 0 : 8, icmpCode: 0 } : {}),
    };
    return {
      name: `${first.name} (${direction === 'reply' ? 'reply' : 'second packet'})`,
      tuple,
      iif: h.iif ?? null,
      steps: firstTraversal(withLoopback(packets, p)).map((s) => ({
        family: s.family,
        table: s.table,
        chain: s.chain,
        kind: s.kind,
        rule: s.rule,
        ruleNumber: s.ruleNumber,
        verdict: s.verdict,
        verdictKind: s.verdictKind,
        ...(s.target !== undefined ? { target: s.target } : {}),
      })),
      conntrackNat: null,
      direction,
      conntrack: entry,
    };
  };
  if (reply) out.push(mk(reply, 'reply'));
  if (again) out.push(mk(again, 'original'));
  return out;
}
