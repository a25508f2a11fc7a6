/**
 * Loads journey's own capture addon (native-bindings/capture: libpcap → whole batches, already in
 * the worker pipe's BATCH framing). Context-aware N-API: any number of worker_threads may load it.
 *
 * Where: `JOURNEY_CAPTURE_NATIVE` = `off` (never use it: the `pcap` backend is used instead), or
 * a path to a `.node` file; otherwise native-bindings/capture/build/Release/journey_capture.node
 * found from this module (sources or dist). `loadCaptureAddon()` never throws: it returns the
 * addon or the reason it is not there, once per process (cached).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeOpenOptions {
  snaplen: number;
  bufferSize: number;
  /** TPACKET_V3 block timeout (pcap_set_timeout), ms. */
  timeoutMs: number;
  promisc: boolean;
  immediate?: boolean;
  filter: string;
  /** First byte of each BATCH message (protocol.ts MSG_BATCH, or MSG_BATCH_FOLDED with `fold`). */
  msgType: number;
  /** Fold runs of one IPv4 TCP/UDP tuple's packets into one entry (the message's layout then has three more columns). */
  fold?: boolean;
}

export interface NativeOpened {
  handle: NativeHandle;
  /** LINKTYPE_* number (as pcap files carry it). */
  linkType: number;
  dlt: number;
  linkName: string | null;
  /** pcap_activate's warning (e.g. promiscuous mode not supported), or null. */
  warning: string | null;
}

export interface NativeBatch {
  /**
   * A complete BATCH message of protocol.ts (length, type, columns, frames) in a new Buffer; null
   * when empty or when it was written into the caller's `out` buffer (then `length` bytes of it).
   */
  data: Buffer | null;
  /** Bytes of the message (0 when empty). */
  length: number;
  /** nextBatchSync with an fd: bytes of the message already written there. */
  written: number;
  /** Packets taken from libpcap. */
  count: number;
  /** Entries of the message (fewer than `count` when runs were folded). */
  entries: number;
  /** Runs still held by the addon (folding): their packets were counted in `count` already, they come in a later message. */
  open: number;
  bytes: number;
  /** pcap_stats after this drain (-1 when unavailable). */
  psRecv: number;
  psDrop: number;
  psIfdrop: number;
  /** Capture failed (interface gone or down): the frames before it are still in `data`. */
  error: string | null;
}

declare const nativeHandle: unique symbol;
export type NativeHandle = { readonly [nativeHandle]: true };

export interface CaptureAddon {
  open(device: string, opts: NativeOpenOptions): NativeOpened;
  /** A pcap/pcapng file through the same batching (tests of the framing without root). */
  openOffline(path: string, opts: { filter?: string; msgType: number; fold?: boolean }): NativeOpened;
  /** Drains in the libuv thread pool (for worker_threads or a busy event loop). */
  nextBatch(h: NativeHandle, maxFrames: number, maxBytes: number, waitMs: number, out?: Buffer): Promise<NativeBatch>;
  /**
   * The same on the calling thread, which it blocks for at most waitMs (a capture worker process).
   * With `out` and `fd`, the message is also written to fd (non-blocking): `written` bytes went.
   */
  nextBatchSync(h: NativeHandle, maxFrames: number, maxBytes: number, waitMs: number, out?: Buffer, fd?: number): NativeBatch;
  /**
   * The hot path of a worker: no result object. `info` (Float64Array(8), up to 10) receives [count, length,
   * written, psRecv, psDrop, psIfdrop, bytes, failed(, entries(, open runs))]; returns the message only when it did not
   * fit `out` (else null); the error text of a failed call is lastError(h).
   */
  nextBatchSync(
    h: NativeHandle,
    maxFrames: number,
    maxBytes: number,
    waitMs: number,
    out: Buffer,
    fd: number | null,
    info: Float64Array,
  ): Buffer | null;
  lastError(h: NativeHandle): string | null;
  /** A close-on-exec AF_UNIX stream pair [parentFd, childFd] (the worker pipe). */
  socketPair(): [number, number];
  /** F_SETPIPE_SZ (a socketpair: SO_SNDBUF): the new capacity, or -errno. */
  setPipeSize(fd: number, bytes: number): number;
  stats(h: NativeHandle): { psRecv: number; psDrop: number; psIfdrop: number } | null;
  wake(h: NativeHandle): void;
  /** Folding: the next call hands over every run it still holds (before the worker stops). */
  foldFlush(h: NativeHandle): void;
  close(h: NativeHandle): void;
  libVersion(): string;
}

export type AddonLoad = { ok: true; addon: CaptureAddon; path: string } | { ok: false; reason: string };

const ADDON_REL = 'native-bindings/capture/build/Release/journey_capture.node';

/** Where the addon should be (or why it is turned off). */
export function captureAddonPath(env: NodeJS.ProcessEnv = process.env): { path: string } | { off: string } {
  const v = env['JOURNEY_CAPTURE_NATIVE'];
  if (v !== undefined && v !== '') {
    if (/^(off|0|no|false)$/i.test(v)) return { off: 'turned off by JOURNEY_CAPTURE_NATIVE=off' };
    return { path: resolve(v) };
  }
  // src/capture or dist/src/capture: the repository root is 2 or 3 levels up
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '../..', ADDON_REL), join(here, '../../..', ADDON_REL)];
  return { path: candidates.find((c) => existsSync(c)) ?? (candidates[0] as string) };
}

let cached: AddonLoad | undefined;

/** The addon, or why not (cached for the process; `fresh` re-reads the environment). */
export function loadCaptureAddon(fresh = false): AddonLoad {
  if (cached !== undefined && !fresh) return cached;
  const where = captureAddonPath();
  let r: AddonLoad;
  if ('off' in where) r = { ok: false, reason: where.off };
  else if (!existsSync(where.path)) r = { ok: false, reason: `${where.path} is not built (run native-bindings/capture/build.sh or scripts/setup)` };
  else {
    try {
      const addon = createRequire(import.meta.url)(where.path) as CaptureAddon;
      if (typeof addon.nextBatch !== 'function' || typeof addon.open !== 'function')
        r = { ok: false, reason: `${where.path} is not journey's capture addon` };
      else r = { ok: true, addon, path: where.path };
    } catch (e) {
      r = { ok: false, reason: `${where.path} does not load: ${(e as Error).message.split('\n')[0] ?? ''}` };
    }
  }
  cached = r;
  return r;
}
