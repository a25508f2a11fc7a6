/**
 * Loads the native addon (native-bindings/build/Release/journey_native.node) once, or says why it
 * cannot: not built, refused by the dynamic loader, or turned off with JOURNEY_NATIVE=off (the
 * switch the tests use to run the same suite against the fallbacks). Never throws.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeHookSpec {
  readonly pf: number;
  readonly hook: number;
  readonly priority: number;
  /** When the priority is taken in the namespace (EBUSY: one link per pf/hook/priority), move by step (+1/-1)... */
  readonly step?: number;
  /** ...at most this many times. */
  readonly maxShift?: number;
}

export interface NativeStatus {
  readonly ok: boolean;
  readonly code?: string;
  readonly error?: string;
  readonly detail?: string;
}

export interface NativeKernelSession {
  close(): void;
  stats(): { closed: boolean; delivered?: number; batches?: number; lost?: number; ignored?: number };
  readonly status: {
    readonly load: NativeStatus;
    readonly drops?: NativeStatus;
    readonly hooks: readonly (NativeStatus & NativeHookSpec & { readonly program?: number })[];
  };
}

export interface NativeConntrackSession {
  close(): void;
  /** Delivers the events already queued on the socket before it returns (the callback runs on this stack). */
  readNow(): void;
  stats(): { closed: boolean; delivered?: number; overruns?: number };
}

export interface NativeLayoutPart {
  readonly size: number;
  readonly fields: Readonly<Record<string, number>>;
}

/** What the addon exports (native-bindings/src/addon.c). */
export interface NativeBinding {
  layout(): {
    tuple: NativeLayoutPart;
    event: NativeLayoutPart;
    ctEvent: NativeLayoutPart;
    filter: NativeLayoutPart;
    maxSlots: number;
    nfPrograms: number;
  };
  clockOffsetNs(): number;
  dropReasons(): { value: number; name: string }[];
  kernelOpen(
    opts: {
      netns?: string;
      netnsInode?: number;
      drops?: boolean;
      hooks?: readonly NativeHookSpec[];
      filter?: { proto?: number; port?: number; addr?: Buffer };
      minReason?: number;
      hookOnce?: boolean;
      ignoreReasons?: readonly number[];
    },
    onEvents: (buf: Buffer, count: number, lostTotal: number) => void,
  ): NativeKernelSession;
  conntrackOpen(opts: { netns?: string }, onEvents: (buf: Buffer, count: number, overruns: number) => void): NativeConntrackSession;
  conntrackDump(opts: { netns?: string }): Buffer;
}

export type BindingResult = { readonly binding: NativeBinding; readonly error: null } | { readonly binding: null; readonly error: string };

let cached: BindingResult | null = null;

/** The project root: the nearest ancestor holding native-bindings/binding.gyp (src/ or dist/src/). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'native-bindings', 'binding.gyp'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export function addonPath(): string {
  return process.env['JOURNEY_NATIVE_ADDON'] ?? join(projectRoot(), 'native-bindings', 'build', 'Release', 'journey_native.node');
}

/** True when JOURNEY_NATIVE asks for the fallbacks (off, 0, false, no). */
export function nativeDisabled(): boolean {
  const v = (process.env['JOURNEY_NATIVE'] ?? '').toLowerCase();
  return v === 'off' || v === '0' || v === 'false' || v === 'no';
}

/** Forgets a loaded (or failed) binding: the next loadBinding() looks again (tests). */
export function resetBindingCache(): void {
  cached = null;
}

export function loadBinding(): BindingResult {
  if (nativeDisabled()) return { binding: null, error: 'native bindings turned off (JOURNEY_NATIVE=off)' };
  if (cached !== null) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    cached = { binding: null, error: `native addon not built (${path} missing; run native-bindings/build.sh)` };
    return cached;
  }
  try {
    const req = createRequire(import.meta.url);
    cached = { binding: req(path) as NativeBinding, error: null };
  } catch (e) {
    cached = { binding: null, error: `native addon failed to load: ${(e as Error).message.split('\n')[0] ?? ''}` };
  }
  return cached;
}
