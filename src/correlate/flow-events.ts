/**
 * What a flow shows: its explanation (asked of the explainer, redone when the ruleset or the
 * flow's first interface changed) and the FlowEvent (flow.start/update/end) carrying it.
 */
import type { FlowEvent, FlowInfo } from '../model/events.js';
import { SCHEMA_VERSION } from '../model/events.js';
import { explanationJson } from '../model/event-json.js';
import type { FlowExplainer } from './correlator-options.js';
import { firstOrigIface, type FlowState } from './flow-state.js';

/** Explains the flow again; marks it changed when the explanation differs. */
export function explainFlow(f: FlowState, ex: FlowExplainer, info: () => FlowInfo): void {
  const gen = ex.generation;
  const before = f.explanation === null ? null : explanationJson(f.explanation);
  try {
    f.explanation = ex.explain(info());
  } catch {
    // an explainer failure leaves the flow unexplained (shown without an explanation), never stops the flow
    f.explanation = null;
  }
  f.explainedGen = gen;
  f.explainedFrom = firstOrigIface(f);
  if ((f.explanation === null ? null : explanationJson(f.explanation)) !== before) f.changed = true;
}

/**
 * The flow's explanation is out of date: the ruleset changed since (re-explained a few thousand
 * per tick), an earlier leg turned up after it was explained (captures of two interfaces arrive
 * in their own batches: the question is asked where the packet first came in), or the explainer
 * is waiting for something (the kernel's trace).
 */
export function needsExplaining(f: FlowState, ex: FlowExplainer): boolean {
  return f.explainedGen !== ex.generation || f.explainedFrom !== firstOrigIface(f) || ex.awaits?.(f.id) === true;
}

/** The event showing the flow now; the flow counts as emitted (its change flags are cleared). */
export function flowEvent(f: FlowState, type: FlowEvent['type'], seq: number, nowMs: number, info: FlowInfo, reason?: string): FlowEvent {
  f.changed = false;
  f.countersChanged = false;
  f.lastEmitMs = nowMs;
  return {
    v: SCHEMA_VERSION,
    seq,
    time: Math.round(nowMs),
    type,
    flow: info,
    ...(reason !== undefined ? { reason } : {}),
  };
}
