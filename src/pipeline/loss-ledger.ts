/**
 * Where every frame went, per interface: each frame the kernel gave the capture is shown in a
 * flow, left out for a stated reason (not IP, undecodable, a true copy, link control), or counted
 * as lost where it was lost (the kernel ring, the pipe from the capture worker, the hold queue).
 * `pending` is what is still on its way (held for a conntrack entry); after stop it is 0, so that
 * captured = shown + not shown + lost holds exactly.
 */
import type { IfaceTally } from '../correlate/iface-tally.js';
import type { IfaceLossCount } from '../model/events.js';
import type { CaptureStats } from '../model/observation.js';

/** What the pipeline itself saw of one interface's batches. */
export interface IfaceIntake {
  /** Frames that reached the pipeline. */
  delivered: number;
  /** Frames the decoder could not read as IP (counted by reason in capture.stats' skipped). */
  undecodable: number;
  /** Frames that are not IP (ARP...). */
  nonIp: number;
}

/** One interface's account (the shape carried by capture.stats' `loss`). */
export type IfaceLoss = IfaceLossCount;

export class LossLedger {
  private readonly intake = new Map<string, IfaceIntake>();

  of(iface: string): IfaceIntake {
    let t = this.intake.get(iface);
    if (t === undefined) {
      t = { delivered: 0, undecodable: 0, nonIp: 0 };
      this.intake.set(iface, t);
    }
    return t;
  }

  report(capture: readonly CaptureStats[], tallies: ReadonlyMap<string, IfaceTally & { shown: number }>): IfaceLoss[] {
    const names = new Set([...capture.map((c) => c.iface), ...this.intake.keys(), ...tallies.keys()]);
    const out: IfaceLoss[] = [];
    for (const iface of [...names].sort()) {
      const c = capture.find((x) => x.iface === iface);
      const i = this.intake.get(iface) ?? { delivered: 0, undecodable: 0, nonIp: 0 };
      const t = tallies.get(iface) ?? { shown: 0, shownEnded: 0, copies: 0, linkControl: 0, holdOverflow: 0 };
      const pipe = c?.ownDropped ?? 0;
      const notShown = { nonIp: i.nonIp, undecodable: i.undecodable, copies: t.copies, linkControl: t.linkControl };
      const accounted = t.shown + i.nonIp + i.undecodable + t.copies + t.linkControl + t.holdOverflow;
      out.push({
        iface,
        captured: Math.max(c?.received ?? 0, i.delivered + pipe),
        delivered: i.delivered,
        shown: t.shown,
        notShown,
        lost: { kernelRing: c?.kernelDropped ?? 0, interface: c?.ifDropped ?? 0, pipe, holdQueue: t.holdOverflow },
        pending: i.delivered - accounted,
      });
    }
    return out;
  }
}

/** One line per interface that lost frames or still has some on their way; null when none did. */
export function lossNotice(l: IfaceLoss): string | null {
  const lost = l.lost.kernelRing + l.lost.interface + l.lost.pipe + l.lost.holdQueue;
  if (lost === 0 && l.pending === 0) return null;
  const parts = [
    l.lost.kernelRing > 0 ? `kernel ring ${l.lost.kernelRing}` : '',
    l.lost.interface > 0 ? `interface ${l.lost.interface}` : '',
    l.lost.pipe > 0 ? `pipe from the capture worker ${l.lost.pipe}` : '',
    l.lost.holdQueue > 0 ? `hold queue ${l.lost.holdQueue}` : '',
    l.pending !== 0 ? `not processed ${l.pending}` : '',
  ].filter((x) => x !== '');
  const ns = l.notShown;
  return `${l.iface}: ${l.captured} frames captured, ${l.shown} shown in flows, ${ns.nonIp + ns.undecodable + ns.copies + ns.linkControl} not flows; lost: ${parts.join(', ')}`;
}
