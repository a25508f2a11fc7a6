/**
 * Where the pipeline's frames come from, behind one interface (FrameSource):
 * - replay: pcap/pcapng files through capture/pcap-file.ts (engineer C1's reader);
 * - live: engineer C1's capture workers (src/capture/live.js) when that module is present, else a
 *   fallback that runs one `tcpdump -U -w -` per interface (in the namespace, filter compiled by
 *   libpcap) and reads its pcap stream. The fallback is correct but slower; the pipeline says
 *   which one runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { inNetns } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import type { CaptureStats, FrameBatch } from '../model/observation.js';
import { readCaptureFiles } from '../capture/pcap-file.js';
import { BatchBuilder } from '../capture/batch.js';
import type { LiveCaptureOptions } from '../capture/live.js';

export interface FrameSource {
  readonly kind: string;
  /** Starts delivering batches; resolves when capture is running (live) or finished (replay). */
  start(onBatch: (b: FrameBatch) => void, onError: (e: Error) => void): Promise<void>;
  /** Interfaces added after the start (a new Docker network); no-op for replays. */
  addInterface?(iface: string): void;
  stats(): CaptureStats[];
  stop(): Promise<void>;
}

/** One declaration of the live capture options: the capture workers' (src/capture/live.ts). */
export type { LiveCaptureOptions };

/** Replays capture files (merged by time). */
export class ReplaySource implements FrameSource {
  readonly kind = 'replay';
  private readonly received = new Map<string, number>();
  private readonly skipped: Record<string, number> = {};
  private stopped = false;
  constructor(private readonly files: readonly string[]) {}

  async start(onBatch: (b: FrameBatch) => void): Promise<void> {
    for await (const b of readCaptureFiles(this.files, { skipped: this.skipped })) {
      if (this.stopped) break;
      this.received.set(b.iface, (this.received.get(b.iface) ?? 0) + b.count);
      onBatch(b);
      // let timers (stats, stop) run between batches
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  stats(): CaptureStats[] {
    return [...this.received].map(([iface, n]) => ({
      iface,
      received: n,
      kernelDropped: 0,
      ifDropped: 0,
      ownDropped: 0,
      skipped: { ...this.skipped },
    }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }
}

/** Streaming reader of a classic pcap byte stream (what `tcpdump -w -` writes). */
export class PcapStreamParser {
  private buf: Buffer = Buffer.alloc(0);
  private le = true;
  private nano = false;
  linkType = -1;
  private headerDone = false;
  malformed = false;

  constructor(private readonly onRecord: (data: Buffer, capLen: number, wireLen: number, timeUs: number) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    let o = 0;
    if (!this.headerDone) {
      if (this.buf.length < 24) return;
      const m = this.buf.readUInt32LE(0);
      if (m === 0xa1b2c3d4 || m === 0xa1b23c4d) this.le = true;
      else if (m === 0xd4c3b2a1 || m === 0x4d3cb2a1) this.le = false;
      else {
        this.malformed = true;
        this.buf = Buffer.alloc(0);
        return;
      }
      this.nano = m === 0xa1b23c4d || m === 0x4d3cb2a1;
      this.linkType = (this.le ? this.buf.readUInt32LE(20) : this.buf.readUInt32BE(20)) & 0xffff;
      this.headerDone = true;
      o = 24;
    }
    const rd = (p: number): number => (this.le ? this.buf.readUInt32LE(p) : this.buf.readUInt32BE(p));
    while (this.buf.length - o >= 16) {
      const sec = rd(o);
      const frac = rd(o + 4);
      const capLen = rd(o + 8);
      const wireLen = rd(o + 12);
      if (capLen > 1 << 20) {
        this.malformed = true;
        this.buf = Buffer.alloc(0);
        return;
      }
      if (this.buf.length - o - 16 < capLen) break;
      this.onRecord(this.buf.subarray(o + 16, o + 16 + capLen), capLen, wireLen, sec * 1e6 + (this.nano ? Math.floor(frac / 1000) : frac));
      o += 16 + capLen;
    }
    this.buf = o >= this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(o));
  }
}

interface TcpdumpIface {
  iface: string;
  child: ChildProcess;
  builder: BatchBuilder | null;
  received: number;
  kernelDropped: number;
  timer: NodeJS.Timeout | null;
  stopped: boolean;
}

/** Live fallback: one tcpdump per interface, frames batched (flushed every 20 ms or 512 frames). */
export class TcpdumpSource implements FrameSource {
  readonly kind = 'tcpdump';
  private readonly ifaces = new Map<string, TcpdumpIface>();
  private onBatch: ((b: FrameBatch) => void) | null = null;
  private onError: ((e: Error) => void) | null = null;
  private readonly gone = new Map<string, CaptureStats>();
  constructor(private readonly opts: LiveCaptureOptions) {}

  async start(onBatch: (b: FrameBatch) => void, onError: (e: Error) => void): Promise<void> {
    this.onBatch = onBatch;
    this.onError = onError;
    if (this.opts.interfaces.length === 0) throw new JourneyError('E_CAPTURE', 'no interface to capture on (give -i IFACE)');
    await Promise.all(this.opts.interfaces.map((i) => this.open(i)));
  }

  addInterface(iface: string): void {
    if (!this.ifaces.has(iface)) this.open(iface).catch((e: unknown) => this.onError?.(e as Error));
  }

  private open(iface: string): Promise<void> {
    const argv = [
      'tcpdump',
      '-i',
      iface,
      '-U',
      '-w',
      '-',
      '-n',
      '-s',
      String(this.opts.snaplen ?? 262144),
      '-B',
      String((this.opts.bufferSizeMiB ?? 8) * 1024),
    ];
    if (this.opts.promisc !== true) argv.push('-p');
    if (this.opts.filter !== undefined && this.opts.filter !== '') argv.push(this.opts.filter);
    const [cmd, ...args] = inNetns(argv, this.opts.netns);
    const child = spawn(cmd ?? 'tcpdump', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const st: TcpdumpIface = { iface, child, builder: null, received: 0, kernelDropped: 0, timer: null, stopped: false };
    this.ifaces.set(iface, st);
    const flush = (): void => {
      st.timer = null;
      if (st.builder && st.builder.count > 0) this.onBatch?.(st.builder.take());
    };
    const parser = new PcapStreamParser((data, capLen, wireLen, timeUs) => {
      if (!st.builder) st.builder = new BatchBuilder(iface, parser.linkType, 512, 512 * 1024);
      if (st.builder.wouldOverflow(capLen)) flush();
      st.builder.push(data, 0, capLen, wireLen, timeUs);
      st.received++;
      if (st.timer === null) st.timer = setTimeout(flush, 20);
    });
    child.stdout?.on('data', (c: Buffer) => parser.push(c));
    let errText = '';
    createInterface({ input: child.stderr! }).on('line', (l) => {
      const m = /(\d+) packets? dropped by kernel/.exec(l);
      if (m) st.kernelDropped = Number(m[1]);
      else if (!/listening on|packets? (captured|received by filter)/.test(l)) errText += `${l}\n`;
    });
    return new Promise<void>((resolve, reject) => {
      let started = false;
      child.once('spawn', () => {
        // tcpdump writes the pcap header once the capture is open
        const t = setTimeout(() => {
          started = true;
          resolve();
        }, 300);
        child.stdout?.once('data', () => {
          clearTimeout(t);
          started = true;
          resolve();
        });
      });
      child.once('error', (e: NodeJS.ErrnoException) => {
        this.ifaces.delete(iface);
        reject(e.code === 'ENOENT' ? new JourneyError('E_TOOL_MISSING', 'tcpdump is not installed (run scripts/setup)') : e);
      });
      child.once('exit', (code) => {
        flush();
        this.ifaces.delete(iface);
        this.gone.set(iface, { iface, received: st.received, kernelDropped: st.kernelDropped, ifDropped: 0, ownDropped: 0, skipped: {} });
        if (st.stopped) return;
        const err = new JourneyError(
          'E_CAPTURE',
          `capture on ${iface} ended (tcpdump exit ${code ?? '?'}: ${errText.trim().split('\n').pop() ?? ''})`,
          { iface },
        );
        if (!started) reject(err);
        // a Ctrl-C reaches the whole process group: wait a moment before calling it a failure
        else setTimeout(() => !this.stopping && this.onError?.(err), 500).unref();
      });
    });
  }

  stats(): CaptureStats[] {
    const live = [...this.ifaces.values()].map((s) => ({
      iface: s.iface,
      received: s.received,
      kernelDropped: s.kernelDropped,
      ifDropped: 0,
      ownDropped: 0,
      skipped: {},
    }));
    return [...live, ...[...this.gone.values()].filter((g) => !this.ifaces.has(g.iface))];
  }

  private stopping = false;

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.ifaces.values()].map(
        (s) =>
          new Promise<void>((r) => {
            s.stopped = true;
            if (s.child.exitCode !== null) return r();
            const t = setTimeout(() => {
              s.child.kill('SIGKILL');
              r();
            }, 1500);
            s.child.once('exit', () => {
              clearTimeout(t);
              r();
            });
            s.child.kill('SIGINT'); // tcpdump prints its drop counts on SIGINT
          }),
      ),
    );
  }
}

type LiveModule = { createLiveCapture?: (o: LiveCaptureOptions) => FrameSource | Promise<FrameSource> };

/** C1's capture workers when available, else the tcpdump fallback (with a notice). */
export async function openLiveSource(opts: LiveCaptureOptions): Promise<{ source: FrameSource; notice: string | null }> {
  try {
    const spec = '../capture/live.js';
    const mod = (await import(spec)) as LiveModule;
    if (typeof mod.createLiveCapture === 'function') return { source: await mod.createLiveCapture(opts), notice: null };
  } catch {
    /* not built yet */
  }
  return { source: new TcpdumpSource(opts), notice: 'capture: libpcap workers unavailable; capturing through tcpdump (slower)' };
}
