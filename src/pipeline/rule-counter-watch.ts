/**
 * `--rule-counters`: each flow's end carries, for every rule of its explained path, how much the
 * kernel's counter of that rule grew during the flow's life. The live counters are read once a
 * second; a flow takes the last reading before its first packet, and at its end a fresh reading
 * is taken while the event stream waits (events keep their order), so the window covers the whole
 * flow. The kernel counts every packet through a rule, so on a busy host other traffic through
 * the same rule is in the increments too: the window is stated with them.
 */
import type { FlowEvent, FlowInfo, JourneyEvent } from '../model/events.js';
import type { ExplainStep, Explanation } from '../model/explanation.js';
import { type CounterReading, counterDelta, stepCounterKey } from '../ruleset/rule-counters.js';

/** Readings kept to find the one before a flow's first packet (a flow is explained within seconds of it). */
const HISTORY = 30;

export interface RuleCounterWatchOptions {
  readonly read: () => Promise<CounterReading>;
  readonly deliver: (ev: JourneyEvent) => void;
  readonly notice: (message: string) => void;
  readonly intervalMs?: number;
}

function firstPacketMs(f: FlowInfo): number | null {
  let first = Number.POSITIVE_INFINITY;
  for (const l of f.legs) if (l.firstUs < first) first = l.firstUs;
  return Number.isFinite(first) ? first / 1000 : null;
}

function withIncrements(ex: Explanation, before: CounterReading, after: CounterReading): Explanation {
  const steps = ex.steps.map((s): ExplainStep => {
    const k = stepCounterKey(s);
    const d = k === null ? null : counterDelta(before.counters, after.counters, k);
    return d === null ? s : { ...s, counters: d };
  });
  const reply = ex.reply !== undefined ? { reply: withIncrements(ex.reply, before, after) } : {};
  return { ...ex, steps, ...reply, counterWindow: { fromMs: before.timeMs, toMs: after.timeMs } };
}

export class RuleCounterWatch {
  private readonly history: CounterReading[] = [];
  private readonly before = new Map<string, CounterReading | null>();
  private inflight: Promise<CounterReading | null> | null = null;
  private readonly timer: NodeJS.Timeout;
  /** Events waiting for the reading a flow.end needs, in order; null while nothing waits. */
  private queue: JourneyEvent[] | null = null;
  private draining: Promise<void> = Promise.resolve();
  private failed = false;

  constructor(private readonly o: RuleCounterWatchOptions) {
    this.timer = setInterval(() => void this.take(), o.intervalMs ?? 1000);
    this.timer.unref();
    void this.take();
  }

  /** One reading (shared by callers while it runs); null when the tools failed (said once). */
  private take(): Promise<CounterReading | null> {
    this.inflight ??= this.o
      .read()
      .then((r) => {
        this.history.push(r);
        if (this.history.length > HISTORY) this.history.shift();
        return r;
      })
      .catch((e: unknown) => {
        if (!this.failed) this.o.notice(`rule counters could not be read: ${(e as Error).message}`);
        this.failed = true;
        return null;
      })
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }

  /** Remembers, for a flow seen for the first time, the last reading taken before its first packet. */
  private note(f: FlowInfo): void {
    if (this.before.has(f.id)) return;
    const t = firstPacketMs(f);
    let pick: CounterReading | null = null;
    if (t !== null) for (const r of this.history) if (r.timeMs <= t) pick = r;
    this.before.set(f.id, pick);
  }

  /** Passes an event on, or holds it (and every later one) until a flow.end has its fresh reading. */
  push(ev: JourneyEvent): void {
    if (ev.type === 'flow.start' || ev.type === 'flow.update' || ev.type === 'flow.end') this.note(ev.flow);
    const needs = ev.type === 'flow.end' && ev.flow.explanation !== null;
    if (ev.type === 'flow.end' && !needs) this.before.delete(ev.flow.id);
    if (this.queue === null && !needs) {
      this.o.deliver(ev);
      return;
    }
    if (this.queue === null) {
      this.queue = [];
      this.draining = this.take().then((after) => this.flush(after));
    }
    this.queue.push(ev);
  }

  private flush(after: CounterReading | null): void {
    const q = this.queue ?? [];
    this.queue = null;
    for (const ev of q) this.o.deliver(ev.type === 'flow.end' ? this.annotate(ev, after) : ev);
  }

  private annotate(ev: FlowEvent, after: CounterReading | null): FlowEvent {
    const before = this.before.get(ev.flow.id) ?? null;
    this.before.delete(ev.flow.id);
    const ex = ev.flow.explanation;
    if (ex === null) return ev;
    if (after === null || before === null) {
      const why = after === null ? 'the counters could not be read' : 'no reading of the counters before its first packet';
      return { ...ev, flow: { ...ev.flow, explanation: { ...ex, notes: [...(ex.notes ?? []), `rule counters: ${why}`] } } };
    }
    return { ...ev, flow: { ...ev.flow, explanation: withIncrements(ex, before, after) } };
  }

  /** Waits until every held event is delivered (at stop, before the stream ends). */
  async drain(): Promise<void> {
    while (this.queue !== null) await this.draining;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
