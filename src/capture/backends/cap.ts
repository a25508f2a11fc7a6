/**
 * `cap`: the cap module in immediate mode (a wakeup per packet), always promiscuous, no kernel
 * drop counters (pcap_stats is not exposed).
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { linkTypeFromName } from '../batch.js';
import type { CaptureBackendDef, WorkerConfig, WorkerSink } from './shape.js';

const require = createRequire(import.meta.url);

interface CapSession {
  open(dev: string, filter: string, bufferSize: number, buf: Buffer): string;
  on(ev: 'packet', cb: (nbytes: number, truncated: boolean) => void): void;
  close(): void;
}

export const capBackend: CaptureBackendDef<'cap'> = {
  name: 'cap',
  label: 'cap',
  description: 'cap: immediate mode, always promiscuous, no kernel drop counts',
  kernelStats: false,
  open(cfg: WorkerConfig, sink: WorkerSink) {
    const { Cap } = require('cap') as { Cap: new () => CapSession };
    const c = new Cap();
    const buf = Buffer.alloc(cfg.snaplen);
    const linkName = c.open(cfg.iface, cfg.filter, cfg.bufferSize, buf);
    let scheduled = false;
    const base = performance.timeOrigin * 1000;
    c.on('packet', (nbytes: number, truncated: boolean) => {
      sink.add(buf, nbytes, truncated ? nbytes + 1 : nbytes, Math.floor(base + performance.now() * 1000));
      // immediate mode wakes us per packet: batch over a few ms instead of per wakeup
      if (!scheduled) {
        scheduled = true;
        setTimeout(() => {
          scheduled = false;
          sink.flush();
        }, 5);
      }
    });
    return {
      linkType: linkTypeFromName(linkName),
      stopDelayMs: 10,
      stats: () => ({ psRecv: -1, drop: -1, ifdrop: -1 }),
      close: () => c.close(),
    };
  },
};
