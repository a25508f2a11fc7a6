/**
 * `journey explain --netns NAME --verify [SECONDS]`: one packet's explanation checked against the
 * kernel's own trace of a real packet of that shape. journey arms a trace for exactly that packet
 * (its own `inet journey_trace_<pid>` table, src/netfilter/trace-arm.ts: the addresses, protocol,
 * destination port, source port when given, the TCP SYN / ICMP echo request that opens a
 * connection, the input interface), then
 *  - for a packet the host sends itself (--local, TCP or UDP), sends it: a probe from the
 *    namespace, from the given source address and port;
 *  - otherwise waits for the next matching packet (up to SECONDS).
 * The simulator explains the packet the kernel traced (its real source port) and the comparison
 * is flow-verify.ts's: verified, contradicted (the kernel's path wins) or unverified (why).
 */
import { run } from '../host/exec.js';
import type { FlowInfo } from '../model/events.js';
import type { Explanation } from '../model/explanation.js';
import type { Tuple } from '../model/tuple.js';
import type { TracePacket } from '../netfilter/kernel-trace.js';
import { TraceArm, traceUnavailable } from '../netfilter/trace-arm.js';
import { canonicalIp } from '../ruleset/ip.js';
import type { Ruleset } from '../ruleset/model.js';
import { unverified, verifyWithTrace } from './flow-verify.js';

export interface PacketVerifyOptions {
  readonly netns?: string;
  /** The packet asked about (its sport is the one to send from, when `sportGiven`). */
  readonly tuple: Tuple;
  readonly srcGiven: boolean;
  readonly sportGiven: boolean;
  readonly local: boolean;
  readonly iif?: string;
  /** How long to wait for the packet. */
  readonly timeoutMs: number;
  /** The simulator's explanation of a packet (called with the tuple the kernel traced). */
  readonly explain: (t: Tuple) => Explanation;
  readonly ruleset: Ruleset;
}

/** The nft match of the packet: what it must be to be traced. */
export function packetMatch(o: Pick<PacketVerifyOptions, 'tuple' | 'srcGiven' | 'sportGiven' | 'local' | 'iif'>): string {
  const t = o.tuple;
  const fam = t.family === 6 ? 'ip6' : 'ip';
  const parts: string[] = [];
  if (!o.local && o.iif !== undefined) parts.push(`iifname "${o.iif}"`);
  if (o.srcGiven && t.src !== '') parts.push(`${fam} saddr ${t.src}`);
  parts.push(`${fam} daddr ${t.dst}`);
  if (t.proto === 'tcp' || t.proto === 'udp') {
    parts.push(`meta l4proto ${t.proto}`);
    if (o.sportGiven) parts.push(`${t.proto} sport ${t.sport}`);
    parts.push(`${t.proto} dport ${t.dport}`);
    if (t.proto === 'tcp') parts.push('tcp flags & (fin|syn|rst|ack) == syn');
  } else if (t.proto === 'icmp') parts.push('icmp type echo-request');
  else if (t.proto === 'icmpv6') parts.push('icmpv6 type echo-request');
  else parts.push(`meta l4proto ${t.protoNum}`);
  return parts.join(' ');
}

/** The first traced packet of that shape. */
function tracedPacket(packets: readonly TracePacket[], t: Tuple): TracePacket | null {
  const icmp = t.proto === 'icmp' || t.proto === 'icmpv6';
  for (const p of packets) {
    const h = p.first;
    if (p.entry === null || h?.daddr === undefined || canonicalIp(h.daddr) !== canonicalIp(t.dst)) continue;
    if (icmp ? h.proto === t.proto : h.proto === t.proto && h.dport === t.dport) return p;
  }
  return null;
}

/** A probe from the namespace: one TCP SYN (a connect) or one UDP datagram from src:sport. */
async function sendProbe(o: PacketVerifyOptions): Promise<void> {
  const t = o.tuple;
  const local = {
    ...(o.srcGiven && t.src !== '' ? { localAddress: t.src } : {}),
    ...(o.sportGiven ? { localPort: t.sport } : {}),
  };
  const script =
    t.proto === 'tcp'
      ? `const s=require('net').connect({host:${JSON.stringify(t.dst)},port:${t.dport},...${JSON.stringify(local)}});s.on('connect',()=>s.destroy());s.on('error',()=>{});setTimeout(()=>process.exit(0),1500).unref()`
      : `const s=require('dgram').createSocket(${JSON.stringify(t.family === 6 ? 'udp6' : 'udp4')});s.bind(${local.localPort ?? 0},${JSON.stringify(local.localAddress ?? '')}||undefined,()=>s.send('journey',${t.dport},${JSON.stringify(t.dst)},()=>s.close()))`;
  await run([process.execPath, '-e', script], { ...(o.netns !== undefined ? { netns: o.netns } : {}), allowFailure: true, timeoutMs: 10_000 });
}

/** Explains the packet and checks the explanation against the kernel's trace of a real one. */
export async function verifyPacket(o: PacketVerifyOptions): Promise<Explanation> {
  const why = await traceUnavailable(o.netns);
  if (why !== null) return unverified(o.explain(o.tuple), why);
  const arm = new TraceArm({ ...(o.netns !== undefined ? { netns: o.netns } : {}), rate: 1, match: packetMatch(o) });
  try {
    await arm.start();
    await new Promise((r) => setTimeout(r, 200)); // the monitor subscribes
    const probe = o.local && (o.tuple.proto === 'tcp' || o.tuple.proto === 'udp');
    if (probe) await sendProbe(o);
    let p: TracePacket | null = null;
    for (const end = Date.now() + (probe ? Math.min(o.timeoutMs, 5_000) : o.timeoutMs); p === null && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 100));
      p = tracedPacket(arm.trace().packets, o.tuple);
    }
    if (p === null)
      return unverified(
        o.explain(o.tuple),
        probe
          ? 'the packet never came: the probe journey sent was not traced'
          : `the packet never came: no matching packet in ${Math.round(o.timeoutMs / 1000)} s (journey sends one itself only for --local TCP/UDP)`,
      );
    await new Promise((r) => setTimeout(r, 150)); // the rest of its path
    const packets = arm.trace().packets;
    const h = p.first;
    const icmp = o.tuple.proto === 'icmp' || o.tuple.proto === 'icmpv6';
    const tuple: Tuple = {
      ...o.tuple,
      src: h?.saddr ?? o.tuple.src,
      ...(icmp ? { sport: h?.icmpId ?? o.tuple.sport, dport: h?.icmpId ?? o.tuple.dport } : { sport: h?.sport ?? o.tuple.sport }),
    };
    const flow: FlowInfo = {
      id: 'probe',
      orig: tuple,
      reply: null,
      nat: { dnat: null, snat: null },
      legs: [],
      names: [],
      ctStatus: [],
      explanation: null,
      drops: [],
    };
    return verifyWithTrace(o.explain(tuple), flow, packets, p, o.ruleset, arm.table);
  } catch (e) {
    return unverified(o.explain(o.tuple), `the trace could not be armed: ${(e as Error).message}`);
  } finally {
    await arm.stop();
  }
}
