/**
 * Correlator: observations + conntrack events -> flows -> JourneyEvents (flow.start/update/end).
 *
 * A flow is one conntrack entry. Each captured packet is attached to its flow by matching its
 * tuple against the entry's four keys (see conntrack/table.ts), so the pre-NAT uplink packet and
 * the post-NAT bridge packet land in one flow, each as a leg: interface, direction, tuple as seen,
 * first/last time, packets, bytes.
 *
 * - Packets that arrive before their conntrack event wait in a bounded queue (holdMs, maxPending).
 *   When the hold expires without an entry, they become a flow of their own with no conntrack
 *   entry (`ctStatus: []`, id "pkt:..."): a packet dropped before conntrack confirmed it (the
 *   isolation drop in FORWARD) still shows, and never reaches the other bridge. Counted.
 * - Time is driven by the inputs (packet and event times) and `tick(nowMs)`, so a replay behaves
 *   like the live run it recorded.
 * - flow.start is emitted as soon as the flow's first packet joins it (startDelayMs 0), or
 *   `startDelayMs` after the flow appears (legs on both sides of NAT are in by then, for a terminal
 *   line); a flow known only from conntrack starts after max(4 × startDelayMs, 1 s) without packets.
 *   flow.update when a leg appears, the TCP state / status / explanation / docker-proxy
 *   link changes, or counters changed and `updateIntervalMs` passed; flow.end when conntrack
 *   destroys the entry, the flow idles out, is evicted, or at shutdown.
 * - Bounded: at most `maxFlows` flows (oldest evicted, counted), idle timeout, a hold queue bounded
 *   by packets and bytes.
 * The parts: flow-table.ts (the live flows and their events, which this extends), flow-sweep.ts
 * (which flows a tick looks at), flow-state.ts (a flow, its FlowInfo), legs.ts (counting a packet,
 * true copies), leg-store.ts (where the legs are kept), hold-queue.ts, drop-stash.ts,
 * packet-kinds.ts, flow-names.ts, correlator-options.ts (options, defaults, statistics),
 * flow-events.ts (a flow's explanation and its FlowEvent).
 */
import { protoCodeOfNumber } from '../conntrack/packed-key.js';
import { ConntrackTable } from '../conntrack/table.js';
import { IPPROTO_TCP } from '../decode/frame.js';
import { fingerprint } from '../decode/observation.js';
import type { PacketView } from '../decode/view.js';
import type { ConntrackEntry, ConntrackEvent } from '../model/conntrack.js';
import type { DropInfo } from '../model/events.js';
import { FOLD_VOUCHED, type Observation } from '../model/observation.js';
import { reverseTuple, tupleKey, type Tuple } from '../model/tuple.js';
import { CORRELATOR_DEFAULTS, type CorrelatorOptions, type CorrelatorStats } from './correlator-options.js';
import { addDrop, DropStash } from './drop-stash.js';
import { applyEntry, flowNat, newFlowState, type FlowState } from './flow-state.js';
import { FlowTable } from './flow-table.js';
import { type Held, HoldQueue } from './hold-queue.js';
import { NO_LEG } from './leg-store.js';
import { countPacket, findLegPacked, packetsOf, recordLeg } from './legs.js';
import { isLinkControl, probeTuple } from './packet-kinds.js';

export type { CorrelatorOptions, CorrelatorStats, FlowExplainer, NameResolver, ProxyLinker } from './correlator-options.js';
export { isLinkControl } from './packet-kinds.js';

function synthId(t: Tuple): string {
  return `pkt:${tupleKey(t)}`;
}

export class Correlator extends FlowTable {
  readonly table: ConntrackTable;
  /** conntrack-less flows by packet tuple key (both directions). */
  private readonly synthIndex = new Map<string, string>();
  /** Destroyed entries kept findable for a grace period: id -> destroy time. */
  private readonly graveyard = new Map<string, number>();
  private readonly hold: HoldQueue;
  /** Drops whose flow does not exist yet (its packets are still held). */
  private readonly dropStash: DropStash;

  constructor(opts: CorrelatorOptions) {
    super({ ...CORRELATOR_DEFAULTS, ...opts });
    this.table = new ConntrackTable({ maxEntries: this.o.maxEntries });
    this.hold = new HoldQueue(this.o.maxPending, this.o.maxPendingBytes);
    this.dropStash = new DropStash(this.o.maxDropsPerFlow);
  }

  stats(): CorrelatorStats {
    return {
      ...this.counters,
      flowsLive: this.flows.size,
      ctEntries: this.table.size,
      ctEvicted: this.table.evicted,
      pendingNow: this.hold.size,
      dropsUnjoined: this.dropStash.unjoined,
    };
  }

  /** Entries that existed before we started: flows are made when their packets arrive. */
  loadDump(entries: readonly ConntrackEntry[]): void {
    for (const e of entries) this.table.upsert(e);
    if (!this.o.lazyDumped) for (const e of entries) this.ensureFlow(e, this.nowMs);
    this.retryPending();
  }

  onConntrack(events: readonly ConntrackEvent[]): void {
    for (const ev of events) {
      this.advance(ev.time);
      if (ev.type === 'destroy') {
        // captures lag conntrack events: the entry stays findable for `destroyGraceMs`, so the
        // packets of a short connection (a refused SYN, a DNS answer) still join their flow
        if (this.o.destroyGraceMs <= 0) this.finishDestroy(ev.entry.id);
        else this.graveyard.set(ev.entry.id, this.nowMs);
        const f = this.flows.get(ev.entry.id);
        if (f && f.entry !== null) {
          // keep the last known state (a DESTROY may come without it)
          applyEntry(f, ev.entry.tcpState === undefined && f.entry.tcpState !== undefined ? { ...ev.entry, tcpState: f.entry.tcpState } : ev.entry);
          this.sweep.touch(f);
        }
        continue;
      }
      // the id came back (reused by the kernel): the old connection is over
      if (this.graveyard.has(ev.entry.id)) this.finishDestroy(ev.entry.id);
      this.table.upsert(ev.entry);
      const f = this.flows.get(ev.entry.id);
      if (f) {
        applyEntry(f, ev.entry);
        f.lastActivityMs = this.nowMs;
        this.sweep.touch(f);
      } else if (ev.type === 'new') {
        this.ensureFlow(ev.entry, ev.time || this.nowMs);
      }
      // held packets join before the next event (a destroy may follow at once)
      this.retryPendingFor(ev.entry);
    }
  }

  private ensureFlow(e: ConntrackEntry, atMs: number): FlowState {
    const existing = this.flows.get(e.id);
    if (existing) return existing;
    const f = newFlowState(e.id, e, e.orig, e.reply, e.tcpState, atMs, this.legStore);
    this.addFlow(f);
    this.takeStashedDrops(f);
    this.linkProxy(f);
    return f;
  }

  /** docker-proxy halves are paired in the order conntrack created them. */
  private linkProxy(f: FlowState): void {
    if (!this.o.proxyLinker) return;
    for (const link of this.o.proxyLinker.onFlow({ id: f.id, orig: f.orig, reply: f.reply, nat: flowNat(f) }, f.createdMs * 1000)) {
      const target = this.flows.get(link.flowId);
      if (target) {
        Object.assign(target, { proxiedBy: link.proxiedBy, changed: true });
        this.sweep.touch(target);
      }
    }
  }

  /**
   * A packet the kernel dropped (eBPF): joined to its flow by the connection's original tuple
   * (`ctOrig`, when the skb had a conntrack entry) or the packet's tuple. A drop whose flow does
   * not exist yet (its packets still held) waits with them. Returns the flow id when joined.
   */
  onDrop(drop: DropInfo, ctOrig: Tuple | null): string | null {
    this.counters.drops++;
    this.advance(drop.timeUs / 1000);
    const probes = [ctOrig, drop.tuple].filter((t): t is Tuple => t !== null);
    for (const t of probes) {
      const m = this.table.lookup(t);
      const f = m
        ? (this.flows.get(m.entry.id) ?? this.ensureFlow(m.entry, drop.timeUs / 1000))
        : this.flows.get(this.synthIndex.get(tupleKey(t)) ?? '');
      if (f) {
        this.addDrop(f, drop);
        return f.id;
      }
    }
    const t = probes[0];
    if (t === undefined) {
      this.dropStash.unjoined++;
      return null;
    }
    this.dropStash.add(tupleKey(t), drop, this.nowMs);
    return null;
  }

  private addDrop(f: FlowState, drop: DropInfo): void {
    if (!addDrop(f, drop, this.o.maxDropsPerFlow)) this.counters.dropsOverLimit++;
    this.sweep.touch(f);
  }

  private takeStashedDrops(f: FlowState): void {
    for (const d of this.dropStash.takeFor(f)) this.addDrop(f, d);
  }

  /** Attaches a batch of observations (in time order). */
  onObservations(obs: readonly Observation[]): void {
    for (const o of obs) this.onObservation(o);
  }

  onObservation(obs: Observation): void {
    this.advance(obs.timeUs / 1000);
    if (!this.attach(obs)) {
      const key = tupleKey(probeTuple(obs));
      if (!this.hold.hold(obs, key, this.nowMs)) {
        // full: the oldest quarter stops waiting now (as at the end of its hold) rather than this
        // packet being lost; a flood of untracked tuples then finds its flows without waiting
        this.expireEarly(Math.max(1, this.hold.size >> 2));
        if (!this.hold.hold(obs, key, this.nowMs)) {
          this.counters.pendingOverflow += packetsOf(obs);
          this.tallies.of(obs.iface).holdOverflow += packetsOf(obs);
          return;
        }
      }
      this.counters.packetsHeld += packetsOf(obs);
    }
  }

  /**
   * A packet straight from the decode view: an IPv4 packet of a flow and leg that exist is counted
   * from the view's numbers, allocating nothing. False when it is not one (a new flow or leg, no
   * entry yet, IPv6, a fragment, an ICMP error): the caller makes an Observation for onObservation.
   * A folded entry (the view's `packets` > 1) is counted as the run of packets it stands for.
   */
  onPacket(v: PacketView, iface: string): boolean {
    if (v.family !== 4 || v.hasInner || v.fragOffset !== 0 || v.moreFragments) return false;
    const sport = v.l4State > 0 ? v.sport : 0;
    const dport = v.l4State > 0 ? v.dport : 0;
    const e = this.table.lookupPacked(protoCodeOfNumber(v.protoNum), v.src4 | 0, v.dst4 | 0, sport, dport);
    if (e === undefined) return false;
    // the flow rides on the entry's slot: one lookup a packet, not two
    let f = this.table.matchAttached as FlowState | null;
    if (f === null || f.gone || f.entry !== e) {
      f = this.flows.get(e.id) ?? null;
      if (f === null) return false;
      this.table.attachToMatch(f);
    }
    const leg = findLegPacked(f, iface, this.table.matchDirection, v.src4 | 0, v.dst4 | 0, sport, dport);
    if (leg === NO_LEG) return false;
    this.advance(v.timeUs / 1000);
    const n = v.packets;
    this.counters.packetsMatched += n;
    const tcpFlags = v.protoNum === IPPROTO_TCP && v.l4State === 2 ? v.tcpFlags | (v.runAux & 0xff) : undefined;
    if (!countPacket(f, leg, v.timeUs, v.wireLen, fingerprint(v), tcpFlags, n, n === 1 ? v.timeUs : v.firstUs, (v.runAux & FOLD_VOUCHED) !== 0)) {
      this.counters.sameTwice += n;
      this.tallies.of(iface).copies += n;
    } else if (!f.started && this.o.startDelayMs <= 0) this.start(f);
    return true;
  }

  /** Finds the flow of a packet and records the leg; false when no entry matches yet. */
  private attach(obs: Observation, fromPending = false): boolean {
    const probe = probeTuple(obs);
    const m = this.table.lookup(probe);
    let f: FlowState | undefined;
    let direction: 'orig' | 'reply';
    if (m) {
      f = this.flows.get(m.entry.id) ?? this.ensureFlow(m.entry, obs.timeUs / 1000);
      direction = m.direction;
    } else {
      const sid = this.synthIndex.get(tupleKey(probe));
      if (sid === undefined) return false;
      f = this.flows.get(sid);
      if (!f) {
        this.synthIndex.delete(tupleKey(probe));
        return false;
      }
      direction = tupleKey(probe) === tupleKey(f.orig) ? 'orig' : 'reply';
    }
    this.counters.packetsMatched += packetsOf(obs);
    if (fromPending) this.counters.packetsHeldMatched += packetsOf(obs);
    this.recordLeg(f, obs, direction);
    return true;
  }

  private recordLeg(f: FlowState, obs: Observation, direction: 'orig' | 'reply'): void {
    const outcome = recordLeg(f, obs, direction);
    if (outcome === 'copy') {
      this.counters.sameTwice += packetsOf(obs);
      this.tallies.of(obs.iface).copies += packetsOf(obs);
      return;
    }
    if (outcome === 'new-leg') this.sweep.touch(f);
    // the first packet of a flow starts it at once unless a start delay is asked for
    if (!f.started && this.o.startDelayMs <= 0) this.start(f);
  }

  /** A new conntrack entry: the packets held for any of its keys join it now, in arrival order. */
  private retryPendingFor(e: ConntrackEntry): void {
    if (this.hold.size === 0) return;
    const keys = [e.orig, e.reply, reverseTuple(e.orig), reverseTuple(e.reply)].map(tupleKey);
    for (const p of this.hold.take(keys)) {
      if (!this.attach(p.obs, true)) this.synthFlow(p.obs);
    }
  }

  private retryPending(): void {
    for (const e of this.table.entries()) {
      if (this.hold.size === 0) return;
      this.retryPendingFor(e);
    }
  }

  /** Packets whose hold expired: conntrack-less flows (dropped before confirmation, untracked...). */
  private expirePending(holdMs = this.o.holdMs): void {
    this.unhold(this.hold.expire(this.nowMs, holdMs));
  }

  private expireEarly(n: number): void {
    const early = this.hold.expireOldest(n);
    this.counters.pendingEarly += early.length;
    this.unhold(early);
  }

  private unhold(held: readonly Held[]): void {
    for (const p of held) {
      if (this.attach(p.obs, true)) continue;
      if (!isLinkControl(p.obs)) this.counters.packetsUnmatched += packetsOf(p.obs);
      this.synthFlow(p.obs);
    }
  }

  private synthFlow(obs: Observation): void {
    if (isLinkControl(obs)) {
      this.counters.linkControl += packetsOf(obs);
      this.tallies.of(obs.iface).linkControl += packetsOf(obs);
      return;
    }
    const t = probeTuple(obs);
    const id = synthId(t);
    let f = this.flows.get(id);
    const created = !f;
    if (!f) {
      f = newFlowState(id, null, t, null, undefined, obs.timeUs / 1000, this.legStore);
      this.synthIndex.set(tupleKey(t), id);
      this.synthIndex.set(tupleKey(reverseTuple(t)), id);
      this.addFlow(f);
      this.takeStashedDrops(f);
      this.linkProxy(f); // untracked (no conntrack entry): an IPv6 client of docker-proxy on a host with no ip6 rules
    }
    this.recordLeg(f, obs, tupleKey(t) === tupleKey(obs.tuple) || obs.inner !== undefined ? 'orig' : 'reply');
    // later packets of the same tuple still held join now, in their order (not after packets that
    // come later and find the new flow at once)
    if (created) for (const p of this.hold.take([tupleKey(t), tupleKey(reverseTuple(t))])) this.attach(p.obs, true);
  }

  /** The end of a destroyed entry's grace: it leaves the table and its flow ends. */
  private finishDestroy(id: string): void {
    this.graveyard.delete(id);
    this.table.remove(id);
    const f = this.flows.get(id);
    if (f && f.entry !== null) this.end(f, 'destroyed');
  }

  /** Advances time: expires held packets, starts/updates/ends flows. Call every ~100 ms. */
  tick(nowMs?: number): void {
    if (nowMs !== undefined) this.advance(nowMs);
    this.expirePending();
    const now = this.nowMs;
    this.dropStash.expire(now - this.o.holdMs * 2);
    for (const [id, at] of this.graveyard) {
      if (now - at < this.o.destroyGraceMs) break; // insertion order = time order
      this.finishDestroy(id);
    }
    this.tickFlows(now);
  }

  /** A conntrack-less flow that ended is no longer found by its tuple. */
  protected override ended(f: FlowState): void {
    if (f.entry === null) {
      this.synthIndex.delete(tupleKey(f.orig));
      this.synthIndex.delete(tupleKey(reverseTuple(f.orig)));
    }
  }

  /** Ends every flow (shutdown or end of a replay). */
  flush(reason = 'shutdown'): void {
    this.tick();
    for (const id of [...this.graveyard.keys()]) this.finishDestroy(id);
    // held packets that never found an entry become flows now
    this.nowMs += this.o.holdMs;
    this.expirePending();
    for (const f of [...this.flows.values()]) this.end(f, reason);
  }
}
