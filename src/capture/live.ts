/**
 * The capture workers of capture.ts as the pipeline's live frame source (start/stats/stop/addInterface).
 */
import { JourneyError } from '../model/errors.js';
import type { CaptureStats, FrameBatch } from '../model/observation.js';
import { DEFAULT_CAPTURE_BACKEND, type CaptureBackend } from './backends/registry.js';
import { startCapture, type CaptureHandle } from './capture.js';

export interface LiveCaptureOptions {
  readonly netns?: string;
  /** Names/globs; empty = auto (docker0, br-*, the uplink). */
  readonly interfaces: readonly string[];
  readonly filter?: string;
  readonly snaplen?: number;
  readonly bufferSizeMiB?: number;
  readonly bufferTimeoutMs?: number;
  readonly promisc?: boolean;
  readonly backend?: CaptureBackend;
  readonly write?: string;
  /** Fold runs of one connection's packets (capture-options.ts `fold`). */
  readonly fold?: boolean;
}

export interface LiveFrameSource {
  readonly kind: string;
  start(onBatch: (b: FrameBatch) => void, onError: (e: Error) => void): Promise<void>;
  addInterface(iface: string): void;
  stats(): CaptureStats[];
  stop(): Promise<void>;
  /** The underlying handle once started (events iface-up/iface-down/stats). */
  readonly handle: CaptureHandle | undefined;
}

export function createLiveCapture(opts: LiveCaptureOptions): LiveFrameSource {
  let handle: CaptureHandle | undefined;
  const extra: string[] = [];
  return {
    get kind() {
      return `capture-workers(${handle?.backend ?? opts.backend ?? DEFAULT_CAPTURE_BACKEND})`;
    },
    get handle() {
      return handle;
    },
    async start(onBatch, onError) {
      handle = await startCapture({
        interfaces: opts.interfaces,
        extraInterfaces: extra,
        ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
        ...(opts.filter !== undefined ? { filter: opts.filter } : {}),
        ...(opts.snaplen !== undefined ? { snaplen: opts.snaplen } : {}),
        ...(opts.bufferSizeMiB !== undefined ? { bufferSize: opts.bufferSizeMiB * 1024 * 1024 } : {}),
        ...(opts.bufferTimeoutMs !== undefined ? { bufferTimeoutMs: opts.bufferTimeoutMs } : {}),
        ...(opts.promisc !== undefined ? { promiscuous: opts.promisc } : {}),
        ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
        ...(opts.write !== undefined ? { write: opts.write } : {}),
        ...(opts.fold !== undefined ? { fold: opts.fold } : {}),
      });
      handle.on('batch', onBatch);
      handle.on('error', onError);
      // an interface that vanished, and one captured again after it was re-created, are said (totals are kept)
      handle.on('iface-down', (d) => {
        onError(
          new JourneyError('E_CAPTURE', `capture on ${d.iface} ended: ${d.reason} (${d.stats.received} frames captured there so far; totals kept)`, {
            iface: d.iface,
          }),
        );
      });
      handle.on('iface-up', (u) => {
        if (u.reattached)
          onError(
            new JourneyError('E_CAPTURE', `capture on ${u.iface} again: the interface was re-created (its totals continue)`, { iface: u.iface }),
          );
      });
      // the pipeline turns these into notice events; said now, while it sets up (not through the
      // handle's held 'notice' event, which would arrive after the pipeline has started)
      if (handle.fallback !== undefined) onError(new JourneyError('E_NATIVE', handle.fallback, { backend: handle.backend }));
    },
    addInterface(iface) {
      if (!extra.includes(iface)) extra.push(iface);
      handle?.setExtraInterfaces(extra);
    },
    stats() {
      return handle?.stats() ?? [];
    },
    async stop() {
      await handle?.stop();
    },
  };
}
