/**
 * A capture worker: one child process per interface (started by worker.ts, possibly through
 * `nsenter --net=…` so that it captures inside a network namespace). It opens the interface with
 * journey's own addon (`native`: libpcap TPACKET_V3; the addon drains the ring in the thread pool
 * and returns each batch already framed as a BATCH message, so no JavaScript runs per packet),
 * node-pcap (`pcap`: TPACKET_V3, a JS callback per packet) or cap (`cap`: immediate mode), and
 * writes each batch to fd 3 in the binary framing of protocol.ts. The pipe write is asynchronous:
 * when the main process falls behind by more than `maxQueueBytes`, whole batches are dropped and
 * counted (ownDropped) — capture itself never waits. Control: "stop\n" on stdin (or stdin closed).
 */
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadCaptureAddon, type CaptureAddon, type NativeHandle } from './native-addon.js';
import {
  MSG_BATCH,
  MSG_ERROR,
  MSG_HELLO,
  MSG_STATS,
  encodeBatch,
  encodeJson,
  type HelloMessage,
  type WorkerErrorMessage,
  type WorkerStatsMessage,
} from './protocol.js';
import { linkTypeFromName } from './batch.js';

export interface WorkerConfig {
  iface: string;
  backend: 'native' | 'pcap' | 'cap';
  filter: string;
  snaplen: number;
  bufferSize: number;
  bufferTimeoutMs: number;
  promiscuous: boolean;
  statsIntervalMs: number;
  maxQueueBytes: number;
  /** Frames per batch and bytes per batch before a forced flush. */
  batchFrames: number;
  batchBytes: number;
}

const require = createRequire(import.meta.url);

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
  const out = new Socket({ fd: 3, readable: false, writable: true });
  out.on('error', () => process.exit(0)); // the main process went away
  const send = (b: Buffer): void => {
    out.write(b);
  };
  let sendStats: () => void = () => {};
  const fail = (phase: WorkerErrorMessage['phase'], message: string, code = 2): void => {
    sendStats();
    send(encodeJson(MSG_ERROR, { phase, message } satisfies WorkerErrorMessage));
    out.end(() => process.exit(code));
    setTimeout(() => process.exit(code), 500).unref();
  };

  // batch columns
  const maxFrames = cfg.batchFrames;
  const times = new Float64Array(maxFrames);
  const lens = new Uint32Array(maxFrames);
  const wires = new Uint32Array(maxFrames);
  let data = Buffer.allocUnsafe(cfg.batchBytes);
  let count = 0;
  let used = 0;
  let received = 0;
  let ownDropped = 0;
  let batches = 0;

  const flush = (): void => {
    if (count === 0) return;
    const n = count;
    count = 0;
    const dataLen = used;
    used = 0;
    if (out.writableLength > cfg.maxQueueBytes) {
      ownDropped += n;
      return;
    }
    const msg = encodeBatch(n, times, lens, wires, data, dataLen);
    batches++;
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
    received++;
    if (++count === maxFrames) flush();
  };

  let statsFn: () => { psRecv: number; drop: number; ifdrop: number } = () => ({ psRecv: -1, drop: -1, ifdrop: -1 });
  let closeFn: () => void = () => {};
  let drain: () => void = () => {};
  let linkName = '';
  let linkType: number | undefined;
  let native: { addon: CaptureAddon; h: NativeHandle } | undefined;

  try {
    if (cfg.backend === 'native') {
      const l = loadCaptureAddon();
      if (!l.ok) throw new Error(`native capture addon unavailable: ${l.reason}`);
      const o = l.addon.open(cfg.iface, {
        snaplen: cfg.snaplen,
        bufferSize: cfg.bufferSize,
        timeoutMs: cfg.bufferTimeoutMs,
        promisc: cfg.promiscuous,
        filter: cfg.filter,
        msgType: MSG_BATCH,
      });
      native = { addon: l.addon, h: o.handle };
      linkType = o.linkType;
      linkName = o.linkName ?? '';
    } else if (cfg.backend === 'cap') {
      // cap: immediate mode (a wakeup per packet), always promiscuous, no pcap_stats
      const { Cap } = require('cap') as { Cap: new () => CapSession };
      const c = new Cap();
      const buf = Buffer.alloc(cfg.snaplen);
      linkName = c.open(cfg.iface, cfg.filter, cfg.bufferSize, buf);
      let scheduled = false;
      const base = performance.timeOrigin * 1000;
      c.on('packet', (nbytes: number, truncated: boolean) => {
        add(buf, nbytes, truncated ? nbytes + 1 : nbytes, Math.floor(base + performance.now() * 1000));
        // immediate mode wakes us per packet: batch over a few ms instead of per wakeup
        if (!scheduled) {
          scheduled = true;
          setTimeout(() => {
            scheduled = false;
            flush();
          }, 5);
        }
      });
      closeFn = () => c.close();
    } else {
      const pcapDir = dirname(require.resolve('pcap/package.json'));
      const binding = require(join(pcapDir, 'build/Release/pcap_binding.node')) as { PcapSession: new () => PcapBinding };
      const s = new binding.PcapSession();
      const buf = Buffer.alloc(cfg.snaplen);
      const hdrBuf = Buffer.alloc(16);
      const hdr = new Uint32Array(hdrBuf.buffer, hdrBuf.byteOffset, 4);
      const onPacket = (): void => {
        add(buf, hdr[2] as number, hdr[3] as number, (hdr[0] as number) * 1e6 + (hdr[1] as number));
      };
      const warnings: string[] = [];
      linkName = s.open_live(
        cfg.iface,
        cfg.filter,
        cfg.bufferSize,
        cfg.snaplen,
        '',
        onPacket,
        false,
        cfg.bufferTimeoutMs,
        (w: string) => warnings.push(w),
        cfg.promiscuous,
      );
      let failed = false;
      s.read_callback = () => {
        const r = s.dispatch(buf, hdrBuf);
        flush();
        if (r < 0 && !failed) {
          failed = true;
          fail('read', `capture on ${cfg.iface} stopped: the interface went down or disappeared`, 3);
        }
      };
      s.start_polling();
      drain = () => {
        if (!failed) s.dispatch(buf, hdrBuf);
      };
      statsFn = () => {
        const st = s.stats();
        return { psRecv: st.ps_recv >>> 0, drop: st.ps_drop >>> 0, ifdrop: st.ps_ifdrop >>> 0 };
      };
      closeFn = () => {
        try {
          s.close();
        } catch {
          /* already closed */
        }
      };
    }
  } catch (e) {
    const msg = (e as Error).message || String(e);
    fail('open', `cannot capture on ${cfg.iface}: ${msg}`);
    return;
  }

  send(
    encodeJson(MSG_HELLO, {
      iface: cfg.iface,
      linkType: linkType ?? linkTypeFromName(linkName),
      backend: cfg.backend,
      pid: process.pid,
      snaplen: cfg.snaplen,
    } satisfies HelloMessage),
  );

  const stats = (): void => {
    let k = { psRecv: -1, drop: -1, ifdrop: -1 };
    try {
      k = statsFn();
    } catch {
      /* closed */
    }
    const cpu = process.cpuUsage();
    send(
      encodeJson(MSG_STATS, {
        received,
        psRecv: k.psRecv,
        kernelDropped: k.drop,
        ifDropped: k.ifdrop,
        ownDropped,
        batches,
        cpuUserUs: cpu.user,
        cpuSystemUs: cpu.system,
      } satisfies WorkerStatsMessage),
    );
  };
  sendStats = stats;
  const timer = setInterval(stats, cfg.statsIntervalMs);

  let stopping = false;
  let stopAt = 0;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // the block being filled is handed to us only when it retires (buffer timeout): wait for it
    stopAt = Date.now() + cfg.bufferTimeoutMs + 30;
    // native: the drain loop below keeps draining until stopAt, then finishes
    if (!native) setTimeout(finish, cfg.backend === 'pcap' ? cfg.bufferTimeoutMs + 30 : 10);
  };
  const finish = (): void => {
    clearInterval(timer);
    drain();
    flush();
    stats();
    closeFn();
    out.end(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.stdin.on('data', (d: Buffer) => {
    if (d.toString().includes('stop')) stop();
  });
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', () => {}); // Ctrl-C reaches the whole process group: the main process decides

  if (native) {
    const { addon, h } = native;
    let last = { psRecv: -1, drop: -1, ifdrop: -1 };
    statsFn = () => {
      const s = addon.stats(h);
      if (s) last = { psRecv: s.psRecv, drop: s.psDrop, ifdrop: s.psIfdrop };
      return last;
    };
    closeFn = () => addon.close(h);
    // a 1 MiB pipe (node's stdio pipe is a socketpair: its send buffer): a whole batch usually
    // goes to the kernel in one write, without waiting for the reader
    addon.setPipeSize(3, 1 << 20);
    // message buffers, reused once the pipe has taken them: no allocation (and no fresh pages) per batch
    const size = 13 + 16 * maxFrames + cfg.batchBytes + 65536;
    const free: Buffer[] = [];
    const take = (): Buffer => free.pop() ?? Buffer.allocUnsafeSlow(size);
    const info = new Float64Array(8);
    const give = (b: Buffer): void => {
      if (free.length < 4) free.push(b);
    };
    // The drain runs on this thread (nextBatchSync): a worker process has nothing else to do, and
    // it saves the thread-pool hand-offs of nextBatch (measured: about half the CPU per packet);
    // the addon also writes the batch to the pipe itself (no JS stream work per batch). Each call
    // blocks at most 100 ms; between calls the event loop reads "stop" from stdin and sends
    // statistics. While bytes wait for the pipe (the main process is behind), the drain runs in
    // the thread pool instead (nextBatch) and batches go through the socket's queue, so that the
    // event loop keeps writing as fast as the reader takes, and drops are counted past maxQueueBytes.
    const step = async (): Promise<void> => {
      const wait = stopping ? Math.max(0, stopAt - Date.now()) : 100;
      const buf = take();
      // nothing queued on the pipe: drain here and let the addon write the batch to fd 3 itself
      const direct = out.writableLength === 0;
      let count: number;
      let length: number;
      let written = 0;
      let data: Buffer | null;
      let error: string | null = null;
      try {
        if (direct) {
          data = addon.nextBatchSync(h, maxFrames, cfg.batchBytes, wait, buf, 3, info);
          count = info[0] as number;
          length = info[1] as number;
          written = info[2] as number;
          if ((info[3] as number) >= 0) last = { psRecv: info[3] as number, drop: info[4] as number, ifdrop: info[5] as number };
          if (info[7] === 1) error = addon.lastError(h) ?? 'capture failed';
        } else {
          const r = await addon.nextBatch(h, maxFrames, cfg.batchBytes, wait, buf);
          ({ count, length, data, error } = r);
          if (r.psRecv >= 0) last = { psRecv: r.psRecv, drop: r.psDrop, ifdrop: r.psIfdrop };
        }
      } catch (e) {
        fail('internal', `native capture on ${cfg.iface}: ${(e as Error).message}`);
        return;
      }
      let kept = false;
      if (count > 0) {
        received += count;
        if (!direct && out.writableLength > cfg.maxQueueBytes) ownDropped += count;
        else {
          batches++;
          // already a BATCH message (protocol.ts): passed through as is
          if (data !== null) out.write(data);
          else if (written < length) {
            // the pipe took part of it (or nothing): the rest is queued, in order
            kept = true;
            out.write(buf.subarray(written, length), () => give(buf));
          }
        }
      }
      if (!kept) give(buf);
      if (error !== null) {
        fail('read', `capture on ${cfg.iface} stopped: the interface went down or disappeared (${error})`, 3);
        return;
      }
      if (stopping && Date.now() >= stopAt && count < maxFrames) {
        finish();
        return;
      }
      setImmediate(() => void step());
    };
    setImmediate(() => void step());
  }
}

interface PcapBinding {
  open_live(
    dev: string,
    filter: string,
    bufferSize: number,
    snaplen: number,
    outfile: string,
    onPacket: () => void,
    monitor: boolean,
    timeoutMs: number,
    warn: (w: string) => void,
    promisc: boolean,
  ): string;
  dispatch(buf: Buffer, hdr: Buffer): number;
  start_polling(): void;
  close(): void;
  stats(): { ps_recv: number; ps_drop: number; ps_ifdrop: number };
  read_callback?: () => void;
}

interface CapSession {
  open(dev: string, filter: string, bufferSize: number, buf: Buffer): string;
  on(ev: 'packet', cb: (nbytes: number, truncated: boolean) => void): void;
  close(): void;
}

main();
