/** `-o json` (`--json`): JSON lines, the same events `journey serve` streams (docs/event-schema.json). */
import type { JourneyEvent } from '../../model/events.js';
import { JsonLinesWriter } from '../jsonl.js';
import type { OutputFormatSpec, PrinterContext } from './printer.js';

export const jsonPrinter: OutputFormatSpec = {
  description: 'JSON lines: every event, as `journey serve` streams them',
  create: (ctx: PrinterContext) => {
    const w = new JsonLinesWriter(ctx.out);
    return {
      event: (ev: JourneyEvent): void => w.write(ev),
      stop: () => w.flush(),
    };
  },
};
