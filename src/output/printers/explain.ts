/** `-o explain` (`--explain`): each new flow's whole journey, several lines (terminal-explain.ts). */
import type { JourneyEvent } from '../../model/events.js';
import { formatJourney } from '../terminal-explain.js';
import { printStreamEvent, type OutputFormatSpec, type PrinterContext } from './printer.js';

export const explainPrinter: OutputFormatSpec = {
  description: "each new flow's journey in full: legs, NAT, every netfilter step",
  create: (ctx: PrinterContext) => ({
    event(ev: JourneyEvent): void {
      if (printStreamEvent(ev, ctx)) return;
      if (ev.type === 'flow.start') ctx.out.write(`${formatJourney(ev.flow, { color: ctx.color })}\n\n`);
    },
    stop: () => Promise.resolve(),
  }),
};
