/**
 * Per interface, where the packets the correlator was given went: shown in a flow (counted when the
 * flow ends, or from the live flows), or not shown and why. With the capture's own counts this
 * accounts for every frame (pipeline/loss-ledger.ts).
 */
import type { FlowState } from './flow-state.js';
import { NO_LEG } from './leg-store.js';

export interface IfaceTally {
  /** Packets in flows that ended. */
  shownEnded: number;
  /** True copies of one frame, counted once. */
  copies: number;
  /** Link-local control packets (ND, MLD, IGMP, DHCP) without conntrack: counted, not flows. */
  linkControl: number;
  /** Dropped because the hold queue was full. */
  holdOverflow: number;
}

export class IfaceTallies {
  private readonly byIface = new Map<string, IfaceTally>();

  of(iface: string): IfaceTally {
    let t = this.byIface.get(iface);
    if (t === undefined) {
      t = { shownEnded: 0, copies: 0, linkControl: 0, holdOverflow: 0 };
      this.byIface.set(iface, t);
    }
    return t;
  }

  /** A flow ended: its packets were shown (in its flow.end). */
  ended(f: FlowState): void {
    const s = f.legStore;
    for (let l = f.firstLeg; l !== NO_LEG; l = s.next[l] as number) this.of(s.iface(l)).shownEnded += s.packets[l] as number;
  }

  /** Per interface: the tallies plus the packets of the flows still live. */
  snapshot(live: Iterable<FlowState>): Map<string, IfaceTally & { shown: number }> {
    const out = new Map<string, IfaceTally & { shown: number }>();
    for (const [iface, t] of this.byIface) out.set(iface, { ...t, shown: t.shownEnded });
    for (const f of live) {
      const s = f.legStore;
      for (let l = f.firstLeg; l !== NO_LEG; l = s.next[l] as number) {
        const iface = s.iface(l);
        let t = out.get(iface);
        if (t === undefined) {
          t = { shownEnded: 0, copies: 0, linkControl: 0, holdOverflow: 0, shown: 0 };
          out.set(iface, t);
        }
        t.shown += s.packets[l] as number;
      }
    }
    return out;
  }
}
