/**
 * A capture worker: one child process per interface (started by worker.ts, possibly through
 * `nsenter --net=…` so that it captures inside a network namespace). It opens the interface with
 * the declared backend it was given (backends/registry.ts) and writes each batch to fd 3 in the
 * binary framing of protocol.ts. The pipe write is asynchronous: when the main process falls
 * behind by more than `maxQueueBytes`, whole batches are dropped and counted (ownDropped) —
 * capture itself never waits. Control: "stop\n" on stdin (or stdin closed).
 */
import { Socket } from 'node:net';
import { captureBackend } from './backends/registry.js';
import type { KernelCounts, OpenedCapture, WorkerConfig, WorkerSink } from './backends/shape.js';
import { MSG_ERROR, MSG_HELLO, MSG_STATS, encodeBatch, encodeJson, type WorkerErrorMessage, type WorkerStatsMessage } from './protocol.js';

export type { WorkerConfig } from './backends/shape.js';

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
  const out = new Socket({ fd: 3, readable: false, writable: true });
  out.on('error', () => process.exit(0)); // the main process went away
  const send = (b: Buffer): void => {
    out.write(b);
  };
  let sendStats: () => void = () => {
    // replaced once the capture is open
  };
  const fail = (phase: WorkerErrorMessage['phase'], message: string, code = 2): void => {
    sendStats();
    send(encodeJson(MSG_ERROR, { phase, message } satisfies WorkerErrorMessage));
    out.end(() => process.exit(code));
    setTimeout(() => process.exit(code), 500).unref();
  };

  // batch columns of the backends that hand over frames one by one
  const maxFrames = cfg.batchFrames;
  const times = new Float64Array(maxFrames);
  const lens = new Uint32Array(maxFrames);
  const wires = new Uint32Array(maxFrames);
  let data = Buffer.allocUnsafe(cfg.batchBytes);
  let count = 0;
  let used = 0;
  const counters = { received: 0, ownDropped: 0, batches: 0 };

  const flush = (): void => {
    if (count === 0) return;
    const n = count;
    count = 0;
    const dataLen = used;
    used = 0;
    if (out.writableLength > cfg.maxQueueBytes) {
      counters.ownDropped += n;
      return;
    }
    const msg = encodeBatch(n, times, lens, wires, data, dataLen);
    counters.batches++;
    send(msg);
  };

  const add = (src: Buffer, capLen: number, wireLen: number, timeUs: number): void => {
    if (used + capLen > data.length) {
      flush();
      if (capLen > data.length) data = Buffer.allocUnsafe(capLen * 2);
    }
    src.copy(data, used, 0, capLen);
    times[count] = timeUs;
    lens[count] = capLen;
    wires[count] = wireLen;
    used += capLen;
    counters.received++;
    if (++count === maxFrames) flush();
  };

  const sink: WorkerSink = { add, flush, fail, out, counters };
  let cap: OpenedCapture;
  try {
    cap = captureBackend(cfg.backend).open(cfg, sink);
  } catch (e) {
    const msg = (e as Error).message || String(e);
    fail('open', `cannot capture on ${cfg.iface}: ${msg}`);
    return;
  }

  send(encodeJson(MSG_HELLO, { iface: cfg.iface, linkType: cap.linkType, backend: cfg.backend, pid: process.pid, snaplen: cfg.snaplen }));

  const stats = (): void => {
    let k: KernelCounts = { psRecv: -1, drop: -1, ifdrop: -1 };
    try {
      k = cap.stats();
    } catch {
      // the capture is closed (interface gone): the counters are unknown, said as -1
    }
    const cpu = process.cpuUsage();
    send(
      encodeJson(MSG_STATS, {
        received: counters.received,
        psRecv: k.psRecv,
        kernelDropped: k.drop,
        ifDropped: k.ifdrop,
        ownDropped: counters.ownDropped,
        batches: counters.batches,
        cpuUserUs: cpu.user,
        cpuSystemUs: cpu.system,
      } satisfies WorkerStatsMessage),
    );
  };
  sendStats = stats;
  const timer = setInterval(stats, cfg.statsIntervalMs);

  let stopping = false;
  let stopAt = 0;
  const finish = (): void => {
    clearInterval(timer);
    cap.drain?.();
    flush();
    stats();
    cap.close();
    // exits once the main process has read everything queued for it (it kills a worker that hangs)
    out.end(() => process.exit(0));
  };
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // the block being filled is handed to us only when it retires (buffer timeout): wait for it
    stopAt = Date.now() + cfg.bufferTimeoutMs + 30;
    // a backend with its own loop keeps draining until stopAt, then calls finish
    if (!cap.run) setTimeout(finish, cap.stopDelayMs);
  };
  process.stdin.on('data', (d: Buffer) => {
    if (d.toString().includes('stop')) stop();
  });
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', () => {
    // Ctrl-C reaches the whole process group: the main process decides when this worker stops
  });

  cap.run?.({ stopping: () => stopping, stopAt: () => stopAt, finish });
}

main();
