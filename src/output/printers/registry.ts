/** The output formats of `journey watch` (`-o FORMAT`): one registration line each. */
import { JourneyError } from '../../model/errors.js';
import { explainPrinter } from './explain.js';
import { jsonPrinter } from './json.js';
import { linePrinter } from './line.js';
import type { OutputFormatSpec, Printer, PrinterContext } from './printer.js';
import { topPrinter } from './top.js';

export const PRINTERS = {
  line: linePrinter,
  json: jsonPrinter,
  top: topPrinter,
  explain: explainPrinter,
} as const satisfies Record<string, OutputFormatSpec>;

export type OutputFormat = keyof typeof PRINTERS;
export const OUTPUT_FORMATS = Object.keys(PRINTERS) as readonly OutputFormat[];

export function isOutputFormat(name: string): name is OutputFormat {
  return Object.hasOwn(PRINTERS, name);
}

export function createPrinter(format: string, ctx: PrinterContext): Printer {
  if (!isOutputFormat(format)) throw new JourneyError('E_USAGE', `unknown output format "${format}" (formats: ${OUTPUT_FORMATS.join(', ')})`);
  return PRINTERS[format].create(ctx);
}
