/**
 * conntrack-tools as a source: `conntrack -L -o extended,id` (IPv4 and IPv6) for the dump and a
 * long-running `conntrack -E -o extended,id,timestamp` for events, both in the target namespace
 * via nsenter. Events come from netlink, so nothing is missed by polling; the text format still
 * lacks the SNAT/DNAT status bits (NAT derived from the tuples). When the kernel drops events
 * (ENOBUFS) the source re-lists and emits the difference, so the table converges again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { inNetns, run } from '../host/exec.js';
import type { ConntrackEntry, ConntrackEvent, ConntrackSource } from '../model/conntrack.js';
import { JourneyError } from '../model/errors.js';
import { ListingDiff } from './diff.js';
import { parseConntrackLine, parseConntrackText } from './parse.js';

export interface ToolSourceOptions {
  readonly netns?: string;
  /** Batch events for this long before delivering them (default 10 ms). */
  readonly batchMs?: number;
  /** conntrack binary (default "conntrack"). */
  readonly binary?: string;
}

export class ToolConntrackSource implements ConntrackSource {
  readonly kind = 'conntrack-tool' as const;
  readonly limitations: readonly string[] = ['conntrack from `conntrack -E`: no SNAT/DNAT status bits (NAT derived from the tuples)'];
  private readonly opts: ToolSourceOptions;
  private child: ChildProcess | null = null;
  private stopped = false;
  private readonly diff = new ListingDiff();
  skippedLines = 0;
  resyncs = 0;

  constructor(opts: ToolSourceOptions = {}) {
    this.opts = opts;
  }

  /** True when the conntrack tool runs in the namespace (it needs nf_conntrack_netlink). */
  static async available(netns?: string): Promise<boolean> {
    try {
      const r = await run(['conntrack', '-C'], { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 5_000 });
      return r.code === 0;
    } catch {
      return false;
    }
  }

  async dump(): Promise<ConntrackEntry[]> {
    const out = await this.list();
    this.diff.baseline(out);
    return out;
  }

  private async list(): Promise<ConntrackEntry[]> {
    const bin = this.opts.binary ?? 'conntrack';
    const ns = this.opts.netns !== undefined ? { netns: this.opts.netns } : {};
    const out: ConntrackEntry[] = [];
    for (const fam of ['ipv4', 'ipv6']) {
      const r = await run([bin, '-L', '-f', fam, '-o', 'extended,id'], { ...ns, allowFailure: true, timeoutMs: 30_000 });
      if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) {
        throw new JourneyError('E_CONNTRACK', `conntrack -L -f ${fam} failed: ${r.stderr.trim().split('\n').pop() ?? ''}`);
      }
      const { lines, skipped } = parseConntrackText(r.stdout, 'conntrack-tool');
      this.skippedLines += skipped;
      for (const l of lines) out.push(l.entry);
    }
    return out;
  }

  async start(onEvents: (events: readonly ConntrackEvent[]) => void, onError: (err: Error) => void): Promise<void> {
    this.stopped = false;
    const bin = this.opts.binary ?? 'conntrack';
    const [cmd, ...args] = inNetns([bin, '-E', '-o', 'extended,id,timestamp'], this.opts.netns);
    const child = spawn(cmd ?? bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let batch: ConntrackEvent[] = [];
    let timer: NodeJS.Timeout | null = null;
    const flush = (): void => {
      timer = null;
      if (batch.length === 0 || this.stopped) return;
      const b = batch;
      batch = [];
      onEvents(b);
    };
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const p = parseConntrackLine(line, 'conntrack-tool');
      if (!p) {
        if (line.trim() !== '') this.skippedLines++;
        return;
      }
      const ev: ConntrackEvent = { type: p.event ?? 'update', time: p.timeMs ?? Date.now(), entry: p.entry };
      this.diff.track(ev);
      batch.push(ev);
      if (timer === null) timer = setTimeout(flush, this.opts.batchMs ?? 10);
    });
    const errRl = createInterface({ input: child.stderr });
    errRl.on('line', (line) => {
      if (/ENOBUFS/i.test(line)) {
        // the kernel dropped events: re-list and emit what changed
        this.resyncs++;
        // say so: events between the overflow and the re-list are lost (the table converges)
        onError(
          new JourneyError('E_CONNTRACK', `conntrack -E overflowed (ENOBUFS): events were lost; re-listing the table (resync ${this.resyncs})`, {
            resyncs: this.resyncs,
          }),
        );
        this.dumpDiff()
          .then((evs) => {
            if (evs.length > 0 && !this.stopped) onEvents(evs);
          })
          .catch((e: unknown) => onError(e as Error));
      }
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'ENOENT' ? new JourneyError('E_TOOL_MISSING', 'conntrack is not installed (run scripts/setup)') : e),
      );
    });
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      flush();
      // a Ctrl-C reaches the whole process group: wait a moment before calling it a failure
      setTimeout(() => {
        if (!this.stopped) onError(new JourneyError('E_CONNTRACK', `conntrack -E exited (${code ?? signal ?? '?'}); conntrack events stopped`));
      }, 500).unref();
    });
  }

  /** Re-lists and returns the events that bring the tracked state up to date. */
  private async dumpDiff(): Promise<ConntrackEvent[]> {
    return this.diff.next(await this.list(), Date.now());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const c = this.child;
    this.child = null;
    if (c && c.exitCode === null) {
      c.kill('SIGTERM');
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          c.kill('SIGKILL');
          r();
        }, 1_000);
        c.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}
