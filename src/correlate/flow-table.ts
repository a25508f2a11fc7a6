/**
 * The live flows and the events that show them: a flow is added (the oldest evicted beyond
 * `maxFlows`), started (names, explanation, flow.start), updated at the tick (a change at once,
 * counters at most every `updateIntervalMs`, an explanation redone after a ruleset change) and
 * ended (flow.end, shown once even when it never started). Joining packets and conntrack events to
 * flows is the Correlator's (correlator.ts), which extends this; which flows a tick looks at is
 * flow-sweep.ts's.
 */
import type { FlowEvent, FlowInfo } from '../model/events.js';
import { type CorrelatorCounters, newCorrelatorCounters, type ResolvedCorrelatorOptions } from './correlator-options.js';
import { explainFlow, flowEvent, needsExplaining } from './flow-events.js';
import { flowNames } from './flow-names.js';
import { firstOrigIface, flowInfo, type FlowState } from './flow-state.js';
import { FlowSweep } from './flow-sweep.js';
import { IfaceTallies, type IfaceTally } from './iface-tally.js';
import { LegStore, NO_LEG } from './leg-store.js';

export class FlowTable {
  protected readonly flows = new Map<string, FlowState>();
  /** Which flows a tick looks at (all of them while few). */
  protected readonly sweep = new FlowSweep(this.flows);
  /** Per interface: packets shown in flows, or not shown and why. */
  protected readonly tallies = new IfaceTallies();
  /** The legs of the live flows (freed when a flow ends). */
  protected readonly legStore = new LegStore();
  readonly counters: CorrelatorCounters = newCorrelatorCounters();
  private seq = 0;
  protected nowMs = 0;

  constructor(protected readonly o: ResolvedCorrelatorOptions) {}

  /** flow.start for a flow known only from conntrack, without any packet. */
  private get noPacketStartMs(): number {
    return Math.max(this.o.startDelayMs * 4, 1000);
  }

  /** Per interface: packets shown in flows (ended and live) and those not shown, by reason. */
  ifaceTallies(): Map<string, IfaceTally & { shown: number }> {
    return this.tallies.snapshot(this.flows.values());
  }

  get liveFlows(): number {
    return this.flows.size;
  }

  /** The current view of every live flow (for --top and serve snapshots). */
  snapshot(): FlowInfo[] {
    return [...this.flows.values()].map((f) => this.info(f));
  }

  nextSeq(): number {
    return ++this.seq;
  }

  protected advance(ms: number): void {
    if (ms > this.nowMs) this.nowMs = ms;
  }

  protected addFlow(f: FlowState): void {
    this.flows.set(f.id, f);
    this.sweep.touch(f);
    while (this.flows.size > this.o.maxFlows) {
      const oldest = this.flows.values().next().value;
      if (oldest === undefined) break;
      this.counters.flowsEvicted++;
      this.end(oldest, 'evicted');
    }
  }

  /** Starts, updates and ends the flows this tick looks at (see flow-sweep.ts). */
  protected tickFlows(now: number): void {
    let reexplained = 0;
    let counterUpdates = 0;
    this.sweep.run((f) => {
      if (!f.started) {
        // a flow known from conntrack waits for its first captured packet (capture batches lag
        // conntrack events), up to four times the start delay
        const age = now - f.createdMs;
        if ((age >= this.o.startDelayMs && f.firstLeg !== NO_LEG) || age >= this.noPacketStartMs) this.start(f);
        return !f.started;
      }
      if (now - f.lastActivityMs >= this.o.idleTimeoutMs) {
        this.counters.flowsIdled++;
        this.end(f, 'idle');
        return false;
      }
      // an out-of-date explanation is redone, a few thousand flows per tick (see needsExplaining)
      if (this.o.explainer && needsExplaining(f, this.o.explainer) && reexplained < 2000) {
        reexplained++;
        this.explainFlow(f);
      }
      if (f.changed) this.emitFlow(f, 'flow.update');
      else if (f.countersChanged && now - f.lastEmitMs >= this.o.updateIntervalMs && counterUpdates < this.o.maxCounterUpdatesPerTick) {
        // counters only: bounded per tick, so that 100,000 busy flows do not flood the output
        counterUpdates++;
        this.emitFlow(f, 'flow.update');
      }
      // an explanation waiting for the kernel's trace (--verify) is asked for again at the next tick
      return this.o.explainer?.awaits?.(f.id) === true;
    });
  }

  protected explainFlow(f: FlowState): void {
    if (this.o.explainer) explainFlow(f, this.o.explainer, () => this.info(f));
  }

  protected start(f: FlowState): void {
    f.started = true;
    this.counters.flowsStarted++;
    if (this.o.names) f.names = flowNames(f, this.o.names);
    this.explainFlow(f);
    this.emitFlow(f, 'flow.start');
  }

  /** Called when a flow leaves the table (before its flow.end), for the indexes of a subclass. */
  protected ended(_f: FlowState): void {
    // nothing here: the table itself keeps no other index
  }

  protected end(f: FlowState, reason: string): void {
    f.gone = true;
    this.flows.delete(f.id);
    this.sweep.forget(f);
    this.tallies.ended(f);
    this.ended(f);
    if (!f.started) {
      // never shown: show it once, so short flows are not lost
      if (f.firstLeg === NO_LEG && reason !== 'destroyed') return;
      this.start(f);
    }
    if (this.o.explainer && f.explainedFrom !== firstOrigIface(f)) this.explainFlow(f);
    this.counters.flowsEnded++;
    this.emitFlow(f, 'flow.end', reason);
    this.legStore.free(f.firstLeg);
    f.firstLeg = NO_LEG;
  }

  protected info(f: FlowState): FlowInfo {
    return flowInfo(f, this.o.hookTuples);
  }

  protected emitFlow(f: FlowState, type: FlowEvent['type'], reason?: string): void {
    this.o.emit(flowEvent(f, type, this.nextSeq(), this.nowMs, this.info(f), reason));
  }
}
