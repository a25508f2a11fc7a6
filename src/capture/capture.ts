/**
 * Live capture: one worker process per interface, the set of interfaces kept current.
 * See index.ts for the API contract; capture-options.ts for what it is asked and its defaults.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { netnsPath } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import type { CaptureStats } from '../model/observation.js';
import { LinkWatcher, defaultRouteInterfaces, listLinks, selectInterfaces, type LinkInfo } from './devices.js';
import { createPcapngWriter, type PcapngWriter } from './pcapng-writer.js';
import { DEFAULT_CAPTURE_BACKEND, captureBackend, resolveCaptureBackend, type CaptureBackend } from './backends/registry.js';
import { CaptureWorker } from './worker.js';
import type { WorkerConfig } from './backends/shape.js';
import type { WorkerStatsMessage } from './protocol.js';
import { type CaptureHandleEvents, type CaptureOptions, DEFAULT_BUFFER_MIB, DEFAULT_BUFFER_TIMEOUT_MS, promiscuousFor } from './capture-options.js';

interface IfaceState {
  worker: CaptureWorker;
  up: boolean;
  /** This interface captured at least once (restarts of a working capture are never given up). */
  everUp: boolean;
  /** Totals of earlier workers of the same interface (restarts). */
  base: Totals;
  restarts: number;
  retryTimer?: NodeJS.Timeout | undefined;
}

interface Totals {
  received: number;
  kernelDropped: number;
  ifDropped: number;
  ownDropped: number;
  cpuUs: number;
}
const ZERO: Totals = { received: 0, kernelDropped: 0, ifDropped: 0, ownDropped: 0, cpuUs: 0 };

function totalsOf(s: WorkerStatsMessage | undefined, base: Totals): Totals {
  if (s === undefined) return base;
  return {
    received: base.received + s.received,
    kernelDropped: base.kernelDropped + Math.max(0, s.kernelDropped),
    ifDropped: base.ifDropped + Math.max(0, s.ifDropped),
    ownDropped: base.ownDropped + s.ownDropped,
    cpuUs: base.cpuUs + s.cpuUserUs + s.cpuSystemUs,
  };
}

export class CaptureHandle extends EventEmitter<CaptureHandleEvents> {
  private readonly ifaces = new Map<string, IfaceState>();
  /** Final statistics of interfaces no longer captured. */
  private readonly gone = new Map<string, Totals>();
  private watcher: LinkWatcher | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private extra: string[];
  private writer: PcapngWriter | undefined;
  private reconciling: Promise<void> | undefined;
  private netnsGone = false;
  /** Interfaces whose capture never opened after several tries: not retried until re-created. */
  private readonly givenUp = new Set<string>();
  /** Interfaces that vanished before their worker could open them. */
  transient = 0;
  private again = false;
  private readonly cfg: Omit<WorkerConfig, 'iface'>;
  /** Link kinds from the last listing (bridges are captured promiscuously by default). */
  private readonly kinds = new Map<string, string | undefined>();
  private readonly kernelStats: boolean;
  /** Events held until startCapture has returned the handle (so no early batch is lost). */
  private held: Array<() => void> | undefined = [];
  /** The backend really used (see resolveCaptureBackend). */
  readonly backend: CaptureBackend;
  /** Why the requested backend was replaced, or undefined. */
  readonly fallback: string | undefined;

  constructor(private readonly opts: CaptureOptions) {
    super();
    this.extra = [...(opts.extraInterfaces ?? [])];
    const chosen = resolveCaptureBackend(opts.backend);
    const backend = chosen.backend;
    this.backend = backend;
    this.fallback = chosen.fallback;
    if (chosen.fallback !== undefined) {
      this.out('notice', new JourneyError('E_NATIVE', chosen.fallback, { requested: opts.backend ?? DEFAULT_CAPTURE_BACKEND, backend }));
    }
    this.kernelStats = captureBackend(backend).kernelStats;
    this.cfg = {
      backend,
      filter: opts.filter ?? '',
      snaplen: opts.snaplen ?? 262144,
      bufferSize: opts.bufferSize ?? DEFAULT_BUFFER_MIB * 1024 * 1024,
      bufferTimeoutMs: Math.max(1, Math.round(opts.bufferTimeoutMs ?? DEFAULT_BUFFER_TIMEOUT_MS)),
      promiscuous: opts.promiscuous ?? false,
      statsIntervalMs: opts.statsIntervalMs ?? 1000,
      maxQueueBytes: opts.maxQueueBytes ?? 32 * 1024 * 1024,
      batchFrames: 4096,
      batchBytes: 1 << 20,
      // a pcapng file keeps every frame: nothing is folded then
      fold: opts.fold === true && opts.write === undefined,
    };
    if (opts.write !== undefined) this.writer = createPcapngWriter(opts.write);
  }

  private out<K extends keyof CaptureHandleEvents>(event: K, ...args: CaptureHandleEvents[K]): void {
    if (this.held !== undefined) this.held.push(() => this.emit(event, ...(args as never)));
    else this.emit(event, ...(args as never));
  }

  /** @internal Releases the events held during start-up (after the caller got the handle). */
  release(): void {
    const h = this.held;
    this.held = undefined;
    for (const f of h ?? []) f();
  }

  /** Interfaces being captured now. */
  interfaces(): string[] {
    return [...this.ifaces.entries()].filter(([, s]) => s.up).map(([n]) => n);
  }

  /** Replaces the caller's extra names (e.g. custom Docker bridge names) and re-selects (both modes). */
  setExtraInterfaces(names: readonly string[]): void {
    this.extra = [...names];
    void this.reconcile();
  }

  /** Current statistics: live interfaces and those that vanished. */
  stats(): CaptureStats[] {
    const out: CaptureStats[] = [];
    for (const [iface, s] of this.ifaces) out.push(this.toStats(iface, totalsOf(s.worker.lastStats, s.base)));
    for (const [iface, t] of this.gone) if (!this.ifaces.has(iface)) out.push(this.toStats(iface, t));
    return out;
  }

  private toStats(iface: string, t: Totals): CaptureStats {
    const s: CaptureStats = {
      iface,
      received: t.received,
      kernelDropped: t.kernelDropped,
      ifDropped: t.ifDropped,
      ownDropped: t.ownDropped,
      skipped: {},
      cpuUs: t.cpuUs,
      backend: this.cfg.backend,
    };
    return this.kernelStats ? s : { ...s, kernelStatsUnavailable: true };
  }

  /** @internal */
  async begin(): Promise<void> {
    await this.reconcile(true);
    if (this.opts.watch !== false) {
      this.watcher = new LinkWatcher(this.opts.netns, () => void this.reconcile());
      this.watcher.start();
    }
    this.statsTimer = setInterval(() => this.out('stats', this.stats()), this.cfg.statsIntervalMs);
  }

  private async reconcile(initial = false): Promise<void> {
    if (this.reconciling) {
      this.again = true;
      return this.reconciling;
    }
    this.reconciling = (async () => {
      do {
        this.again = false;
        await this.reconcileOnce(initial);
        initial = false;
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  private async reconcileOnce(initial: boolean): Promise<void> {
    if (this.stopped) return;
    let links: LinkInfo[];
    let uplinks: string[] = [];
    try {
      links = await listLinks(this.opts.netns);
      const auto = (this.opts.interfaces ?? []).length === 0;
      if (auto && this.opts.uplink !== false) uplinks = await defaultRouteInterfaces(this.opts.netns);
    } catch (e) {
      const err = e instanceof JourneyError ? e : new JourneyError('E_CAPTURE', `cannot list interfaces: ${(e as Error).message}`);
      if (initial) throw err;
      if (this.opts.netns !== undefined && !existsSync(netnsPath(this.opts.netns))) {
        // the namespace was deleted under us: say so once, stop following it, and stop the
        // workers (a process inside a namespace keeps it, and its interfaces, alive)
        if (!this.netnsGone) {
          this.netnsGone = true;
          this.watcher?.stop();
          this.out(
            'error',
            new JourneyError('E_NO_NETNS', `network namespace ${this.opts.netns} disappeared: capture there has ended`, { netns: this.opts.netns }),
          );
          for (const [iface, st] of [...this.ifaces]) await this.drop(iface, st, 'network namespace deleted');
        }
        return;
      }
      this.out('error', err);
      return;
    }
    const patterns = this.opts.interfaces ?? [];
    if (initial) {
      for (const p of patterns) {
        if (p !== 'any' && !/[*?[]/.test(p) && !links.some((l) => l.name === p)) {
          throw new JourneyError('E_CAPTURE', `no such interface: ${p}${this.opts.netns ? ` (in network namespace ${this.opts.netns})` : ''}`, {
            iface: p,
          });
        }
      }
    }
    const present = new Set(links.map((l) => l.name));
    this.kinds.clear();
    for (const l of links) this.kinds.set(l.name, l.kind);
    for (const g of this.givenUp) if (!present.has(g)) this.givenUp.delete(g);
    // administratively down interfaces are picked up when they come up (ip monitor sees it);
    // a -i name given at start is opened anyway, so that a down one fails as in tcpdump
    const usable = links.filter((l) => l.up || (initial && patterns.includes(l.name)));
    const isUp = new Set(usable.map((l) => l.name));
    const want = new Set(selectInterfaces(usable, uplinks, { patterns, extra: this.extra }).filter((n) => !this.givenUp.has(n)));
    // vanished or no longer wanted
    for (const [iface, st] of this.ifaces) {
      if (!want.has(iface)) {
        await this.drop(iface, st, !present.has(iface) ? 'interface vanished' : !isUp.has(iface) ? 'interface is down' : 'no longer selected');
      }
    }
    // new
    const starting: Array<Promise<void>> = [];
    for (const iface of want) {
      if (this.ifaces.has(iface)) continue;
      // an interface captured before (a bridge deleted and re-created): its totals continue
      const before = this.gone.get(iface);
      if (before !== undefined) this.gone.delete(iface);
      starting.push(this.open(iface, before ?? ZERO, 0, initial, before !== undefined, before !== undefined));
    }
    const results = await Promise.allSettled(starting);
    if (initial) {
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
  }

  private open(iface: string, base: Totals, restarts: number, initial: boolean, everUp = false, reattached = false): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const st: IfaceState = { worker: undefined as unknown as CaptureWorker, up: false, everUp, base, restarts };
      this.ifaces.set(iface, st);
      const promiscuous = promiscuousFor(this.opts.promiscuous, this.kinds.get(iface));
      st.worker = new CaptureWorker(iface, { ...this.cfg, iface, promiscuous }, this.opts.netns, {
        hello: (h) => {
          st.up = true;
          st.everUp = true;
          if (!settled) {
            settled = true;
            resolve();
          }
          this.out('iface-up', { iface, linkType: h.linkType, pid: h.pid, ...(reattached ? { reattached: true } : {}) });
        },
        batch: (b) => {
          if (this.writer) this.writer.writeBatch(b);
          this.out('batch', b);
        },
        stats: () => {
          // statistics are read from the worker when asked (stats())
        },
        error: (e) => {
          if (!settled && e.phase === 'open') {
            settled = true;
            const err = openError(iface, e.message, this.cfg.filter);
            if (initial) reject(err);
            // later: onWorkerExit reports it (an error and a retry if the interface is still
            // there; nothing if it vanished before it could be opened, as Docker's temporary veths do)
            else resolve();
          }
          // later failures are reported by onWorkerExit: an error if the interface is still
          // there (then retried), only 'iface-down' if it vanished
        },
        exit: (code, signal) => {
          if (!settled) {
            settled = true;
            // ended before it could say hello (nsenter failed, the addon crashed at load)
            if (initial) {
              reject(openError(iface, st.worker.lastError?.message ?? `capture worker for ${iface} exited (${signal ?? code}) before capturing`));
              return;
            }
            resolve();
          }
          void this.onWorkerExit(iface, st);
        },
      });
    });
  }

  /** A worker ended on its own: restart it while its interface is still wanted, else drop it. */
  private async onWorkerExit(iface: string, st: IfaceState): Promise<void> {
    if (this.stopped || this.ifaces.get(iface) !== st) return;
    const totals = totalsOf(st.worker.lastStats, st.base);
    const present = await listLinks(this.opts.netns).then(
      (ls) => ls.some((l) => l.name === iface),
      () => false,
    );
    if (this.stopped || this.ifaces.get(iface) !== st) return;
    if (!present) {
      this.ifaces.delete(iface);
      if (!st.up && st.base === ZERO) {
        this.transient++;
        return;
      }
      this.gone.set(iface, totals);
      if (st.up) this.out('iface-down', { iface, reason: st.worker.lastError?.message ?? 'interface vanished', stats: this.toStats(iface, totals) });
      return;
    }
    // still there (went down, or the worker failed): retry with a backoff, totals carried over;
    // an interface that never opened after 5 tries is left alone until it is re-created
    const why = st.worker.lastError?.message ?? `capture worker for ${iface} ended`;
    if (!st.up && !st.everUp && st.restarts >= 4) {
      this.ifaces.delete(iface);
      this.givenUp.add(iface);
      this.out(
        'error',
        new JourneyError('E_CAPTURE', `${why} (gave up after ${st.restarts + 1} tries)`, { iface, phase: st.worker.lastError?.phase ?? 'exit' }),
      );
      return;
    }
    this.out('error', new JourneyError('E_CAPTURE', `${why} (retrying)`, { iface, phase: st.worker.lastError?.phase ?? 'exit' }));
    if (st.up) this.out('iface-down', { iface, reason: st.worker.lastError?.message ?? 'capture worker ended', stats: this.toStats(iface, totals) });
    st.up = false;
    const delay = Math.min(10_000, 500 * 2 ** Math.min(st.restarts, 5));
    st.retryTimer = setTimeout(() => {
      if (this.stopped || this.ifaces.get(iface) !== st) return;
      this.ifaces.delete(iface);
      void this.open(iface, totals, st.restarts + 1, false, st.everUp || st.up);
    }, delay);
  }

  private async drop(iface: string, st: IfaceState, reason: string): Promise<void> {
    this.ifaces.delete(iface);
    if (st.retryTimer) clearTimeout(st.retryTimer);
    await st.worker.stop();
    const totals = totalsOf(st.worker.lastStats, st.base);
    if (st.up || st.everUp || st.worker.lastStats !== undefined) this.gone.set(iface, totals);
    if (st.up) this.out('iface-down', { iface, reason, stats: this.toStats(iface, totals) });
  }

  /** Stops every worker (each flushes its last batch and statistics); returns the final statistics. */
  async stop(): Promise<CaptureStats[]> {
    if (this.stopped) return this.stats();
    this.stopped = true;
    this.watcher?.stop();
    if (this.statsTimer) clearInterval(this.statsTimer);
    await this.reconciling?.catch(() => {
      // a reconcile that failed while stopping changes nothing now
    });
    await Promise.all(
      [...this.ifaces.values()].map((st) => {
        if (st.retryTimer) clearTimeout(st.retryTimer);
        return st.worker.stop();
      }),
    );
    const final = this.stats();
    if (this.writer) await this.writer.close();
    return final;
  }

  /** Frames written to --write and dropped there (disk behind). */
  writerCounts(): { written: number; dropped: number } | undefined {
    return this.writer ? { written: this.writer.written, dropped: this.writer.dropped } : undefined;
  }
}

function openError(iface: string, message: string, filter = ''): JourneyError {
  if (/filter expression|syntax error/i.test(message)) {
    return new JourneyError('E_USAGE', `bad capture filter "${filter}": ${message.replace(/^cannot capture on \S+: /, '')}`, { iface, filter });
  }
  if (/not permitted|permission denied|you don't have permission/i.test(message)) {
    return new JourneyError('E_NOT_ROOT', `${message} (live capture needs root or CAP_NET_RAW)`, { iface });
  }
  return new JourneyError('E_CAPTURE', message, { iface });
}

/**
 * Starts capturing. Resolves once every initially selected interface is capturing; rejects with
 * E_CAPTURE when one cannot be opened (bad filter, no such interface, no permission).
 */
export async function startCapture(opts: CaptureOptions = {}): Promise<CaptureHandle> {
  if (opts.backend !== undefined) captureBackend(opts.backend);
  if (opts.netns !== undefined && !existsSync(netnsPath(opts.netns))) {
    throw new JourneyError('E_NO_NETNS', `network namespace ${opts.netns} does not exist (${netnsPath(opts.netns)})`, { netns: opts.netns });
  }
  const h = new CaptureHandle(opts);
  try {
    await h.begin();
    setImmediate(() => h.release());
  } catch (e) {
    await h.stop().catch(() => {
      // the start error is what the caller needs to see
    });
    throw e;
  }
  return h;
}
