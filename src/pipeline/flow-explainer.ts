/**
 * The one place where flows meet the simulator (src/explain):
 * loadLiveRuleset + loadHostContext -> compileRuleset -> explainPacket, once per flow (the
 * correlator caches the answer on the flow), redone for live flows after `reload()` (the
 * pipeline calls it when `nft monitor` reports a ruleset change; `generation` is bumped).
 *
 * The packet asked about is the flow's first packet as it arrived: the conntrack original tuple,
 * coming in on the interface it was first captured on — or, with no capture of it, the interface
 * the route back to its source uses; a packet from one of the host's own addresses is `local`.
 * When the ruleset cannot be loaded, `unavailable` says why and every explanation is null.
 */
import type { FlowInfo } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import {
  compileRuleset,
  explainPacket,
  loadHostContext,
  loadHostContextFiles,
  loadLiveRuleset,
  loadRulesetFiles,
  type CompiledRuleset,
  type HostContext,
  type PacketSpec,
  type Ruleset,
} from '../explain/explain.js';
import { addrType, type HostAddr, lookupRoute } from '../ruleset/host-context.js';
import { parseIp } from '../ruleset/ip.js';
import type { FlowExplainer } from '../correlate/correlator.js';

export interface ReloadableExplainer extends FlowExplainer {
  /** Why there is no explanation, when there is none. */
  readonly unavailable: string | null;
  /** Re-reads the ruleset (after a change); bumps `generation`. */
  reload(): Promise<void>;
  /** Explanations computed and failures (a packet the simulator refused). */
  readonly counters: { explained: number; failed: number };
  /** Explains any packet (e.g. one the kernel dropped); null when unavailable. */
  explainSpec(spec: PacketSpec): Explanation | null;
  /** Whether an address is one of the host's own (from its addresses and local routes); null when not known. */
  isLocal(addr: string): boolean | null;
  /** The ruleset explained with, when one was loaded. */
  readonly ruleset?: Ruleset | null;
}

/** The simulator's question for a flow, or null when it cannot be asked (no interface known). */
export function flowPacketSpec(flow: FlowInfo, host: HostContext | null): PacketSpec | null {
  const t = flow.orig;
  const src = parseIp(t.src);
  if (src === null || parseIp(t.dst) === null) return null;
  // the connection's entry says which port / endpoint the kernel chose where the rules leave a choice
  const r = flow.reply;
  const natOf =
    r === null
      ? {}
      : {
          natOf: {
            orig: { src: t.src, dst: t.dst, sport: t.sport, dport: t.dport },
            reply: { src: r.src, dst: r.dst, sport: r.sport, dport: r.dport },
          },
        };
  if (host && addrType(host, src) === 'local') return { tuple: t, local: true, ...natOf };
  const first = [...flow.legs].filter((l) => l.direction === 'orig').sort((a, b) => a.firstUs - b.firstUs)[0];
  let iif = first?.iface;
  if (iif === undefined && host) iif = lookupRoute(host, src)?.route.dev ?? undefined;
  if (iif === undefined) return null;
  return { tuple: t, iif, ...natOf };
}

/**
 * The simulator's question for a flow's reply: the conntrack reply tuple as it comes back (on the
 * interface the reply was first captured on, or the one the route to its source uses; from the
 * host itself when its source is a local address), established, with the entry's NAT to reverse.
 * null when there is no entry (the reply cannot be explained without it) or no interface is known.
 */
export function flowReplySpec(flow: FlowInfo, host: HostContext | null): PacketSpec | null {
  const r = flow.reply;
  if (r === null || parseIp(r.src) === null || parseIp(r.dst) === null) return null;
  const icmp = r.proto === 'icmp' || r.proto === 'icmpv6';
  const tuple = icmp ? { ...r, icmpType: r.proto === 'icmp' ? 0 : 129, icmpCode: 0 } : r;
  const binding = {
    orig: { src: flow.orig.src, dst: flow.orig.dst, sport: flow.orig.sport, dport: flow.orig.dport },
    reply: { src: r.src, dst: r.dst, sport: r.sport, dport: r.dport },
    status: flow.ctStatus,
  };
  const common = { tuple, ctState: 'established' as const, direction: 'reply' as const, conntrack: binding };
  const src = parseIp(r.src);
  if (host && src !== null && addrType(host, src) === 'local') return { ...common, local: true };
  const first = [...flow.legs].filter((l) => l.direction === 'reply').sort((a, b) => a.firstUs - b.firstUs)[0];
  let iif = first?.iface;
  if (iif === undefined && host && src !== null) iif = lookupRoute(host, src)?.route.dev ?? undefined;
  if (iif === undefined) return null;
  return { ...common, iif };
}

/** The reply explanation when it cannot be computed: indeterminate, with the reason. */
export function unexplainedReply(reason: string): Explanation {
  return {
    verdict: 'indeterminate',
    steps: [],
    nat: { dnat: null, snat: null },
    packet_out: null,
    indeterminate: [{ chain: '(conntrack)', rule: '(reply)', reason }],
    direction: 'reply',
  };
}

class NullExplainer implements ReloadableExplainer {
  readonly generation = 0;
  readonly counters = { explained: 0, failed: 0 };
  constructor(readonly unavailable: string) {}
  explain(): Explanation | null {
    return null;
  }
  explainSpec(): Explanation | null {
    return null;
  }
  isLocal(): boolean | null {
    return null;
  }
  async reload(): Promise<void> {
    // nothing to load: explanations are off
  }
}

/** A recorded ruleset and host context (replays): iptables-save text, nft -j JSON, ip -j addr/route. */
export interface RulesetFilesSpec {
  readonly iptablesSave?: readonly string[];
  readonly nftJson?: readonly string[];
  readonly addrs?: string;
  readonly routes?: string;
  /** The host context (addresses, routes) is read live, not from files (a live pipeline's test-only ruleset). */
  readonly liveHost?: boolean;
}

class SimulatorExplainer implements ReloadableExplainer {
  generation = 0;
  unavailable: string | null = null;
  readonly counters = { explained: 0, failed: 0 };
  private compiled: CompiledRuleset | null = null;
  /** The ruleset explained with (--verify compares with the kernel's trace against it). */
  get ruleset(): Ruleset | null {
    return this.compiled?.ruleset ?? null;
  }
  private host: HostContext | null = null;
  constructor(
    private readonly netns: string | undefined,
    private readonly files: RulesetFilesSpec | undefined,
  ) {}

  async reload(): Promise<void> {
    const o = this.netns !== undefined ? { netns: this.netns } : {};
    const f = this.files;
    try {
      const [rs, host] = f
        ? await Promise.all([
            loadRulesetFiles({ ...(f.iptablesSave ? { iptablesSave: f.iptablesSave } : {}), ...(f.nftJson ? { nftJson: f.nftJson } : {}) }),
            f.liveHost
              ? loadHostContext(o)
              : loadHostContextFiles({
                  ...(f.addrs !== undefined ? { addrs: f.addrs } : {}),
                  ...(f.routes !== undefined ? { routes: f.routes } : {}),
                }),
          ])
        : await Promise.all([loadLiveRuleset(o), loadHostContext(o)]);
      this.host = host;
      this.compiled = compileRuleset(rs, host);
      this.unavailable = null;
      this.warmUp();
    } catch (e) {
      this.compiled = null;
      this.unavailable = `no explanations: the ruleset could not be loaded (${(e as Error).message})`;
    }
    this.generation++;
  }

  /**
   * Runs the simulator once on a made-up first packet, its answer dropped and not counted: V8
   * compiles the simulator's code now, not while the first flows wait for their flow.start (the
   * first connection's flow.start came 25 ms after its packet without it, 15 ms with it, measured
   * with watch-latency.mjs). The
   * packet comes from a documentation address (192.0.2.1, RFC 5737) to the host's first global
   * IPv4 address, in on the interface of the route back to it.
   */
  private warmUp(): void {
    const host = this.host;
    if (this.compiled === null || host === null) return;
    let dst: HostAddr | undefined;
    let dev: string | undefined;
    for (const i of host.interfaces.values()) {
      dst = i.addrs.find((a) => a.family === 4 && a.scope === 'global');
      if (dst) {
        dev = i.name;
        break;
      }
    }
    const src = parseIp('192.0.2.1');
    if (dst === undefined || dev === undefined || src === null) return;
    const iif = lookupRoute(host, src)?.route.dev ?? dev;
    try {
      explainPacket(this.compiled, {
        tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '192.0.2.1', dst: dst.local, sport: 40000, dport: 80 },
        iif,
      });
    } catch {
      // a warm-up: whatever it answers is not used
    }
  }

  explain(flow: FlowInfo): Explanation | null {
    const spec = flowPacketSpec(flow, this.host);
    const ex = spec === null ? null : this.explainSpec(spec);
    if (ex === null) return null;
    // both directions: the reply as conntrack turns it back (never guessed without the entry)
    const rspec = flowReplySpec(flow, this.host);
    const reply =
      rspec !== null
        ? (this.explainSpec(rspec) ?? unexplainedReply('the simulator could not explain the reply packet'))
        : unexplainedReply(
            flow.reply === null
              ? 'no conntrack entry for this flow: the NAT conntrack reverses on the reply is unknown'
              : 'the interface the reply comes in on is not known',
          );
    return { ...ex, reply };
  }

  isLocal(addr: string): boolean | null {
    const ip = parseIp(addr);
    if (this.host === null || ip === null) return null;
    const t = addrType(this.host, ip);
    return t === null ? null : t === 'local';
  }

  explainSpec(spec: PacketSpec): Explanation | null {
    if (this.compiled === null) return null;
    try {
      const ex = explainPacket(this.compiled, spec);
      this.counters.explained++;
      return ex;
    } catch {
      this.counters.failed++;
      return null;
    }
  }
}

export async function createFlowExplainer(opts: { netns?: string; enabled?: boolean; files?: RulesetFilesSpec }): Promise<ReloadableExplainer> {
  if (opts.enabled === false) return new NullExplainer('explanations off');
  const ex = new SimulatorExplainer(opts.netns, opts.files);
  await ex.reload();
  return ex;
}
