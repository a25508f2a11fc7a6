/**
 * Trailing IP fragments carry no transport header, so alone they would make a flow of their own
 * with ports 0. Like the kernel's reassembly (and tcpdump's "frag" lines that it shows under
 * their datagram), the first fragment's ports are remembered by (protocol, source, destination,
 * IP id) and given to the fragments that follow, so they count in their flow. Bounded: at most
 * `max` datagrams remembered, each for `ttlMs` of packet time (the kernel's ipfrag_time is 30 s).
 * A trailing fragment whose first fragment was never seen stays as it is (ports 0) and is counted.
 */
import type { Observation } from '../model/observation.js';

interface Ports {
  readonly sport: number;
  readonly dport: number;
  readonly atUs: number;
}

export class FragmentPorts {
  private readonly firsts = new Map<string, Ports>();
  /** Trailing fragments given their first fragment's ports. */
  joined = 0;
  /** Trailing fragments whose first fragment was not seen (kept with ports 0). */
  orphans = 0;

  constructor(
    private readonly max = 4096,
    private readonly ttlMs = 30_000,
  ) {}

  /** The observation itself, or for a trailing fragment a copy with its datagram's ports. Only fragments cost anything. */
  join(obs: Observation): Observation {
    const f = obs.fragment;
    if (f === undefined) return obs;
    const t = obs.tuple;
    const key = `${t.protoNum}|${t.src}|${t.dst}|${obs.ipId}`;
    if (f.offset === 0) {
      if (this.firsts.size >= this.max) this.expire(obs.timeUs, true);
      this.firsts.set(key, { sport: t.sport, dport: t.dport, atUs: obs.timeUs });
      return obs;
    }
    const p = this.firsts.get(key);
    if (p === undefined || obs.timeUs - p.atUs > this.ttlMs * 1000) {
      this.orphans++;
      return obs;
    }
    // the last fragment ends the datagram
    if (!f.more) this.firsts.delete(key);
    this.joined++;
    return { ...obs, tuple: { ...t, sport: p.sport, dport: p.dport } };
  }

  /** Drops datagrams older than the TTL; when still full, the oldest (Map order = insertion order). */
  private expire(nowUs: number, needRoom: boolean): void {
    for (const [k, p] of this.firsts) {
      if (nowUs - p.atUs <= this.ttlMs * 1000 && !(needRoom && this.firsts.size >= this.max)) break;
      this.firsts.delete(k);
    }
  }
}
