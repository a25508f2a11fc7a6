/**
 * Capture: packets from interfaces (live) or files (replay), as FrameBatches.
 *
 * Live — `startCapture(opts): Promise<CaptureHandle>`
 *   One worker *process* per interface (`node dist/src/capture/worker-entry.js`, started through
 *   `nsenter --net=…` when `opts.netns` is set): a process runs on its own core, survives an addon
 *   crash, and works with addons that are not context-aware (node-pcap, cap: a second
 *   worker_threads worker loading pcap_binding.node fails "Module did not self-register").
 *   Backends (`opts.backend`, `journey watch --backend`) are declared in backends/ (one file each,
 *   one line in backends/registry.ts, the shape in backends/shape.ts):
 *   - `native` (default): journey's own addon, native-bindings/capture (C, libpcap TPACKET_V3 with
 *     a block timeout, context-aware N-API). The worker drains the ring on its own thread
 *     (nextBatchSync, at most 100 ms per call so "stop" is seen); the addon packs every frame
 *     into ONE BATCH message of protocol.ts and writes it to the pipe itself: no JavaScript per
 *     packet, nothing allocated per batch. When the pipe is backed up each batch becomes a
 *     message of its own (exactly its length, still drained on the worker's thread, without
 *     waiting for the ring) and queues in order (then drop, counted, past maxQueueBytes).
 *     Missing, unloadable or JOURNEY_CAPTURE_NATIVE=off: falls back to `pcap`, said once per
 *     handle ('notice' event, E_NATIVE; `handle.backend`, `handle.fallback`).
 *   - `pcap`: node-pcap (TPACKET_V3, block timeout), a JS callback per packet.
 *   - `cap`: immediate mode (a wakeup per packet), always promiscuous, no kernel drop counts.
 *   The main process rebuilds a FrameBatch with typed-array views on one copy of each message.
 *   If it falls behind, the worker drops whole batches and counts them (`ownDropped`): capture
 *   never blocks.
 *   What it costs: scripts/bench/capture.mjs (README, "Measured").
 *   The pipe: an AF_UNIX socketpair made by the addon (else child_process's), 1 MiB send buffer;
 *   the main process reads it into one reused 1 MiB buffer (net.Socket onread).
 *   Options (CaptureOptions): interfaces (`-i`, names/globs/`any`; empty = auto: docker0, br-*,
 *   extraInterfaces, and the default route's interface), filter (tcpdump syntax, compiled by
 *   libpcap), snaplen (262144), bufferSize (32 MiB), bufferTimeoutMs (1; older kernels round it up to a jiffy: a light trickle is handed over within a few ms), promiscuous (default: on for
 *   bridges, off elsewhere: a bridge's packet socket sees frames bridged between its ports, e.g.
 *   hairpin NAT, only when promiscuous; see promiscuousFor),
 *   backend ('native' default, 'pcap', 'cap'), netns, statsIntervalMs (1000),
 *   maxQueueBytes (32 MiB), watch (true), write (pcapng path).
 *   Rejects with JourneyError E_CAPTURE when an initial interface cannot be opened (bad filter,
 *   no such interface, no permission).
 *   CaptureHandle (EventEmitter):
 *     'batch'      (FrameBatch)            frames of one interface, in capture order
 *     'stats'      (CaptureStats[])        every statsIntervalMs: received, kernelDropped
 *                                          (pcap_stats ps_drop), ifDropped, ownDropped, cpuUs
 *     'iface-up'   ({iface, linkType, pid}) a worker started capturing (also at start)
 *     'iface-down' ({iface, reason, stats}) an interface vanished / went down / was deselected
 *     'error'      (JourneyError)          non-fatal: a worker failed (restarted with backoff
 *                                          while its interface exists)
 *     'notice'     (JourneyError E_NATIVE) the native backend fell back to pcap (once)
 *     backend, fallback, interfaces(), stats(), setExtraInterfaces(names) (custom Docker bridge
 *     names), writerCounts(), stop(): Promise<CaptureStats[]> (flushes, final statistics).
 *   Interfaces appearing/vanishing are followed with `ip monitor link route` (in the netns) and
 *   a poll (5 s, 30 s while the monitor runs): no restart, no crash.
 *
 * Replay — `readCaptureFiles(inputs, {filter, skipped, counts, onSkip, batchFrames}): AsyncIterable<FrameBatch>`
 *   `filter`: tcpdump syntax, compiled by libpcap (`tcpdump -ddd`) for each link type and run as
 *   classic BPF on every frame (bpf.ts), so a replay filters exactly as a live capture would.
 *   pcap (LE/BE, µs/ns) and pcapng (sections, IDB if_name/if_tsresol/if_tsoffset, EPB/SPB/PB).
 *   Several files (one per interface) are merged by time. Interface name: pcapng if_name, else
 *   `{path, iface}`, else the file name without extension. Garbage → JourneyError E_PARSE
 *   (file + byte offset); a truncated tail or unknown block → counted in `skipped`.
 *
 * Writing — `createPcapngWriter(path)`: writeBatch(b), writeFrame(...), close(); bounded buffer,
 *   frames dropped when the disk is behind are counted (`dropped`).
 *
 * Decoding lives in ../decode: `decodeFrame(batch, i, view, skips?)` fills a reused PacketView
 * (no allocation, never throws); `observationFromView(view, iface, timeUs?)` makes an
 * Observation only for packets you keep.
 */
export { startCapture, CaptureHandle } from './capture.js';
export type { CaptureOptions, CaptureHandleEvents } from './capture-options.js';
export {
  CAPTURE_BACKEND_REGISTRY,
  CAPTURE_BACKENDS,
  DEFAULT_CAPTURE_BACKEND,
  captureBackend,
  resolveCaptureBackend,
  type CaptureBackend,
} from './backends/registry.js';
export type { CaptureBackendDef } from './backends/shape.js';
export { loadCaptureAddon, captureAddonPath, type CaptureAddon, type AddonLoad } from './native-addon.js';
export { readCaptureFiles, readCaptureRecords, type CaptureFileInput, type ReadCaptureOptions, type CaptureRecord } from './pcap-file.js';
export { createPcapngWriter, type PcapngWriter, type PcapngWriterOptions } from './pcapng-writer.js';
export { BatchBuilder, linkTypeFromName } from './batch.js';
export { compileFilter, bpfRun, type BpfProgram } from './bpf.js';
export { listLinks, defaultRouteInterfaces, selectInterfaces, matchesPattern, type LinkInfo } from './devices.js';
