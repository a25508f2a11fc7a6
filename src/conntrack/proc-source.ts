/**
 * The complete fallback: polls /proc/net/nf_conntrack (in the target namespace) and synthesises
 * new/update/destroy events by diffing listings. What it loses against netlink is listed in
 * `limitations`: no SNAT/DNAT status bits (NAT is derived from the tuples), no kernel ids, and
 * connections that live less than one poll interval can be missed.
 */
import type { ConntrackEntry, ConntrackEvent, ConntrackSource } from '../model/conntrack.js';
import { JourneyError } from '../model/errors.js';
import { ListingDiff } from './diff.js';
import { NetnsFileReader } from './netns-reader.js';
import { parseConntrackText } from './parse.js';

export interface ProcSourceOptions {
  readonly netns?: string;
  /** Poll interval; adapts upward to 5x the time a read takes. Default 250 ms. */
  readonly intervalMs?: number;
  /** For tests: where the text comes from. */
  readonly read?: () => Promise<string>;
}

export class ProcConntrackSource implements ConntrackSource {
  readonly kind = 'proc' as const;
  readonly limitations: readonly string[];
  private readonly reader: NetnsFileReader;
  private readonly readText: () => Promise<string>;
  private readonly diff = new ListingDiff();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly baseInterval: number;
  /** Lines that could not be parsed, in total. */
  skippedLines = 0;
  polls = 0;
  lastReadMs = 0;
  private lastListing: ConntrackEntry[] | null = null;

  constructor(opts: ProcSourceOptions = {}) {
    this.baseInterval = opts.intervalMs ?? 250;
    this.reader = new NetnsFileReader(opts.netns);
    this.readText = opts.read ?? (() => this.reader.read('nf_conntrack'));
    this.limitations = [
      'conntrack from /proc/net/nf_conntrack: no SNAT/DNAT status bits (NAT derived from the tuples)',
      'no kernel conntrack ids',
      `polled every ${this.baseInterval} ms: connections shorter than that can be missed`,
    ];
  }

  async dump(): Promise<ConntrackEntry[]> {
    let text: string;
    const t0 = performance.now();
    try {
      text = await this.readText();
    } catch (e) {
      if (e instanceof JourneyError) throw e;
      const err = e as NodeJS.ErrnoException;
      throw new JourneyError(
        'E_CONNTRACK',
        err.code === 'ENOENT'
          ? '/proc/net/nf_conntrack does not exist (nf_conntrack not loaded, or no procfs support)'
          : `/proc/net/nf_conntrack: ${err.message}`,
        {},
        { cause: e },
      );
    }
    this.lastReadMs = performance.now() - t0;
    const { lines, skipped } = parseConntrackText(text, 'proc');
    this.skippedLines += skipped;
    const listing = lines.map((l) => l.entry);
    this.lastListing = listing;
    return listing;
  }

  async start(onEvents: (events: readonly ConntrackEvent[]) => void, onError: (err: Error) => void): Promise<void> {
    this.stopped = false;
    // the listing of the caller's dump() is the baseline: nothing between the two is lost
    this.diff.baseline(this.lastListing ?? (await this.dump()));
    const tick = async (): Promise<void> => {
      if (this.stopped) return;
      try {
        const listing = await this.dump();
        this.polls++;
        const evs = this.diff.next(listing, Date.now());
        if (evs.length > 0 && !this.stopped) onEvents(evs);
      } catch (e) {
        onError(e as Error);
      }
      if (!this.stopped) {
        this.timer = setTimeout(() => void tick(), Math.max(this.baseInterval, this.lastReadMs * 5));
        this.timer.unref();
      }
    };
    this.timer = setTimeout(() => void tick(), this.baseInterval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.reader.close();
  }
}
