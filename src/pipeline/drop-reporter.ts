/**
 * Kernel drops (eBPF, src/native) turned into `drop` events: joined to the rule that dropped them
 * (when the ruleset is known) and to their flow. Drops with a quiet reason that belong to no flow
 * (and every OTHERHOST drop) are counted and said once at the end instead.
 */
import type { Correlator } from '../correlate/correlator.js';
import { SCHEMA_VERSION, type JourneyEvent } from '../model/events.js';
import { joinDropRule, type KernelDrop } from '../native/index.js';
import type { ReloadableExplainer } from './flow-explainer.js';

export const DEFAULT_QUIET_DROP_REASONS = ['NOT_SPECIFIED', 'OTHERHOST'] as const;

export class DropReporter {
  private readonly quiet: ReadonlySet<string>;
  /** Drops left out: quiet reason and no flow (or OTHERHOST). */
  dropsQuiet = 0;

  constructor(
    quietReasons: readonly string[] | undefined,
    private readonly correlator: Correlator,
    private readonly explainer: ReloadableExplainer,
    private readonly emit: (ev: JourneyEvent) => void,
  ) {
    this.quiet = new Set(quietReasons ?? DEFAULT_QUIET_DROP_REASONS);
  }

  onKernelDrop(raw: KernelDrop): void {
    const ex = this.explainer;
    const joined = ex.unavailable === null ? joinDropRule(raw, (spec) => ex.explainSpec(spec)) : raw;
    const drop = { timeUs: joined.timeUs, reason: joined.reason, iface: joined.iface, tuple: joined.tuple, rule: joined.rule };
    // OTHERHOST: a copy of a frame the bridge forwarded port to port, handed to the host's stack
    // because the bridge capture is promiscuous, and discarded there: never the flow's fate
    if (drop.reason === 'OTHERHOST' && this.quiet.has('OTHERHOST')) {
      this.dropsQuiet++;
      return;
    }
    const flowId = this.correlator.onDrop(drop, joined.ct?.orig ?? null);
    if (flowId === null && this.quiet.has(drop.reason)) {
      this.dropsQuiet++;
      return;
    }
    this.emit({ v: SCHEMA_VERSION, seq: this.correlator.nextSeq(), time: Date.now(), type: 'drop', drop, flowId });
  }

  /** The notice about quiet drops, when some were left out. */
  finalNotice(): string | null {
    if (this.dropsQuiet === 0) return null;
    const reasons = [...this.quiet].map((r) => (r === 'OTHERHOST' ? "OTHERHOST: the host's copies of bridged frames" : `${r} without a flow`));
    return `${this.dropsQuiet} kernel drops were not reported (${reasons.join('; ')}); --all-drops shows them`;
  }
}
