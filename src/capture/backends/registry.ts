/**
 * The capture backends: ONE list. A new backend is one file in this folder (the shape is
 * shape.ts) and one line here; `--backend`, the worker, the docs' list and the tests read it.
 */
import { JourneyError } from '../../model/errors.js';
import { capBackend } from './cap.js';
import { nativeBackend } from './native.js';
import { pcapBackend } from './pcap.js';
import type { CaptureBackendDef } from './shape.js';

export const CAPTURE_BACKEND_REGISTRY = [nativeBackend, pcapBackend, capBackend] as const;

/** A backend's name: 'native' | 'pcap' | 'cap', derived from the registry. */
export type CaptureBackend = (typeof CAPTURE_BACKEND_REGISTRY)[number]['name'];
export const CAPTURE_BACKENDS: readonly CaptureBackend[] = CAPTURE_BACKEND_REGISTRY.map((b) => b.name);
/** The backend used when none is asked for (its fallback is used, announced, when it cannot run). */
export const DEFAULT_CAPTURE_BACKEND: CaptureBackend = 'native';

export function isCaptureBackend(name: string): name is CaptureBackend {
  return (CAPTURE_BACKENDS as readonly string[]).includes(name);
}

/** The declared backend called `name`; E_USAGE naming the choices otherwise. */
export function captureBackend(name: string): CaptureBackendDef<CaptureBackend> {
  const b = CAPTURE_BACKEND_REGISTRY.find((x) => x.name === name);
  if (b === undefined) throw new JourneyError('E_USAGE', `unknown capture backend ${name} (${CAPTURE_BACKENDS.join(', ')})`, { backend: name });
  return b;
}

/**
 * The backend that will really run for `requested` (default: DEFAULT_CAPTURE_BACKEND): a backend
 * that cannot run here is replaced by its declared fallback, and `fallback` says why (callers
 * announce it: there is no silent fallback).
 */
export function resolveCaptureBackend(requested: CaptureBackend | undefined): { backend: CaptureBackend; fallback?: string } {
  let name: CaptureBackend = requested ?? DEFAULT_CAPTURE_BACKEND;
  const reasons: string[] = [];
  for (let hops = 0; hops < CAPTURE_BACKENDS.length; hops++) {
    const def = captureBackend(name);
    const why = def.unavailable?.() ?? null;
    if (why === null) break;
    if (def.fallback === undefined || !isCaptureBackend(def.fallback)) {
      throw new JourneyError('E_CAPTURE', `capture backend ${name} cannot run: ${why}`, { backend: name });
    }
    const next = def.fallback;
    reasons.push(`${why}: capturing with ${captureBackend(next).label} (backend ${next})`);
    name = next;
  }
  return reasons.length > 0 ? { backend: name, fallback: reasons.join('; ') } : { backend: name };
}
