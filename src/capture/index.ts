/**
 * Capture: packets from interfaces (live) or files (replay), as FrameBatches.
 *
 * Live — `startCapture(opts): Promise<CaptureHandle>`
 *   One worker *process* per interface (`node dist/src/capture/worker-entry.js`, started through
 *   `nsenter --net=…` when `opts.netns` is set). Neither `pcap` nor `cap` is context-aware, so
 *   worker_threads cannot give each interface its own capture; a process can, survives an addon
 *   crash, and runs on its own core. Each worker copies frames into a batch and writes it to a
 *   pipe in a columnar binary framing (protocol.ts); the main process rebuilds a FrameBatch with
 *   typed-array views on one copy. If the main process falls behind, the worker drops whole
 *   batches and counts them (`ownDropped`): capture never blocks.
 *   Measured (scripts/bench/capture.mjs, 2-core box): the pcap worker costs 0.26-0.40 µs of CPU
 *   per packet, the main process 0.11 µs for the pipe and batch rebuild plus ~0.05 µs to decode;
 *   a worker starts in 0.1-0.2 s and holds ~65-75 MiB RSS (node + an 8 MiB ring). A second
 *   worker_threads worker loading pcap_binding.node fails "Module did not self-register".
 *   Options (CaptureOptions): interfaces (`-i`, names/globs/`any`; empty = auto: docker0, br-*,
 *   extraInterfaces, and the default route's interface), filter (tcpdump syntax, compiled by
 *   libpcap), snaplen (262144), bufferSize (8 MiB), bufferTimeoutMs (50), promiscuous (false),
 *   backend ('pcap' = node-pcap TPACKET_V3 with a block timeout, default; 'cap' = immediate
 *   mode, always promiscuous, no kernel drop counts), netns, statsIntervalMs (1000),
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
 *     interfaces(), stats(), setExtraInterfaces(names) (custom Docker bridge
 *     names), writerCounts(), stop(): Promise<CaptureStats[]> (flushes, final statistics).
 *   Interfaces appearing/vanishing are followed with `ip monitor link route` (in the netns) and
 *   a 5 s poll: no restart, no crash.
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
export { startCapture, CaptureHandle, type CaptureOptions, type CaptureBackend, type CaptureHandleEvents } from './capture.js';
export { readCaptureFiles, readCaptureRecords, type CaptureFileInput, type ReadCaptureOptions, type CaptureRecord } from './pcap-file.js';
export { createPcapngWriter, type PcapngWriter, type PcapngWriterOptions } from './pcapng-writer.js';
export { BatchBuilder, linkTypeFromName } from './batch.js';
export { compileFilter, bpfRun, type BpfProgram } from './bpf.js';
export { listLinks, defaultRouteInterfaces, selectInterfaces, matchesPattern, type LinkInfo } from './devices.js';
