/**
 * What a live capture is asked (CaptureOptions) and tells (CaptureHandleEvents), its defaults, and
 * which interfaces are opened promiscuously.
 */
import type { JourneyError } from '../model/errors.js';
import type { CaptureStats, FrameBatch } from '../model/observation.js';
import type { CaptureBackend } from './backends/registry.js';

/**
 * Whether to open `iface` (of link kind `kind`, from `ip -d link`) in promiscuous mode.
 * A packet socket on a bridge device sees only what the bridge passes up to the host or the host
 * sends through it; frames the bridge forwards from one port to another (container to container,
 * and hairpin NAT: container -> host:port DNATed back out to a container on the same bridge, which
 * br_netfilter bridges without the host's routing once the neighbour is known) are handed to the
 * bridge device only when it is promiscuous (the kernel's br_handle_frame_finish). tcpdump is
 * promiscuous by default, which is why it saw those frames and a non-promiscuous capture did not
 * (measured in the lab, scenario noproxy: 0 of ~48 hairpin packets on docker0 without, all with).
 * So bridges are promiscuous unless the user says otherwise; other interfaces (the uplink) are not.
 */
export function promiscuousFor(requested: boolean | undefined, kind: string | undefined): boolean {
  if (requested !== undefined) return requested;
  return kind === 'bridge';
}

export interface CaptureOptions {
  /** Interface names or globs (`-i`, repeatable; `any` allowed). Empty/absent: auto. */
  readonly interfaces?: readonly string[];
  /** Extra interface names/globs to capture (besides docker0, br-* and the uplink in auto mode, or the -i list). */
  readonly extraInterfaces?: readonly string[];
  /** Also capture the default route's interface in auto mode (default true). */
  readonly uplink?: boolean;
  /** Capture filter, tcpdump syntax (compiled by libpcap in the worker). */
  readonly filter?: string;
  /** Bytes kept per packet (default 262144, as tcpdump). */
  readonly snaplen?: number;
  /** Kernel ring buffer per interface, bytes (default DEFAULT_BUFFER_MIB). */
  readonly bufferSize?: number;
  /**
   * TPACKET_V3 block timeout, ms (default 1): the upper bound of batching delay. Older kernels
   * round it up to whole jiffies (4 ms at HZ=250; 5 ms became 8 ms); this machine's 6.18 keeps it
   * (libpcap alone: 1 ms gives p50 0.6 ms, 5 ms p50 2.7 ms). See DEFAULT_BUFFER_MIB for its cost.
   */
  readonly bufferTimeoutMs?: number;
  /**
   * Promiscuous mode. Default: on for bridge devices (docker0, br-*), off for every other
   * interface; true/false force it everywhere. The cap backend is always promiscuous. See
   * promiscuousFor: without it a bridge's packet socket misses every frame bridged between its ports.
   */
  readonly promiscuous?: boolean;
  /** A declared backend (backends/registry.ts; default DEFAULT_CAPTURE_BACKEND). */
  readonly backend?: CaptureBackend;
  /** Network namespace (name under /var/run/netns, a path, or a pid) to capture in. */
  readonly netns?: string;
  /** How often workers report statistics and 'stats' is emitted, ms (default 1000). */
  readonly statsIntervalMs?: number;
  /** Bytes a worker may have waiting for the main process before it drops batches (default 32 MiB). */
  readonly maxQueueBytes?: number;
  /** Follow interfaces appearing/vanishing (default true). */
  readonly watch?: boolean;
  /** Keep every captured frame in this pcapng file (interface names kept). */
  readonly write?: string;
  /**
   * Fold runs of one IPv4 TCP/UDP connection's packets into one batch entry (the native backend:
   * native-bindings/capture/src/capture-fold.c): a FrameBatch then carries `folds` (`packets`, `firstUs`
   * and `aux` per entry). Off by default (a consumer gets every frame); never with `write`.
   */
  readonly fold?: boolean;
}

export interface CaptureHandleEvents {
  batch: [FrameBatch];
  stats: [CaptureStats[]];
  /** A worker started capturing; `reattached` when the interface had been captured before (re-created): its totals continue. */
  'iface-up': [{ iface: string; linkType: number; pid: number; reattached?: boolean }];
  'iface-down': [{ iface: string; reason: string; stats: CaptureStats }];
  error: [JourneyError];
  /** Something the user should know that is not an error (a backend fallback), once per handle. */
  notice: [JourneyError];
}

/**
 * The kernel ring per interface. libpcap's TPACKET_V3 blocks are 256 KiB whatever the snaplen, and
 * a block is handed over when full or when the timeout retires it: with a short timeout a block
 * leaves part-filled, so at 150,000 frames a second 8 MiB held ~130 ms of traffic and a stalled
 * worker lost frames; 32 MiB holds four times that (kernel memory, per captured interface).
 */
export const DEFAULT_BUFFER_MIB = 32;
/** The block timeout: a light trickle is handed over within 1 ms (older kernels: a jiffy, 4 ms at HZ=250). */
export const DEFAULT_BUFFER_TIMEOUT_MS = 1;
