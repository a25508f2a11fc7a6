/** `-o top` (`--top`): a table of the live flows, redrawn every second; the last one stays on screen. */
import type { JourneyEvent } from '../../model/events.js';
import { renderTop } from '../terminal-top.js';
import { printStreamEvent, type OutputFormatSpec, type PrinterContext } from './printer.js';

export const topPrinter: OutputFormatSpec = {
  description: 'a table of the live flows, busiest first, redrawn every second',
  create: (ctx: PrinterContext) => {
    let timer: NodeJS.Timeout | null = null;
    const draw = (): void => {
      const text = renderTop(ctx.flows(), { nowMs: ctx.nowMs?.() ?? Date.now(), width: ctx.out.columns ?? 160, rows: ctx.out.rows ?? 40 });
      ctx.out.write(`\x1b[H\x1b[2J${text}\n`);
    };
    return {
      event: (ev: JourneyEvent): void => {
        printStreamEvent(ev, ctx);
      },
      start(): void {
        draw();
        timer = setInterval(draw, 1000);
      },
      stop: async () => {
        if (timer !== null) clearInterval(timer);
        timer = null;
        draw();
      },
    };
  },
};
