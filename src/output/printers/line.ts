/** `-o line` (the default): one line per flow event, kernel drops of no flow with --drops. */
import type { JourneyEvent } from '../../model/events.js';
import { formatEvent, formatFlowEvent } from '../terminal.js';
import { printStreamEvent, writeRuleCounters, type OutputFormatSpec, type PrinterContext } from './printer.js';

export const linePrinter: OutputFormatSpec = {
  description: 'one line per flow event (START, END; UPDATE with --updates)',
  create: (ctx: PrinterContext) => ({
    event(ev: JourneyEvent): void {
      if (printStreamEvent(ev, ctx)) return;
      if (ev.type === 'drop') {
        if (ctx.drops && ev.flowId === null) ctx.out.write(`${formatEvent(ev, { color: ctx.color, tz: ctx.tz })}\n`);
        return;
      }
      if (ev.type === 'flow.update' && !ctx.updates) return;
      if (ev.type === 'flow.start' || ev.type === 'flow.update' || ev.type === 'flow.end') {
        ctx.out.write(`${formatFlowEvent(ev, { color: ctx.color, tz: ctx.tz, counters: ctx.counters })}\n`);
        if (ev.type === 'flow.end') writeRuleCounters(ev.flow, ctx);
      }
    },
    stop: () => Promise.resolve(),
  }),
};
