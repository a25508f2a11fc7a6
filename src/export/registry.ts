/**
 * The export targets journey knows: one `as const` list. A new engine is one new file with an
 * ExportTargetKind and one line here.
 */
import { JourneyError } from '../model/errors.js';
import { ipfixTarget } from './ipfix.js';
import { natsTarget } from './nats.js';
import { redactUrl, type ExportContext, type ExportStats, type ExportTarget } from './target.js';

export const EXPORT_TARGETS = [ipfixTarget, natsTarget] as const;
export type ExportScheme = (typeof EXPORT_TARGETS)[number]['scheme'];
export const EXPORT_SCHEMES: readonly ExportScheme[] = EXPORT_TARGETS.map((t) => t.scheme);

/** The URL checked against the registry (E_USAGE), not opened. */
export function parseExportUrl(spec: string): { url: URL; scheme: ExportScheme } {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new JourneyError('E_USAGE', `--export ${spec}: not a URL (${EXPORT_TARGETS.map((t) => t.usage).join('; ')})`);
  }
  const scheme = url.protocol.replace(/:$/, '');
  const kind = EXPORT_TARGETS.find((t) => t.scheme === scheme);
  if (kind === undefined)
    throw new JourneyError('E_USAGE', `--export ${redactUrl(url)}: unknown scheme "${scheme}" (known: ${EXPORT_SCHEMES.join(', ')})`);
  return { url, scheme: kind.scheme };
}

/** Every --export target opened; if one fails, those already open are closed and the error thrown. */
export async function openExports(specs: readonly string[], ctx: ExportContext): Promise<ExportTarget[]> {
  const parsed = specs.map(parseExportUrl);
  const open: ExportTarget[] = [];
  try {
    for (const { url, scheme } of parsed) {
      const kind = EXPORT_TARGETS.find((t) => t.scheme === scheme) as (typeof EXPORT_TARGETS)[number];
      open.push(await kind.open(url, ctx));
    }
  } catch (e) {
    await Promise.all(open.map((t) => t.close()));
    throw e;
  }
  return open;
}

/** "ipfix://…: 120 records sent, 0 lost, 0 reconnects (templates 3)" */
export function formatExportStats(s: ExportStats): string {
  const extra = Object.entries(s.extra ?? {})
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `${s.target}: ${s.sent} sent, ${s.lost} lost, ${s.reconnects} reconnects${extra !== '' ? ` (${extra})` : ''}`;
}
