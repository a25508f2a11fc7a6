/**
 * `-o explain` (`--explain`): each flow's START/END line (verdict, counters, end reason), and after
 * START its whole journey in both directions, several lines (terminal-explain.ts).
 */
import type { JourneyEvent } from '../../model/events.js';
import { formatJourney } from '../terminal-explain.js';
import { formatFlowEvent } from '../terminal.js';
import { printStreamEvent, writeRuleCounters, type OutputFormatSpec, type PrinterContext } from './printer.js';

export const explainPrinter: OutputFormatSpec = {
  description: "each new flow's journey in full, both directions: legs, NAT, every netfilter step (with its START/END lines)",
  create: (ctx: PrinterContext) => ({
    event(ev: JourneyEvent): void {
      if (printStreamEvent(ev, ctx)) return;
      if (ev.type !== 'flow.start' && ev.type !== 'flow.end') return;
      ctx.out.write(`${formatFlowEvent(ev, { color: ctx.color, tz: ctx.tz, counters: ctx.counters })}\n`);
      if (ev.type === 'flow.end') writeRuleCounters(ev.flow, ctx);
      if (ev.type === 'flow.start') ctx.out.write(`${formatJourney(ev.flow, { color: ctx.color, all: ctx.allChains === true })}\n\n`);
    },
    stop: () => Promise.resolve(),
  }),
};
