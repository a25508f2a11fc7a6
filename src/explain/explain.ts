/**
 * journey's explainer API — what other stages call (watch/serve pipelines, verify hairpin):
 *
 *   import { loadLiveRuleset, loadHostContext, compileRuleset, explainPacket, ExplanationCache } from '../explain/explain.js';
 *
 *   const ruleset = await loadLiveRuleset({ netns: 'jl-a-host' });   // iptables-save + ip6tables-save + nft -j
 *   const host = await loadHostContext({ netns: 'jl-a-host' });       // ip -j addr, ip -j route show table all
 *   const compiled = compileRuleset(ruleset, host);                   // once per ruleset change (closures)
 *   const ex: Explanation = explainPacket(compiled, { tuple, iif: 'eth0' });          // first packet
 *   explainPacket(compiled, { tuple, iif: 'eth0', ctState: 'established', conntrack: entry }); // later ones
 *   explainPacket(compiled, { tuple, local: true });                  // sent by the host itself
 *
 *   const cache = new ExplanationCache(compiled, 10_000);             // per-flow cache (LRU)
 *   cache.explain({ tuple, iif })                                     // same key → same object
 *
 * Offline inputs: loadRulesetFiles({ iptablesSave, nftJson, nft, ipset }) and loadHostContextFiles({ addrs, routes }).
 * Watching for changes: const d = await readRulesetDumps({ netns }); if (rulesetDigest(d) !== last)
 *   compiled = compileRuleset(rulesetFromDumps(d, 'live'), host)  (and start a new ExplanationCache).
 * `explainPacket` never throws for rules it cannot evaluate (verdict 'indeterminate', named in
 * `indeterminate[]`); it throws JourneyError E_USAGE only for an unusable packet (bad address).
 * The Explanation shape is src/model/explanation.ts (= `journey explain --json`, docs/explain.md).
 */
import type { ConntrackEntry } from '../model/conntrack.js';
import type { ConntrackNat, Explanation, ExplainStep, NatRewrite, PacketSummary } from '../model/explanation.js';
import { JourneyError } from '../model/errors.js';
import type { Tuple } from '../model/tuple.js';
import { formatIp, parseIp } from '../ruleset/ip.js';
import { ruleOwner } from '../ruleset/owners.js';
import type { CompiledRuleset } from '../netfilter/compile.js';
import type { CtState } from '../netfilter/packet.js';
import { type CtBinding, type Endpoint, type SimResult, fmt, simulate } from '../netfilter/simulate.js';
import type { SimStep } from '../netfilter/sim-model.js';
import { stepMeaning } from './meaning.js';

export { compileRuleset, type CompiledRuleset } from '../netfilter/compile.js';
export {
  loadLiveRuleset,
  loadHostContext,
  loadHostContextFiles,
  loadRulesetFiles,
  readRulesetDumps,
  rulesetFromDumps,
  rulesetDigest,
} from '../ruleset/load.js';
export type { Ruleset } from '../ruleset/model.js';
export type { HostContext } from '../ruleset/host-context.js';

export interface PacketSpec {
  /** The packet as it arrives (for `local`, as the host's socket sends it; src may be '' to let routing choose). */
  readonly tuple: Tuple;
  /** Interface the packet comes in on; omit with `local`. */
  readonly iif?: string;
  /** Sent by the host itself (output path). */
  readonly local?: boolean;
  /** Conntrack state of the packet: 'new' (default: the first packet), 'established', 'related', ... */
  readonly ctState?: CtState;
  /** Direction of the packet in its connection (default 'original'). */
  readonly direction?: 'original' | 'reply';
  /** The connection's conntrack entry (for established/reply packets: the NAT binding to apply). */
  readonly conntrack?: ConntrackEntry | CtBinding;
  /**
   * For a first packet, live: its connection's conntrack entry. It says what the kernel chose where
   * the rules leave a choice (the NAT port, the endpoint of a load-balanced DNAT).
   */
  readonly natOf?: ConntrackEntry | CtBinding;
  readonly mark?: number;
}

function bindingOf(c: ConntrackEntry | CtBinding): CtBinding {
  const o = c.orig;
  const r = c.reply;
  return {
    orig: { src: o.src, dst: o.dst, sport: o.sport, dport: o.dport },
    reply: { src: r.src, dst: r.dst, sport: r.sport, dport: r.dport },
    ...(c.status ? { status: [...c.status] } : {}),
  };
}

/** Explains one packet against a compiled ruleset. */
export function explainPacket(compiled: CompiledRuleset, spec: PacketSpec): Explanation {
  const t = spec.tuple;
  if (parseIp(t.dst) === null) throw new JourneyError('E_USAGE', `not an IP address: ${t.dst}`);
  if (t.src !== '' && parseIp(t.src) === null) throw new JourneyError('E_USAGE', `not an IP address: ${t.src}`);
  if (!spec.local && (t.src === '' || spec.iif === undefined)) {
    throw new JourneyError('E_USAGE', 'a packet that is not local needs its source address and input interface');
  }
  let res: SimResult;
  try {
    res = simulate(compiled, {
      v: t.family,
      l4: t.protoNum,
      src: t.src === '' ? null : t.src,
      dst: t.dst,
      sport: t.sport,
      dport: t.dport,
      ...(t.icmpType !== undefined
        ? { icmpType: t.icmpType }
        : t.proto === 'icmp' || t.proto === 'icmpv6'
          ? { icmpType: t.family === 4 ? 8 : 128, icmpCode: 0 }
          : {}),
      ...(t.icmpCode !== undefined ? { icmpCode: t.icmpCode } : {}),
      ...(spec.iif !== undefined ? { iif: spec.iif } : {}),
      ...(spec.local ? { local: true } : {}),
      ...(spec.mark !== undefined ? { mark: spec.mark } : {}),
      ...(spec.ctState ? { ctState: spec.ctState } : {}),
      ...(spec.direction ? { direction: spec.direction } : {}),
      ...(spec.conntrack ? { conntrack: bindingOf(spec.conntrack) } : {}),
      ...(spec.natOf ? { natHint: bindingOf(spec.natOf) } : {}),
    });
  } catch (e) {
    if (e instanceof JourneyError) throw e;
    throw new JourneyError('E_USAGE', e instanceof Error ? e.message : String(e));
  }
  const ex = toExplanation(res, t, spec.direction ?? (spec.ctState !== undefined && spec.ctState !== 'new' ? 'original' : undefined));
  const proxy = res.delivery === 'local' ? proxyNote(compiled, t, ex) : null;
  return proxy ? { ...ex, notes: [...(ex.notes ?? []), proxy] } : ex;
}

/** A DNAT rule that publishes a port: what a packet to that port must be for the rule to apply. */
interface PublishedPort {
  /** The rule's layer-4 protocol number; undefined: any; null: one this check cannot read. */
  readonly protoNum: number | undefined | null;
  /** The protocol the port match reads ('th': any transport header). */
  readonly payloadProto: string;
  readonly to: string;
}

/** Docker's DNAT rules by the destination port they match, in ruleset order (made once per compiled ruleset). */
const publishedPorts = new WeakMap<CompiledRuleset, ReadonlyMap<number, readonly PublishedPort[]>>();

function publishedPortsOf(compiled: CompiledRuleset): ReadonlyMap<number, readonly PublishedPort[]> {
  const known = publishedPorts.get(compiled);
  if (known !== undefined) return known;
  const byPort = new Map<number, PublishedPort[]>();
  for (const table of compiled.ruleset.tables) {
    for (const chain of table.chains.values()) {
      for (const r of chain.rules) {
        const nat = r.exprs.find((e) => e.kind === 'nat' && e.type === 'dnat');
        if (nat === undefined || nat.kind !== 'nat' || nat.addr === undefined) continue;
        // docker-proxy answers only for ports Docker published (a kube-proxy or libvirt DNAT is not its)
        if (ruleOwner(table.family, table.name, chain.name, r.raw) !== 'docker') continue;
        const proto = r.exprs.find((e) => e.kind === 'match' && e.key.kind === 'meta' && e.key.key === 'l4proto');
        const protoNum = proto === undefined ? undefined : proto.kind === 'match' && proto.value.kind === 'num' ? proto.value.v : null;
        const to = nat.port !== undefined ? `${nat.addr}:${nat.port}` : nat.addr;
        const seen = new Set<number>();
        for (const e of r.exprs) {
          // the first match of each port value (as a search for that port would find it)
          if (e.kind !== 'match' || e.key.kind !== 'payload' || e.key.field !== 'dport' || e.value.kind !== 'num' || seen.has(e.value.v)) continue;
          seen.add(e.value.v);
          const list = byPort.get(e.value.v) ?? [];
          list.push({ protoNum, payloadProto: e.key.proto, to });
          byPort.set(e.value.v, list);
        }
      }
    }
  }
  publishedPorts.set(compiled, byPort);
  return byPort;
}

/**
 * A packet delivered to the host on a port that a Docker DNAT rule publishes, without being DNATed (it came
 * from the container's own bridge, or from the host itself): with Docker's userland proxy on, that
 * is docker-proxy's job. Says so (a note; the verdict is the ruleset's). The port is looked up in an
 * index of the ruleset's DNAT rules, not by scanning every rule for every packet (a host with 10,000
 * rules spent a third of each explanation here).
 */
function proxyNote(compiled: CompiledRuleset, t: Tuple, ex: Explanation): string | null {
  if (ex.nat.dnat !== null || !(t.proto === 'tcp' || t.proto === 'udp' || t.proto === 'sctp')) return null;
  for (const p of publishedPortsOf(compiled).get(t.dport) ?? []) {
    const protoOk = p.protoNum === undefined || p.protoNum === t.protoNum;
    if (!protoOk || (p.payloadProto !== 'th' && p.payloadProto !== t.proto)) continue;
    return `port ${t.dport}/${t.proto} is published (DNAT to ${p.to}) but this packet is not DNATed: it is delivered to the host, where docker-proxy (Docker's userland proxy) answers it and opens its own connection to ${p.to}`;
  }
  return null;
}

function hasPorts(t: Tuple): boolean {
  return t.proto === 'tcp' || t.proto === 'udp' || t.proto === 'sctp';
}

function makeStep(s: SimStep): ExplainStep {
  const meaning = stepMeaning(s);
  return {
    hook: s.hook,
    family: s.chain.table.family,
    table: s.chain.table.name,
    chain: s.chain.name,
    rule: s.rule ? s.rule.rule.raw : null,
    ruleNumber: s.rule ? s.rule.rule.position : null,
    handle: s.rule ? s.rule.rule.handle : null,
    verdict: s.verdict,
    ...(s.target !== undefined ? { target: s.target } : {}),
    ...(meaning !== undefined ? { meaning } : {}),
    ...(s.chain.chain.base ? { priority: s.chain.chain.base.priority } : {}),
    ...(s.undecided !== undefined ? { undecided: s.undecided } : {}),
    ...(s.optional ? { optional: true } : {}),
  };
}

/**
 * Steps shared by every packet that takes them, by the rule (or, for a policy or a chain's end, the
 * chain) of the compiled ruleset: hook, verdict, target and optional -> the step.
 */
const sharedSteps = new WeakMap<object, Map<string, ExplainStep>>();

/**
 * A step without NAT and without an undecided match is a function of its rule (or chain), hook,
 * verdict, target and optional alone (stepMeaning reads nothing else), so one readonly object serves
 * every packet: a live explained flow keeps its ~24 steps for its whole life, and they were most of
 * what it held (a NAT step says the packet's own addresses: made for each packet).
 */
function explainStep(s: SimStep): ExplainStep {
  if (s.nat !== undefined || s.undecided !== undefined) return makeStep(s);
  const owner: object = s.rule ?? s.chain;
  let byKey = sharedSteps.get(owner);
  if (byKey === undefined) {
    byKey = new Map();
    sharedSteps.set(owner, byKey);
  }
  const key = `${s.hook}|${s.verdict}|${s.target ?? ''}|${s.optional === true ? 1 : 0}`;
  let step = byKey.get(key);
  if (step === undefined) {
    step = makeStep(s);
    byKey.set(key, step);
  }
  return step;
}

export function toExplanation(res: SimResult, t: Tuple, direction?: 'original' | 'reply'): Explanation {
  const steps: ExplainStep[] = res.steps.map(explainStep);
  const ctNat: ConntrackNat[] = res.ctNat.map((c) => ({
    hook: c.hook,
    manip: c.manip,
    kind: c.direction === 'reply' ? (c.manip === 'dst' ? 'de-snat' : 'de-dnat') : c.manip === 'dst' ? 'dnat' : 'snat',
    from: fmt(c.from),
    to: fmt(c.to),
    afterSteps: c.afterSteps,
  }));
  const p = res.packetOut;
  let packetOut: PacketSummary | null = null;
  if (p) {
    const ports = hasPorts(t);
    packetOut = {
      proto: t.proto,
      src: formatIp(p.src),
      ...(ports ? { sport: p.sport } : {}),
      dst: formatIp(p.dst),
      ...(ports ? { dport: p.dport } : {}),
      ...(res.inputIif !== null ? { iif: res.inputIif } : {}),
      ...(p.oif !== null && res.delivery !== 'local' ? { oif: p.oif } : {}),
      ...(res.delivery !== null ? { delivery: res.delivery } : {}),
    };
  }
  return {
    verdict: res.verdict,
    steps,
    nat: {
      dnat: res.dnat ? natRewrite(res.dnat, res.dnatOneOf) : null,
      snat: res.snat ? natRewrite(res.snat, undefined) : null,
    },
    packet_out: packetOut,
    indeterminate: res.indeterminate,
    notes: res.notes,
    ...(direction !== undefined ? { direction } : {}),
    ...(ctNat.length > 0 ? { conntrack_nat: ctNat } : {}),
  };
}

function natRewrite(n: { from: Endpoint; to: Endpoint }, oneOf: readonly string[] | undefined): NatRewrite {
  return {
    from: fmt(n.from),
    to: fmt(n.to),
    ...(n.to.portChoice ? { portChoice: n.to.portChoice } : {}),
    ...(oneOf && oneOf.length > 1 ? { oneOf } : {}),
  };
}

/** Key of a packet spec for caching (flow + interface + state). */
export function explanationKey(spec: PacketSpec): string {
  const t = spec.tuple;
  return `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}|${t.icmpType ?? ''}|${spec.iif ?? ''}|${spec.local ? 'L' : ''}|${spec.ctState ?? 'new'}|${spec.direction ?? 'original'}|${spec.mark ?? 0}`;
}

/**
 * A bounded per-flow cache of explanations for one compiled ruleset (make a new one when the ruleset
 * changes). Established packets with a conntrack entry are keyed by the entry's tuples too.
 */
export class ExplanationCache {
  private readonly map = new Map<string, Explanation>();
  hits = 0;
  misses = 0;
  constructor(
    readonly compiled: CompiledRuleset,
    readonly capacity = 10_000,
  ) {}

  explain(spec: PacketSpec): Explanation {
    let key = explanationKey(spec);
    if (spec.conntrack) key += `|${spec.conntrack.reply.src}:${spec.conntrack.reply.sport}>${spec.conntrack.reply.dst}:${spec.conntrack.reply.dport}`;
    if (spec.natOf) key += `|nat ${spec.natOf.reply.src}:${spec.natOf.reply.sport}>${spec.natOf.reply.dst}:${spec.natOf.reply.dport}`;
    const hit = this.map.get(key);
    if (hit !== undefined) {
      this.hits++;
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    this.misses++;
    const ex = explainPacket(this.compiled, spec);
    this.map.set(key, ex);
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
    return ex;
  }

  get size(): number {
    return this.map.size;
  }
}
