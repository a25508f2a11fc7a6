/**
 * `native` (the default): journey's own addon, native-bindings/capture (C, libpcap TPACKET_V3 with a
 * block timeout, context-aware N-API). The worker drains the ring on its own thread and the addon
 * packs every frame into ONE BATCH message of protocol.ts and writes it to the pipe itself: no
 * JavaScript per packet, nothing allocated per batch. Falls back to `pcap` (announced) when the
 * addon is not built, does not load or is turned off (JOURNEY_CAPTURE_NATIVE=off).
 */
import { loadCaptureAddon } from '../native-addon.js';
import { MSG_BATCH, MSG_BATCH_FOLDED, packetsInBatch } from '../protocol.js';
import type { CaptureBackendDef, KernelCounts, RunControl, WorkerConfig, WorkerSink } from './shape.js';

/** No message buffer: nextBatchSync then returns the batch as a Buffer of its own. */
const NO_OUT = Buffer.alloc(0);

export const nativeBackend: CaptureBackendDef<'native'> = {
  name: 'native',
  label: "journey's capture addon",
  description: "journey's libpcap addon: whole batches packed in C, no JavaScript per packet",
  kernelStats: true,
  fallback: 'pcap',
  unavailable() {
    const l = loadCaptureAddon();
    return l.ok ? null : `native capture addon unavailable (${l.reason})`;
  },
  open(cfg: WorkerConfig, sink: WorkerSink) {
    const l = loadCaptureAddon();
    if (!l.ok) throw new Error(`native capture addon unavailable: ${l.reason}`);
    const addon = l.addon;
    const o = addon.open(cfg.iface, {
      snaplen: cfg.snaplen,
      bufferSize: cfg.bufferSize,
      timeoutMs: cfg.bufferTimeoutMs,
      promisc: cfg.promiscuous,
      filter: cfg.filter,
      msgType: cfg.fold ? MSG_BATCH_FOLDED : MSG_BATCH,
      fold: cfg.fold,
    });
    const h = o.handle;
    let last: KernelCounts = { psRecv: -1, drop: -1, ifdrop: -1 };
    return {
      linkType: o.linkType,
      stopDelayMs: 0,
      stats() {
        const s = addon.stats(h);
        if (s) last = { psRecv: s.psRecv, drop: s.psDrop, ifdrop: s.psIfdrop };
        return last;
      },
      close() {
        addon.close(h);
      },
      run(ctl: RunControl) {
        const out = sink.out;
        const maxFrames = cfg.batchFrames;
        // a 1 MiB pipe (a socketpair: its send buffer): a whole batch usually goes to the kernel
        // in one write, without waiting for the reader
        addon.setPipeSize(3, 1 << 20);
        // message buffers, reused once the pipe has taken them: no allocation (and no fresh pages) per batch
        // (folded: 32 bytes of columns an entry, and the runs handed over at the end of a call)
        const size = 13 + 32 * maxFrames + cfg.batchBytes + 65536 + (cfg.fold ? 1 << 18 : 0);
        const free: Buffer[] = [];
        const take = (): Buffer => free.pop() ?? Buffer.allocUnsafeSlow(size);
        const info = new Float64Array(10);
        const give = (b: Buffer): void => {
          if (free.length < 4) free.push(b);
        };
        // The drain runs on this thread (nextBatchSync): a worker process has nothing else to do,
        // and it saves the thread-pool hand-offs of nextBatch (about half the CPU per packet); the
        // addon also writes the batch to the pipe itself. Each call blocks at most `wait` ms;
        // between calls the event loop reads "stop" from stdin and sends statistics. While bytes
        // wait for the pipe (the main process is behind), a call does not wait for the ring and
        // its batch goes through the socket's queue, so that the event loop keeps writing as fast
        // as the reader takes; past maxQueueBytes batches are dropped, counted.
        const step = (): void => {
          const wait = ctl.stopping() ? Math.max(0, ctl.stopAt() - Date.now()) : 100;
          const direct = out.writableLength === 0;
          const buf = direct ? take() : null;
          let count: number;
          let entries: number;
          let open: number;
          let length: number;
          let written: number;
          let data: Buffer | null;
          let error: string | null = null;
          try {
            // behind (bytes wait for the pipe), the batch becomes a message of its own, exactly its
            // length, that waits in the socket's queue: a reused 1 MiB buffer per queued batch mapped
            // fresh pages each time, and the worker's CPU went to page faults and GC while the main
            // process, on the same core, fell further behind. Still on this thread (a thread-pool hop
            // costs as much again) and without waiting for the ring: the event loop has to keep
            // handing the queue to the pipe.
            data = direct
              ? addon.nextBatchSync(h, maxFrames, cfg.batchBytes, wait, buf as Buffer, 3, info)
              : addon.nextBatchSync(h, maxFrames, cfg.batchBytes, 0, NO_OUT, null, info);
            count = info[0] as number;
            entries = info[8] as number;
            open = info[9] as number;
            length = info[1] as number;
            written = info[2] as number;
            if ((info[3] as number) >= 0) last = { psRecv: info[3] as number, drop: info[4] as number, ifdrop: info[5] as number };
            if (info[7] === 1) error = addon.lastError(h) ?? 'capture failed';
          } catch (e) {
            sink.fail('internal', `native capture on ${cfg.iface}: ${(e as Error).message}`);
            return;
          }
          let kept = false;
          // packets taken from the ring (count) and the message's entries differ when folding: a
          // call may take packets into runs and send nothing, or send runs and take nothing
          sink.counters.received += count;
          if (entries > 0) {
            if (!direct && out.writableLength > cfg.maxQueueBytes) sink.counters.ownDropped += packetsInBatch(data);
            else {
              sink.counters.batches++;
              // already a BATCH message (protocol.ts): passed through as is
              if (data !== null) out.write(data);
              else if (buf !== null && written < length) {
                // the pipe took part of it (or nothing): the rest is queued, in order
                kept = true;
                out.write(buf.subarray(written, length), () => give(buf));
              }
            }
          }
          if (buf !== null && !kept) give(buf);
          if (error !== null) {
            sink.fail('read', `capture on ${cfg.iface} stopped: the interface went down or disappeared (${error})`, 3);
            return;
          }
          if (ctl.stopping() && Date.now() >= ctl.stopAt() && entries < maxFrames) {
            if (open > 0) {
              // runs the addon still holds: the next call hands them over, then the worker stops
              addon.foldFlush(h);
              setImmediate(step);
              return;
            }
            ctl.finish();
            return;
          }
          // behind with the ring empty: look again in a millisecond rather than spin
          if (!direct && count === 0) setTimeout(step, 1);
          else setImmediate(step);
        };
        setImmediate(step);
      },
    };
  },
};
