/**
 * Synthesises conntrack events from successive full listings (for sources that poll):
 * an id that appears is `new`, one whose state/status/reply changed is `update`, one that
 * vanished is `destroy`. Timeout-only changes are not events (they change on every poll).
 */
import type { ConntrackEntry, ConntrackEvent } from '../model/conntrack.js';
import { tupleKey } from '../model/tuple.js';

function signature(e: ConntrackEntry): string {
  return `${e.tcpState ?? ''}|${e.status.join(',')}|${tupleKey(e.reply)}|${e.mark}`;
}

/** A known entry; its signature is made when a listing is compared with it (never for the events that only track it). */
interface Known {
  entry: ConntrackEntry;
  sig: string | undefined;
}

export class ListingDiff {
  private known = new Map<string, Known>();

  get size(): number {
    return this.known.size;
  }

  /** Takes a full listing, returns the events that turn the previous listing into this one. */
  next(listing: readonly ConntrackEntry[], timeMs: number): ConntrackEvent[] {
    const events: ConntrackEvent[] = [];
    const seen = new Map<string, Known>();
    for (const entry of listing) {
      const sig = signature(entry);
      const prev = this.known.get(entry.id);
      seen.set(entry.id, { entry, sig });
      if (!prev) events.push({ type: 'new', time: timeMs, entry });
      else if ((prev.sig ?? signature(prev.entry)) !== sig) events.push({ type: 'update', time: timeMs, entry });
    }
    for (const [id, prev] of this.known) {
      if (!seen.has(id)) events.push({ type: 'destroy', time: timeMs, entry: prev.entry });
    }
    this.known = seen;
    return events;
  }

  /** Records entries without producing events (the baseline of a first dump). */
  baseline(listing: readonly ConntrackEntry[]): void {
    this.known = new Map(listing.map((entry) => [entry.id, { entry, sig: signature(entry) }]));
  }

  /**
   * Keeps `known` in step with events that came from elsewhere (event streams): one per event, on
   * the live path, so the signature waits for a listing to need it.
   */
  track(ev: ConntrackEvent): void {
    if (ev.type === 'destroy') this.known.delete(ev.entry.id);
    else this.known.set(ev.entry.id, { entry: ev.entry, sig: undefined });
  }
}
