/**
 * Counting a packet on its flow's leg. What is on the wire is counted: only a true copy of one
 * frame seen twice on the same interface (a promiscuous bridge sees a frame it forwards port to
 * port on its way in and again on its way out) is counted once. A copy has the same fingerprint
 * (IP header checksum, IP id, lengths, TTL, L4 checksum, TCP sequence: decode/observation.ts) and
 * comes less than 1 ms after the frame, never before it.
 * A packet of a leg that exists is counted straight from the decode view (countPacket with the
 * view's numbers: legs keep their IPv4 addresses and ports as int32s for that); an Observation is
 * only made for the packet that creates a leg.
 * A leg is kept small (one per interface and direction of every live flow): a copy is checked
 * against the leg's latest packet (its fingerprint and `lastUs`), as one socket delivers a
 * leg's packets in order.
 */
import { packIpv4 } from '../conntrack/packed-key.js';
import type { Observation } from '../model/observation.js';
import type { Tuple } from '../model/tuple.js';
import type { FlowState, LegState } from './flow-state.js';

/** How far apart two sightings of one frame may be. */
export const COPY_WINDOW_US = 1000;

export type LegOutcome = 'new-leg' | 'counted' | 'copy';

/** One leg per interface, direction and tuple: a hairpinned packet crosses the bridge twice, before and after NAT. */
export function findLeg(f: FlowState, obs: Observation, direction: 'orig' | 'reply'): LegState | undefined {
  const t = obs.tuple;
  const ports = portsOf(t.sport, t.dport);
  for (const l of f.legs) {
    if (l.iface !== obs.iface || l.direction !== direction || l.ports4 !== ports) continue;
    const lt = legTuple(f, l);
    if (lt.src === t.src && lt.dst === t.dst) return l;
  }
  return undefined;
}

/**
 * The tuple a leg was seen with. A leg of a flow with a conntrack entry keeps no tuple of its own
 * when its tuple is one of the entry's forms (`form`, numbered as the conntrack table numbers its
 * keys: 0 orig, 1 reverse(reply), 2 reply, 3 reverse(orig), 4 and 5 between DNAT and SNAT): it is
 * made from the entry's tuples when an event shows it (less memory per live flow).
 */
export function legTuple(f: FlowState, l: LegState): Tuple {
  return l.tuple ?? formTuple(f.orig, f.reply ?? f.orig, l.form);
}

function formTuple(o: Tuple, r: Tuple, k: number): Tuple {
  const src = k === 0 || k === 4 ? o.src : k === 1 ? r.dst : k === 3 ? o.dst : r.src;
  const sport = k === 0 || k === 4 ? o.sport : k === 1 ? r.dport : k === 3 ? o.dport : r.sport;
  const dst = k === 0 ? o.dst : k === 1 || k === 4 ? r.src : k === 2 ? r.dst : o.src;
  const dport = k === 0 ? o.dport : k === 1 || k === 4 ? r.sport : k === 2 ? r.dport : o.sport;
  return { family: o.family, proto: o.proto, protoNum: o.protoNum, src, dst, sport, dport };
}

/** The form of the flow's entry that `t` is exactly (see legTuple), or -1 (ICMP keeps its type and code: its own tuple). */
function formOf(f: FlowState, t: Tuple): number {
  const o = f.orig;
  const r = f.reply;
  if (f.entry === null || r === null || t.icmpType !== undefined || t.icmpCode !== undefined) return -1;
  if (t.family !== o.family || t.proto !== o.proto || t.protoNum !== o.protoNum) return -1;
  if (r.family !== o.family || r.proto !== o.proto || r.protoNum !== o.protoNum) return -1;
  for (let k = 0; k < 6; k++) {
    const c = formTuple(o, r, k);
    if (c.src === t.src && c.dst === t.dst && c.sport === t.sport && c.dport === t.dport) return k;
  }
  return -1;
}

/** The two ports as one int32 (LegState.ports4). */
function portsOf(sport: number, dport: number): number {
  return (sport << 16) | dport;
}

/** findLeg for an IPv4 packet read from the decode view: addresses as int32. */
export function findLegPacked(
  f: FlowState,
  iface: string,
  direction: 'orig' | 'reply',
  src: number,
  dst: number,
  sport: number,
  dport: number,
): LegState | undefined {
  const legs = f.legs;
  const ports = portsOf(sport, dport);
  for (let i = 0; i < legs.length; i++) {
    const l = legs[i] as LegState;
    if (l.src4 === src && l.dst4 === dst && l.ports4 === ports && l.iface === iface && l.direction === direction) return l;
  }
  return undefined;
}

/** Whether a packet with fingerprint `fp` at `timeUs` is a true copy of the latest packet counted on `leg`. */
export function isCopyOf(leg: LegState, fp: number | undefined, timeUs: number): boolean {
  if (fp === undefined || leg.lastFp !== fp || leg.packets === 0) return false;
  const dt = timeUs - leg.lastUs;
  return dt >= 0 && dt < COPY_WINDOW_US;
}

/** Whether `obs` is a true copy of the last packet counted on `leg`. */
export function isCopy(leg: LegState, obs: Observation): boolean {
  return isCopyOf(leg, obs.fingerprint, obs.timeUs);
}

/** Counts one packet on `leg` (a true copy is left out: false). */
export function countPacket(
  f: FlowState,
  leg: LegState,
  timeUs: number,
  wireLen: number,
  fp: number | undefined,
  tcpFlags: number | undefined,
): boolean {
  if (isCopyOf(leg, fp, timeUs)) return false;
  // the fingerprint is kept with the time it goes with: that of the leg's latest packet (-1 when
  // it has none: a fingerprint of -1 just after it would be taken for its copy, 1 in 2^32)
  if (timeUs >= leg.lastUs) {
    leg.lastFp = fp ?? -1;
    leg.lastUs = timeUs;
  }
  leg.packets++;
  leg.bytes += wireLen;
  if (timeUs < leg.firstUs) leg.firstUs = timeUs;
  if (tcpFlags !== undefined) f.tcpFlagsSeen |= tcpFlags;
  f.countersChanged = true;
  f.lastActivityMs = timeUs / 1000;
  return true;
}

/** Counts `obs` on its leg (made when new); a true copy is left out and said so. */
export function recordLeg(f: FlowState, obs: Observation, direction: 'orig' | 'reply'): LegOutcome {
  let leg = findLeg(f, obs, direction);
  let outcome: LegOutcome = 'counted';
  if (!leg) {
    const t = obs.tuple;
    const src4 = t.family === 4 ? packIpv4(t.src) : Number.NaN;
    const dst4 = t.family === 4 ? packIpv4(t.dst) : Number.NaN;
    const v4 = !Number.isNaN(src4) && !Number.isNaN(dst4);
    const form = formOf(f, t);
    leg = {
      iface: obs.iface,
      direction,
      tuple: form < 0 ? t : null,
      form,
      firstUs: obs.timeUs,
      lastUs: obs.timeUs,
      packets: 0,
      bytes: 0,
      lastFp: -1,
      src4: v4 ? src4 : 0,
      dst4: v4 ? dst4 : 0,
      ports4: portsOf(t.sport, t.dport),
    };
    // a new array exactly as long as it is (a pushed-to array keeps room for 17): less memory per live flow
    f.legs = f.legs.concat(leg);
    f.changed = true;
    outcome = 'new-leg';
  }
  return countPacket(f, leg, obs.timeUs, obs.wireLen, obs.fingerprint, obs.tcpFlags) ? outcome : 'copy';
}
