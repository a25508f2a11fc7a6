/**
 * Conntrack over netlink through the native addon (libnetfilter_conntrack + libmnl): a dump and
 * NEW/UPDATE/DESTROY events with both tuples, the kernel's status bits (SRC_NAT, DST_NAT, ASSURED,
 * CONFIRMED...), mark, zone, timeout and the kernel id, from a socket opened inside the target
 * namespace. When the kernel overruns the socket (ENOBUFS) the source re-dumps and emits the
 * difference, so the table converges, and reports the overrun through onError.
 *
 * Contract (src/conntrack/select.ts): createNetlinkConntrackSource({ netns }) throws
 * JourneyError('E_NATIVE') when the binding is unavailable (missing, JOURNEY_NATIVE=off).
 */
import { netnsPath } from '../host/exec.js';
import type { ConntrackEntry, ConntrackEvent, ConntrackSource } from '../model/conntrack.js';
import { JourneyError } from '../model/errors.js';
import { loadBinding, type NativeBinding, type NativeConntrackSession } from '../native/binding.js';
import { readCtBatch } from '../native/decode.js';
import { ListingDiff } from './diff.js';

const RESYNC_QUIET_MS = 20;
const RESYNC_MAX_WAIT_MS = 1000;
const RESYNC_SECOND_MS = 100;
const RESYNC_FOLLOW_UP_MS = 1000;

export interface NetlinkSourceOptions {
  /** Namespace name (under /var/run/netns), path, or pid; default: journey's own. */
  readonly netns?: string | number;
}

export class NetlinkConntrackSource implements ConntrackSource {
  readonly kind = 'netlink' as const;
  readonly limitations: readonly string[] = [];
  private readonly binding: NativeBinding;
  private readonly nsPath: string;
  private session: NativeConntrackSession | null = null;
  private readonly diff = new ListingDiff();
  private overruns = 0;
  /** Records the decoder could not read. */
  bad = 0;
  /** Re-dumps after the kernel dropped events for us. */
  resyncs = 0;
  private resyncDue: number | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;

  constructor(opts: NetlinkSourceOptions = {}) {
    const { binding, error } = loadBinding();
    if (binding === null) throw new JourneyError('E_NATIVE', `netlink conntrack unavailable: ${error}`);
    this.binding = binding;
    this.nsPath = opts.netns === undefined ? '' : netnsPath(opts.netns);
    // refuse now, not at start(), when the kernel will not let us listen (no CAP_NET_ADMIN, no
    // nf_conntrack_netlink, no such namespace), so the caller can pick a fallback
    try {
      this.binding.conntrackOpen(this.nsPath ? { netns: this.nsPath } : {}, () => undefined).close();
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'error';
      throw new JourneyError(
        'E_NATIVE',
        `netlink conntrack unavailable: ${code === 'EPERM' ? 'EPERM (needs root or CAP_NET_ADMIN)' : (e as Error).message}`,
        { code, netns: this.nsPath },
        { cause: e },
      );
    }
  }

  async dump(): Promise<ConntrackEntry[]> {
    const entries = this.list();
    this.diff.baseline(entries);
    return entries;
  }

  private list(): ConntrackEntry[] {
    let buf: Buffer;
    try {
      buf = this.binding.conntrackDump(this.nsPath ? { netns: this.nsPath } : {});
    } catch (e) {
      throw new JourneyError('E_CONNTRACK', `conntrack netlink dump failed: ${(e as Error).message}`, { netns: this.nsPath }, { cause: e });
    }
    const { events, bad } = readCtBatch(buf, Math.floor(buf.length / 120));
    this.bad += bad;
    return events.map((e) => e.entry);
  }

  async start(onEvents: (events: readonly ConntrackEvent[]) => void, onError: (err: Error) => void): Promise<void> {
    if (this.session !== null) return;
    try {
      this.session = this.binding.conntrackOpen(this.nsPath ? { netns: this.nsPath } : {}, (buf, count, overruns) => {
        const { events, bad } = readCtBatch(buf, count);
        this.bad += bad;
        for (const ev of events) this.diff.track(ev);
        if (events.length) onEvents(events);
        if (overruns > this.overruns) {
          const lostBursts = overruns - this.overruns;
          this.overruns = overruns;
          onError(new JourneyError('E_CONNTRACK', `conntrack netlink: the kernel dropped events (ENOBUFS x${lostBursts}); re-listing`, { overruns }));
          this.resyncDue ??= Date.now() + RESYNC_MAX_WAIT_MS;
        }
        // re-list once the socket is drained (the messages queued before the overrun are older than
        // the listing would be): when batches stop for a moment, or after RESYNC_MAX_WAIT_MS
        if (this.resyncDue !== null) {
          if (this.resyncTimer) clearTimeout(this.resyncTimer);
          const wait = Date.now() >= this.resyncDue ? 0 : RESYNC_QUIET_MS;
          this.resyncTimer = setTimeout(() => {
            this.resyncTimer = null;
            this.resyncDue = null;
            this.resync(onEvents, onError);
          }, wait);
        }
      });
    } catch (e) {
      throw new JourneyError('E_CONNTRACK', `conntrack netlink events unavailable: ${(e as Error).message}`, { netns: this.nsPath }, { cause: e });
    }
  }

  /**
   * Re-lists after an overrun (and once more RESYNC_FOLLOW_UP_MS later). A dump is not atomic: an entry inserted while it walks the hash table
   * can be missing from it, and would then read as destroyed. So two listings RESYNC_SECOND_MS apart
   * are merged (the later one wins): an entry is taken as gone only when both lack it. One that
   * really went in between is destroyed by its event, or by the next re-listing.
   */
  private resync(onEvents: (events: readonly ConntrackEvent[]) => void, onError: (err: Error) => void, followUp = true): void {
    if (this.session === null) return;
    this.resyncs++;
    let first: ConntrackEntry[];
    try {
      first = this.list();
    } catch (e) {
      onError(e as Error);
      return;
    }
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      if (this.session === null) return;
      try {
        const merged = new Map(first.map((e) => [e.id, e]));
        for (const e of this.list()) merged.set(e.id, e);
        const evs = this.diff.next([...merged.values()], Date.now());
        if (evs.length) onEvents(evs);
      } catch (e) {
        onError(e as Error);
      }
      // packets of the burst still queued in the kernel (softirq deferred to ksoftirqd) can make
      // entries after the listing while the socket still overflows: one more listing catches them
      if (followUp && this.resyncDue === null) {
        this.resyncTimer = setTimeout(() => {
          this.resyncTimer = null;
          this.resync(onEvents, onError, false);
        }, RESYNC_FOLLOW_UP_MS);
      }
    }, RESYNC_SECOND_MS);
  }

  readQueued(): void {
    this.session?.readNow();
  }

  async stop(): Promise<void> {
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = null;
    this.resyncDue = null;
    this.session?.close();
    this.session = null;
  }
}

/** The factory src/conntrack/select.ts looks for. Throws JourneyError('E_NATIVE') when unavailable. */
export function createNetlinkConntrackSource(opts: { netns?: string | number } = {}): ConntrackSource {
  return new NetlinkConntrackSource(opts);
}
