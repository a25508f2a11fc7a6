/**
 * The kernel's conntrack table as `conntrack -L -o extended,id` prints it: the entries the
 * explainer's NAT is checked against (read by conntrack/parse.ts, the parser of the live sources).
 */
import { parseConntrackText } from '../conntrack/parse.js';
import type { ConntrackEntry } from '../model/conntrack.js';

/**
 * Parses `conntrack -L -o extended[,id]` output into ConntrackEntry (source `conntrack-tool`).
 * The tool prints no NAT status bits: SRC_NAT / DST_NAT are derived from the two tuples (the
 * kernel sets them exactly when the reply tuple is not the inverse of the original), SEEN_REPLY
 * from the absence of [UNREPLIED]. Unreadable lines are skipped (and counted in `skipped`).
 */
export function parseConntrackList(text: string): { entries: ConntrackEntry[]; skipped: number } {
  const { lines, skipped } = parseConntrackText(text, 'conntrack-tool');
  return { entries: lines.map((l) => l.entry), skipped };
}
