/**
 * The per-frame hot path of the main thread: a captured batch is decoded into one reused view and
 * handed to the correlator frame by frame. The correlator counts a packet of a known flow straight
 * from the view (no allocation); only a packet it cannot place that way (a new flow or leg, a packet
 * waiting for its conntrack entry, a fragment, an ICMP error) is made into an Observation.
 */
import type { Correlator } from '../correlate/correlator.js';
import { decodeFrame, type FragmentPorts, observationFromView, type PacketView, type SkipCounters } from '../decode/index.js';
import type { FrameBatch } from '../model/observation.js';
import type { IfaceIntake } from './loss-ledger.js';

/** What the intake reuses from batch to batch. */
export interface IntakeState {
  readonly view: PacketView;
  readonly skips: SkipCounters;
  readonly fragments: FragmentPorts;
}

/**
 * Decodes and correlates every frame of `b`, counting what was not IP in `tally`. `before` runs
 * before each IP packet with its time in ms (a replay feeds conntrack events and ticks there).
 * Returns the number of frames that were not IP.
 */
export function intakeBatch(b: FrameBatch, s: IntakeState, correlator: Correlator, tally: IfaceIntake, before?: (ms: number) => void): number {
  const v = s.view;
  let nonIp = 0;
  for (let i = 0; i < b.count; i++) {
    const ok = decodeFrame(b, i, v, s.skips);
    // a folded entry (a run of one connection's packets) is as many frames as it stands for
    tally.delivered += v.packets;
    if (!ok) {
      tally.undecodable += v.packets;
      continue;
    }
    if (v.family === 0) {
      nonIp += v.packets;
      tally.nonIp += v.packets;
      continue;
    }
    before?.(v.timeUs / 1000);
    if (correlator.onPacket(v, b.iface)) continue;
    const o = observationFromView(v, b.iface);
    if (o === undefined) continue; // not reached: family was checked
    // trailing IP fragments join their datagram's flow (the first fragment's ports)
    correlator.onObservation(o.fragment === undefined ? o : s.fragments.join(o));
  }
  return nonIp;
}
