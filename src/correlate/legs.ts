/**
 * Counting a packet on its flow's leg. What is on the wire is counted: only a true copy of one
 * frame seen twice on the same interface (a promiscuous bridge sees a frame it forwards port to
 * port on its way in and again on its way out) is counted once. A copy has the same fingerprint
 * (IP header checksum, IP id, lengths, TTL, L4 checksum, TCP sequence: decode/observation.ts) and
 * comes less than 1 ms after the frame, never before it.
 */
import type { Observation } from '../model/observation.js';
import type { FlowState, LegState } from './flow-state.js';

/** How far apart two sightings of one frame may be. */
export const COPY_WINDOW_US = 1000;

export type LegOutcome = 'new-leg' | 'counted' | 'copy';

/** One leg per interface, direction and tuple: a hairpinned packet crosses the bridge twice, before and after NAT. */
export function findLeg(f: FlowState, obs: Observation, direction: 'orig' | 'reply'): LegState | undefined {
  const t = obs.tuple;
  for (const l of f.legs) {
    if (
      l.iface === obs.iface &&
      l.direction === direction &&
      l.tuple.src === t.src &&
      l.tuple.dst === t.dst &&
      l.tuple.sport === t.sport &&
      l.tuple.dport === t.dport
    ) {
      return l;
    }
  }
  return undefined;
}

/** Whether `obs` is a true copy of the last packet counted on `leg`. */
export function isCopy(leg: LegState, obs: Observation): boolean {
  if (obs.fingerprint === undefined || leg.lastFp !== obs.fingerprint) return false;
  const dt = obs.timeUs - leg.lastFpUs;
  return dt >= 0 && dt < COPY_WINDOW_US;
}

/** Counts `obs` on its leg (made when new); a true copy is left out and said so. */
export function recordLeg(f: FlowState, obs: Observation, direction: 'orig' | 'reply'): LegOutcome {
  let leg = findLeg(f, obs, direction);
  let outcome: LegOutcome = 'counted';
  if (!leg) {
    leg = {
      iface: obs.iface,
      direction,
      tuple: obs.tuple,
      firstUs: obs.timeUs,
      lastUs: obs.timeUs,
      packets: 0,
      bytes: 0,
      lastFp: -1,
      lastFpUs: 0,
    };
    f.legs.push(leg);
    f.changed = true;
    outcome = 'new-leg';
  } else if (isCopy(leg, obs)) {
    return 'copy';
  }
  if (obs.fingerprint !== undefined) {
    leg.lastFp = obs.fingerprint;
    leg.lastFpUs = obs.timeUs;
  }
  leg.packets++;
  leg.bytes += obs.wireLen;
  if (obs.timeUs > leg.lastUs) leg.lastUs = obs.timeUs;
  if (obs.timeUs < leg.firstUs) leg.firstUs = obs.timeUs;
  if (obs.tcpFlags !== undefined) f.tcpFlagsSeen |= obs.tcpFlags;
  f.countersChanged = true;
  f.lastActivityMs = obs.timeUs / 1000;
  return outcome;
}
