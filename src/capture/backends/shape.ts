/**
 * The shape of a capture backend. A backend is one file in this folder plus one line in
 * registry.ts; everything else (worker processes, the pipe, statistics, restarts) is shared.
 *
 * The main process asks a backend whether it can run here (`unavailable`) and, when it cannot,
 * which declared backend takes its place (`fallback`, always announced). The capture worker process
 * (worker-entry.ts) calls `open` once: the backend opens the interface and either hands frames to
 * the shared batcher one by one (`sink.add`) or drives its own read loop (`run`) that writes
 * whole batches to the pipe.
 */
import type { Socket } from 'node:net';
import type { WorkerErrorMessage } from '../protocol.js';

/** What a capture worker was asked to open (sent to it as JSON on its command line). */
export interface WorkerConfig {
  iface: string;
  backend: string;
  filter: string;
  snaplen: number;
  bufferSize: number;
  /** TPACKET_V3 block timeout, ms: the longest a frame waits in a ring block before it is handed over. */
  bufferTimeoutMs: number;
  promiscuous: boolean;
  statsIntervalMs: number;
  maxQueueBytes: number;
  /** Frames per batch and bytes per batch before a forced flush. */
  batchFrames: number;
  batchBytes: number;
  /** Fold runs of one connection's packets into one batch entry (a backend that can: native). */
  fold: boolean;
}

/** pcap_stats of a capture (-1 when the backend cannot tell). */
export interface KernelCounts {
  psRecv: number;
  drop: number;
  ifdrop: number;
}

/** The worker's side that a backend writes into. */
export interface WorkerSink {
  /** Copies one frame into the batch being built (flushed when full, or by `flush`). */
  add(src: Buffer, capLen: number, wireLen: number, timeUs: number): void;
  /** Sends the batch being built (dropped and counted when the pipe is backed up past maxQueueBytes). */
  flush(): void;
  /** Reports an error to the main process and exits with `exitCode`. */
  fail(phase: WorkerErrorMessage['phase'], message: string, exitCode?: number): void;
  /** The pipe to the main process (fd 3). */
  readonly out: Socket;
  /** Frames taken from the backend, frames dropped because the pipe was full, batches sent. */
  readonly counters: { received: number; ownDropped: number; batches: number };
}

/** Lets a backend with its own read loop see a stop request and end the worker. */
export interface RunControl {
  /** True once "stop" was asked. */
  stopping(): boolean;
  /** Until when (Date.now() ms) the loop keeps draining after a stop (the last ring block retires). */
  stopAt(): number;
  /** Final flush, statistics and exit. */
  finish(): void;
}

/** An open capture inside the worker. */
export interface OpenedCapture {
  /** LINKTYPE_* of the frames. */
  readonly linkType: number;
  /** Kernel counters now. */
  stats(): KernelCounts;
  close(): void;
  /** Reads what the backend still holds, before the last flush. */
  drain?(): void;
  /** Backends that read in their own loop (started after HELLO); without it frames come through `sink.add`. */
  run?(ctl: RunControl): void;
  /** Backends without `run`: ms between "stop" and the last flush (frames still in a ring block). */
  readonly stopDelayMs: number;
}

export interface CaptureBackendDef<N extends string = string> {
  readonly name: N;
  /** What it is called in messages ("node-pcap"). */
  readonly label: string;
  /** One line for --help and the docs. */
  readonly description: string;
  /** Whether the backend reads the kernel's drop counters (pcap_stats). */
  readonly kernelStats: boolean;
  /** Why this backend cannot run in this process (main side), or null when it can. */
  unavailable?(): string | null;
  /** The declared backend used instead when `unavailable` gives a reason (the switch is announced). */
  readonly fallback?: string;
  /** In the worker process: opens `cfg.iface`. Throws with a message when it cannot. */
  open(cfg: WorkerConfig, sink: WorkerSink): OpenedCapture;
}
