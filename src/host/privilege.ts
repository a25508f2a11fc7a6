/**
 * What this process may do, from /proc/self/status (CapEff), so that a run without privilege says
 * so (E_NOT_ROOT, naming the capabilities) instead of failing later on a symptom (a namespace
 * "not found", conntrack EACCES, a raw nsenter error).
 */
import { readFileSync } from 'node:fs';
import { JourneyError } from '../model/errors.js';

/** The capabilities journey's live paths use, by number (linux/capability.h). */
export const CAPABILITIES = { CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_SYS_ADMIN: 21 } as const;
export type CapabilityName = keyof typeof CAPABILITIES;

/** The effective capability set (a bigint mask), or null where /proc cannot tell. */
export function effectiveCapabilities(statusText?: string): bigint | null {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return null; // no /proc: nothing to say in advance, the operation itself will tell
    }
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  return m?.[1] === undefined ? null : BigInt(`0x${m[1]}`);
}

/** Which of `needed` the process lacks (empty when it has them all or /proc cannot tell). */
export function missingCapabilities(needed: readonly CapabilityName[], eff: bigint | null = effectiveCapabilities()): CapabilityName[] {
  if (eff === null) return [];
  return needed.filter((c) => (eff & (1n << BigInt(CAPABILITIES[c]))) === 0n);
}

/**
 * Throws E_NOT_ROOT when a live run lacks what it needs: capture (CAP_NET_RAW), conntrack and the
 * ruleset (CAP_NET_ADMIN), and entering another network namespace (CAP_SYS_ADMIN).
 */
export function assertLivePrivilege(what: string, opts: { readonly netns?: string } = {}): void {
  const needed: CapabilityName[] = ['CAP_NET_RAW', 'CAP_NET_ADMIN'];
  if (opts.netns !== undefined) needed.push('CAP_SYS_ADMIN');
  const missing = missingCapabilities(needed);
  if (missing.length === 0) return;
  const uid = process.geteuid?.() ?? -1;
  throw new JourneyError(
    'E_NOT_ROOT',
    `${what} needs root (or ${needed.join(', ')}); this process (uid ${uid}) lacks ${missing.join(', ')}: run it as root, or replay a capture with -r FILE`,
    { missing, uid },
  );
}
