/**
 * `--export URL` (repeatable) and `--export-host NAME` for `journey watch` and `journey serve`:
 * the targets of src/export/ opened before capture starts (a collector that cannot be reached
 * fails early, E_EXPORT), fed every pipeline event, closed and summed up on stderr at the end.
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import type { JourneyEvent } from '../model/events.js';
import { EXPORT_TARGETS, formatExportStats, openExports } from '../export/registry.js';
import type { ExportTarget } from '../export/target.js';

export interface ExportCliOptions {
  export?: string[];
  exportHost?: string;
}

const repeat = (v: string, prev: string[] = []): string[] => [...prev, v];

export function addExportOptions(cmd: Command): Command {
  return cmd
    .option(
      '--export <url>',
      `send the events to a collector or message engine (repeatable; docs/export.md): ${EXPORT_TARGETS.map((t) => t.usage).join(' | ')}`,
      repeat,
    )
    .option('--export-host <name>', "the host name exports carry (subjects, records; default: this machine's host name)");
}

export interface Exports {
  readonly targets: readonly ExportTarget[];
  write(ev: JourneyEvent): void;
  /** Closes every target and returns one summary line each. */
  close(): Promise<string[]>;
}

export async function openCliExports(o: ExportCliOptions, log: (line: string) => void): Promise<Exports | null> {
  if (o.export === undefined || o.export.length === 0) return null;
  const targets = await openExports(o.export, { host: o.exportHost ?? hostname(), env: process.env, log });
  return {
    targets,
    write(ev) {
      for (const t of targets) t.write(ev);
    },
    async close() {
      await Promise.all(targets.map((t) => t.close()));
      return targets.map((t) => `export ${formatExportStats(t.stats())}`);
    },
  };
}
