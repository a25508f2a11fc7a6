/**
 * The one place where flows meet the simulator (src/explain, engineer B). Until the simulator
 * is available, `createFlowExplainer` returns an explainer that answers null (the flow's
 * `explanation` field stays null) and says why in `unavailable`.
 *
 * The simulator is loaded dynamically so this stage builds and runs before it lands. Expected
 * module contract (src/explain/index.js): `loadLiveRuleset({ netns })` -> ruleset,
 * `loadHostContext({ netns })` -> context, `compileRuleset(ruleset)` -> compiled,
 * `explainPacket(compiled, packet, context)` -> Explanation. The ruleset is re-read when it
 * changes (`reload()`, driven by the pipeline's ruleset watcher) and `generation` is bumped so the
 * correlator re-explains live flows once.
 */
import type { FlowInfo } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import type { FlowExplainer } from './correlator.js';

export interface ReloadableExplainer extends FlowExplainer {
  /** Why there is no explanation, when there is none. */
  readonly unavailable: string | null;
  /** Re-reads the ruleset (after a change); bumps `generation`. */
  reload(): Promise<void>;
}

type ExplainModule = {
  loadLiveRuleset?: (o: { netns?: string }) => Promise<unknown> | unknown;
  loadHostContext?: (o: { netns?: string }) => Promise<unknown> | unknown;
  compileRuleset?: (r: unknown) => unknown;
  explainPacket?: (compiled: unknown, packet: unknown, ctx: unknown) => Explanation;
};

/** The packet the simulator is asked about: the flow's first packet as it arrived. */
export function flowPacket(flow: FlowInfo): Record<string, unknown> {
  const first = [...flow.legs].filter((l) => l.direction === 'orig').sort((a, b) => a.firstUs - b.firstUs)[0];
  const t = first?.tuple ?? flow.orig;
  const icmp = t.proto === 'icmp' || t.proto === 'icmpv6';
  return {
    family: t.family,
    proto: t.proto,
    src: t.src,
    dst: t.dst,
    ...(icmp ? { icmpType: t.icmpType ?? 8, icmpCode: t.icmpCode ?? 0 } : { sport: t.sport, dport: t.dport }),
    ...(first ? { iif: first.iface } : {}),
    ctState: 'new',
  };
}

class NullExplainer implements ReloadableExplainer {
  readonly generation = 0;
  constructor(readonly unavailable: string) {}
  explain(): Explanation | null {
    return null;
  }
  async reload(): Promise<void> {}
}

class SimulatorExplainer implements ReloadableExplainer {
  generation = 1;
  unavailable: string | null = null;
  private compiled: unknown = null;
  private ctx: unknown = null;
  constructor(
    private readonly mod: Required<ExplainModule>,
    private readonly netns: string | undefined,
  ) {}
  async reload(): Promise<void> {
    const o = this.netns !== undefined ? { netns: this.netns } : {};
    try {
      const rs = await this.mod.loadLiveRuleset(o);
      this.ctx = await this.mod.loadHostContext(o);
      this.compiled = this.mod.compileRuleset(rs);
      this.unavailable = null;
    } catch (e) {
      this.compiled = null;
      this.unavailable = `no explanations: ruleset could not be loaded (${(e as Error).message})`;
    }
    this.generation++;
  }
  explain(flow: FlowInfo): Explanation | null {
    if (this.compiled === null) return null;
    return this.mod.explainPacket(this.compiled, flowPacket(flow), this.ctx);
  }
}

export async function createFlowExplainer(opts: { netns?: string; enabled?: boolean }): Promise<ReloadableExplainer> {
  if (opts.enabled === false) return new NullExplainer('explanations off');
  let mod: ExplainModule;
  try {
    const spec = '../explain/index.js';
    mod = (await import(spec)) as ExplainModule;
  } catch {
    return new NullExplainer('no explanations: the simulator (src/explain) is not available in this build');
  }
  if (typeof mod.loadLiveRuleset !== 'function' || typeof mod.compileRuleset !== 'function' || typeof mod.explainPacket !== 'function' || typeof mod.loadHostContext !== 'function') {
    return new NullExplainer('no explanations: src/explain does not export loadLiveRuleset/loadHostContext/compileRuleset/explainPacket');
  }
  const ex = new SimulatorExplainer(mod as Required<ExplainModule>, opts.netns);
  await ex.reload();
  return ex;
}
