/**
 * The shape of an output format of `journey watch`: a Printer receives every event that passed the
 * flow filter (src/output/flow-filter.ts) and writes it its own way. Formats are registered in
 * ./registry.ts; adding one is a new file exporting an OutputFormatSpec plus one line there.
 */
import type { Writable } from 'node:stream';
import type { FlowInfo, JourneyEvent } from '../../model/events.js';
import { formatEvent } from '../terminal.js';
import { formatRuleCounters } from '../rule-counter-lines.js';

export interface PrinterContext {
  /** Where the data goes (stdout). */
  readonly out: Writable & { columns?: number; rows?: number };
  /** Where notices go (stderr). */
  readonly err: Writable;
  readonly color: boolean;
  readonly errColor: boolean;
  readonly tz: 'utc' | 'local';
  /** Packet/byte counters on every line. */
  readonly counters: boolean;
  /** Also print flow.update events. */
  readonly updates: boolean;
  /** Also print kernel drops that belong to no flow. */
  readonly drops: boolean;
  /** -o explain: also list chains entered and left without a matching rule (collapsed by default). */
  readonly allChains?: boolean;
  /** The live flows now (for views that draw a table). */
  readonly flows: () => readonly FlowInfo[];
  /** The clock of views that show ages (tests fix it). */
  readonly nowMs?: () => number;
}

export interface Printer {
  /** One event that passed the filter. */
  event(ev: JourneyEvent): void;
  /** Called once before the first event. */
  start?(): void;
  /** Writes what is still buffered; resolves when it was handed to the output. */
  stop(): Promise<void>;
}

export interface OutputFormatSpec {
  /** One line for --help. */
  readonly description: string;
  create(ctx: PrinterContext): Printer;
}

/**
 * Stream-level events of the human-readable formats: notices, losses and ruleset changes go to
 * stderr (the data on stdout stays clean), statistics are shown at the end. Returns whether the
 * event was one of those.
 */
export function printStreamEvent(ev: JourneyEvent, ctx: PrinterContext): boolean {
  if (ev.type === 'notice' || ev.type === 'lost' || ev.type === 'ruleset.changed') {
    ctx.err.write(`${formatEvent(ev, { color: ctx.errColor, tz: ctx.tz })}\n`);
    return true;
  }
  return ev.type === 'capture.stats';
}

/** `--rule-counters`: the increments of the flow's rules after its END line (nothing when it carries none). */
export function writeRuleCounters(flow: FlowInfo, ctx: PrinterContext): void {
  const text = formatRuleCounters(flow, ctx.tz);
  if (text !== null) ctx.out.write(`${text}\n`);
}
