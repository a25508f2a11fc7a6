import type { Tuple } from './tuple.js';

/**
 * One captured packet, as the correlator needs it: produced by decode/ from a captured frame
 * (the decoder itself works on a reusable view; an Observation is made only for packets kept).
 */
export interface Observation {
  /** Capture time, microseconds since the epoch. */
  readonly timeUs: number;
  /** Interface the packet was captured on (docker0, br-xxxx, eth0, ...). */
  readonly iface: string;
  readonly tuple: Tuple;
  /** Length on the wire. */
  readonly wireLen: number;
  /** TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16) when TCP. */
  readonly tcpFlags?: number;
  /** For ICMP errors: the tuple of the packet embedded in the error. */
  readonly inner?: Tuple;
  /** IPv4 identification (IPv6: the fragment header's id, else 0): with tcpSeq, matches one packet across legs. */
  readonly ipId?: number;
  /** IPv4 TTL / IPv6 hop limit (drops by one per routed hop). */
  readonly ttl?: number;
  /** TCP sequence and acknowledgement numbers (full TCP header captured). */
  readonly tcpSeq?: number;
  readonly tcpAck?: number;
  /** Transport payload length according to the IP header (when the L4 header was complete). */
  readonly payloadLen?: number;
  /** Outer 802.1Q VLAN id when tagged. */
  readonly vlan?: number;
  /** Set for IP fragments: byte offset and more-fragments flag (later fragments have no ports). */
  readonly fragment?: { readonly offset: number; readonly more: boolean };
  /**
   * The packet's fingerprint (IP header checksum, id, lengths, TTL, L4 checksum, TCP sequence):
   * equal for two sightings of one frame, different for distinct packets almost always. Absent
   * when the headers were not captured.
   */
  readonly fingerprint?: number;
  /** Linux cooked captures (`any`): 'out' for packets the host sent, 'in' otherwise. */
  readonly direction?: 'in' | 'out';
  /**
   * A run of packets the capture folded into this one (FrameFolds): how many, the first's time,
   * and that none is a copy. `wireLen` is then their sum, `tcpFlags` their flags together.
   */
  readonly run?: { readonly packets: number; readonly firstUs: number; readonly vouched: boolean };
}

/** A batch of raw frames from one capture worker (the unit of transfer to the main thread). */
export interface FrameBatch {
  readonly iface: string;
  /** libpcap link type (1 = Ethernet, 113 = Linux cooked, 276 = SLL2, 101 = raw IP). */
  readonly linkType: number;
  /** Frames packed back to back; `offsets[i]`..`offsets[i]+lengths[i]` is frame i. */
  readonly data: Uint8Array;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  /** Original wire lengths (may exceed the captured length when snaplen cut it). */
  readonly wireLengths: Uint32Array;
  /** Timestamps in microseconds since the epoch (as float64). */
  readonly timesUs: Float64Array;
  readonly count: number;
  /** Runs folded by the capture (capture-options.ts `fold`): absent when every entry is one frame. */
  readonly folds?: FrameFolds;
}

/**
 * Per entry of a folded batch: entry i stands for `packets[i]` packets of one connection on one
 * interface, in a row; its frame and time are the latest's, `wireLengths[i]` their sum, `firstUs[i]`
 * the first's time. `aux[i]`: the TCP flags seen on them, | FOLD_VOUCHED when the capture vouches
 * that none of them is a copy of the packet before it (the correlator then skips its copy check).
 */
export interface FrameFolds {
  readonly packets: Uint32Array;
  readonly firstUs: Float64Array;
  readonly aux: Uint32Array;
}

/** FrameFolds `aux`: the entry's packets are not copies (see native-bindings/capture/src/capture-fold.c). */
export const FOLD_VOUCHED = 0x100;

export interface CaptureStats {
  readonly iface: string;
  /** Packets libpcap delivered to us. */
  readonly received: number;
  /** Kernel drops (pcap_stats ps_drop) and interface drops (ps_ifdrop). */
  readonly kernelDropped: number;
  readonly ifDropped: number;
  /** Our own drops (queue full, worker behind). */
  readonly ownDropped: number;
  /** Frames the decoder skipped (truncated, unsupported), counted by reason. */
  readonly skipped: Readonly<Record<string, number>>;
  /** Capture backend ('pcap', 'cap', 'file', 'tcpdump'). */
  readonly backend?: string;
  /** True when the backend cannot read kernel drop counts (cap has no pcap_stats): kernelDropped is then 0, not known. */
  readonly kernelStatsUnavailable?: boolean;
  /** CPU time used by the capture worker of this interface, µs (user + system). */
  readonly cpuUs?: number;
}
