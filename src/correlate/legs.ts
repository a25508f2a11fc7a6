/**
 * Counting a packet on its flow's leg. What is on the wire is counted: only a true copy of one
 * frame seen twice on the same interface (a promiscuous bridge sees a frame it forwards port to
 * port on its way in and again on its way out) is counted once. A copy has the same fingerprint
 * (IP header checksum, IP id, lengths, TTL, L4 checksum, TCP sequence: decode/observation.ts) and
 * comes less than 1 ms after the frame, never before it.
 * A packet of a leg that exists is counted straight from the decode view (countPacket with the
 * view's numbers: legs keep their IPv4 addresses and ports as int32s for that); an Observation is
 * only made for the packet that creates a leg.
 * A leg is kept small (one per interface and direction of every live flow: a number into the
 * flow's LegStore, leg-store.ts): a copy is checked against the leg's latest packet (its
 * fingerprint and `lastUs`), as one socket delivers a leg's packets in order.
 */
import { packIpv4 } from '../conntrack/packed-key.js';
import type { Observation } from '../model/observation.js';
import type { Tuple } from '../model/tuple.js';
import type { FlowState } from './flow-state.js';
import { NO_LEG } from './leg-store.js';

/** The packets an Observation stands for (more than one for a run the capture folded). */
export function packetsOf(obs: Observation): number {
  return obs.run?.packets ?? 1;
}

/** How far apart two sightings of one frame may be. */
export const COPY_WINDOW_US = 1000;

export type LegOutcome = 'new-leg' | 'counted' | 'copy';

/** One leg per interface, direction and tuple: a hairpinned packet crosses the bridge twice, before and after NAT. */
export function findLeg(f: FlowState, obs: Observation, direction: 'orig' | 'reply'): number {
  const t = obs.tuple;
  const s = f.legStore;
  const ports = portsOf(t.sport, t.dport);
  for (let l = f.firstLeg; l !== NO_LEG; l = s.next[l] as number) {
    if (s.ports4[l] !== ports || s.iface(l) !== obs.iface || s.direction(l) !== direction) continue;
    const lt = legTuple(f, l);
    if (lt.src === t.src && lt.dst === t.dst) return l;
  }
  return NO_LEG;
}

/**
 * The tuple a leg was seen with. A leg of a flow with a conntrack entry keeps no tuple of its own
 * when its tuple is one of the entry's forms (numbered as the conntrack table numbers its keys:
 * 0 orig, 1 reverse(reply), 2 reply, 3 reverse(orig), 4 and 5 between DNAT and SNAT): it is made
 * from the entry's tuples when an event shows it (less memory per live flow).
 */
export function legTuple(f: FlowState, l: number): Tuple {
  return f.legStore.ownTuple(l) ?? formTuple(f.orig, f.reply ?? f.orig, f.legStore.form(l));
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

/** The two ports as one int32 (LegStore.ports4). */
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
): number {
  const s = f.legStore;
  const ports = portsOf(sport, dport);
  for (let l = f.firstLeg; l !== NO_LEG; l = s.next[l] as number) {
    if (s.src4[l] === src && s.dst4[l] === dst && s.ports4[l] === ports && s.iface(l) === iface && s.direction(l) === direction) return l;
  }
  return NO_LEG;
}

/** Whether a packet with fingerprint `fp` at `timeUs` is a true copy of the latest packet counted on leg `l`. */
export function isCopyOf(f: FlowState, l: number, fp: number | undefined, timeUs: number): boolean {
  const s = f.legStore;
  if (fp === undefined || s.lastFp[l] !== fp || s.packets[l] === 0) return false;
  const dt = timeUs - (s.lastUs[l] as number);
  return dt >= 0 && dt < COPY_WINDOW_US;
}

/** Whether `obs` is a true copy of the last packet counted on leg `l`. */
export function isCopy(f: FlowState, l: number, obs: Observation): boolean {
  return isCopyOf(f, l, obs.fingerprint, obs.timeUs);
}

/**
 * Counts one packet on leg `l` (a true copy is left out: false), or a run of `packets` the capture
 * folded (FrameFolds): `timeUs` and `fp` are its latest packet's, `wireLen` their sum, `firstUs`
 * the first's time; `vouched` (the capture checked that none is a copy) skips the copy check.
 */
export function countPacket(
  f: FlowState,
  l: number,
  timeUs: number,
  wireLen: number,
  fp: number | undefined,
  tcpFlags: number | undefined,
  packets = 1,
  firstUs = timeUs,
  vouched = false,
): boolean {
  if (!vouched && isCopyOf(f, l, fp, timeUs)) return false;
  const s = f.legStore;
  // the fingerprint is kept with the time it goes with: that of the leg's latest packet (-1 when
  // it has none: a fingerprint of -1 just after it would be taken for its copy, 1 in 2^32)
  if (timeUs >= (s.lastUs[l] as number)) {
    s.lastFp[l] = fp ?? -1;
    s.lastUs[l] = timeUs;
  }
  s.packets[l] = (s.packets[l] as number) + packets;
  s.bytes[l] = (s.bytes[l] as number) + wireLen;
  if (firstUs < (s.firstUs[l] as number)) s.firstUs[l] = firstUs;
  if (tcpFlags !== undefined) f.tcpFlagsSeen |= tcpFlags;
  f.countersChanged = true;
  f.lastActivityMs = timeUs / 1000;
  return true;
}

/** Counts `obs` on its leg (made when new); a true copy is left out and said so. */
export function recordLeg(f: FlowState, obs: Observation, direction: 'orig' | 'reply'): LegOutcome {
  let leg = findLeg(f, obs, direction);
  let outcome: LegOutcome = 'counted';
  if (leg === NO_LEG) {
    const t = obs.tuple;
    const src4 = t.family === 4 ? packIpv4(t.src) : Number.NaN;
    const dst4 = t.family === 4 ? packIpv4(t.dst) : Number.NaN;
    const v4 = !Number.isNaN(src4) && !Number.isNaN(dst4);
    const form = formOf(f, t);
    const added = f.legStore.add(
      f.firstLeg,
      obs.iface,
      direction,
      form < 0 ? t : null,
      form,
      obs.timeUs,
      v4 ? src4 : 0,
      v4 ? dst4 : 0,
      portsOf(t.sport, t.dport),
    );
    f.firstLeg = added.first;
    leg = added.leg;
    f.changed = true;
    outcome = 'new-leg';
  }
  const r = obs.run;
  const counted =
    r === undefined
      ? countPacket(f, leg, obs.timeUs, obs.wireLen, obs.fingerprint, obs.tcpFlags)
      : countPacket(f, leg, obs.timeUs, obs.wireLen, obs.fingerprint, obs.tcpFlags, r.packets, r.firstUs, r.vouched);
  return counted ? outcome : 'copy';
}
