/**
 * Reads pcap (both byte orders, µs and ns) and pcapng (several sections and interfaces, if_name,
 * if_tsresol, if_tsoffset; EPB, SPB and the obsolete PB) files into FrameBatches, streaming.
 * Several files (one per interface) are merged into one timeline. Garbage raises
 * JourneyError('E_PARSE') naming the file and byte offset; a truncated tail is a counted skip.
 * The records themselves are read by pcap-records.ts and pcapng-records.ts.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { JourneyError } from '../model/errors.js';
import type { FrameBatch } from '../model/observation.js';
import { BatchBuilder } from './batch.js';
import { bpfRun, compileFilter, type BpfProgram } from './bpf.js';
import { type CaptureRecord, Cursor, PcapParser, type RecordParser, type SkipFn, baseName, parseError } from './pcap-records.js';
import { PcapngParser, SHB } from './pcapng-records.js';

export type { CaptureRecord } from './pcap-records.js';

export interface CaptureFileInput {
  readonly path: string;
  /** Interface name for a classic pcap (default: the file name without extension). */
  readonly iface?: string;
}

export interface ReadCaptureOptions {
  /** Frames per batch (default 1024). */
  readonly batchFrames?: number;
  /** Called for every skipped record or block (truncated tail, unknown interface, ...). */
  readonly onSkip?: (reason: string, where: { path: string; offset: number; detail?: string }) => void;
  /** Counts skips by reason (shared with the caller). */
  readonly skipped?: Record<string, number>;
  /** Capture filter in tcpdump syntax, compiled by libpcap (tcpdump -ddd) per link type. */
  readonly filter?: string;
  /** Filled while reading: frames read and frames the filter rejected. */
  readonly counts?: { read: number; filteredOut: number };
}

/** One packet record; `data` is valid only until the next record of the same file is read. */
/** An open capture file: its cursor and parser. */
class CaptureSource {
  private done = false;
  private constructor(
    private readonly fh: FileHandle,
    private readonly cursor: Cursor,
    readonly parser: RecordParser,
  ) {}

  static async open(input: string | CaptureFileInput, opts: ReadCaptureOptions): Promise<CaptureSource> {
    const path = typeof input === 'string' ? input : input.path;
    const given = (typeof input === 'string' ? undefined : input.iface) ?? (path === '-' ? 'stdin' : undefined);
    let fh: FileHandle;
    try {
      // "-" reads standard input (a pipe from tcpdump -w -, say), as tcpdump -r - does
      fh = await open(path === '-' ? '/dev/stdin' : path, 'r');
    } catch (e) {
      throw new JourneyError('E_PARSE', `${path}: cannot open (${(e as Error).message})`, { path }, { cause: e });
    }
    const skip: SkipFn = (reason, offset, detail) => {
      if (opts.skipped) opts.skipped[reason] = (opts.skipped[reason] ?? 0) + 1;
      opts.onSkip?.(reason, detail === undefined ? { path, offset } : { path, offset, detail });
    };
    try {
      const c = new Cursor(fh);
      const st = await fh.stat();
      if (st.isFile()) c.size = st.size;
      if (!(await c.ensure(4))) throw parseError(path, 0, 'empty or too short to be a pcap or pcapng file');
      const m = c.b.readUInt32LE(c.i);
      let parser: RecordParser;
      if (m === SHB) parser = new PcapngParser(c, path, given ?? baseName(path), skip);
      else if (m === 0xa1b2c3d4 || m === 0xd4c3b2a1 || m === 0xa1b23c4d || m === 0x4d3cb2a1)
        parser = new PcapParser(c, path, given ?? baseName(path), skip);
      else throw parseError(path, 0, `not a pcap or pcapng file (magic 0x${m.toString(16).padStart(8, '0')})`);
      return new CaptureSource(fh, c, parser);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** The next record, reading the file when needed; undefined at the end. */
  async pull(): Promise<CaptureRecord | undefined> {
    for (;;) {
      if (this.done) return undefined;
      const r = this.parser.next();
      if (r !== undefined) return r;
      // the parser has seen every byte there is and found no more records, or gave up
      if (this.cursor.atEof || this.parser.finished === true) {
        this.done = true;
        this.parser.atEnd();
        return undefined;
      }
      await this.cursor.ensure(this.parser.need);
    }
  }

  /** The next record if its bytes are already buffered (no await): the fast path. */
  nextBuffered(): CaptureRecord | undefined {
    return this.done || this.parser.finished === true ? undefined : this.parser.next();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** Reads the records of one capture file, in file order (`data` valid until the next record). */
export async function* readCaptureRecords(input: string | CaptureFileInput, opts: ReadCaptureOptions = {}): AsyncGenerator<CaptureRecord> {
  const src = await CaptureSource.open(input, opts);
  try {
    for (;;) {
      const r = src.nextBuffered() ?? (await src.pull());
      if (r === undefined) return;
      yield r;
    }
  } finally {
    await src.close();
  }
}

/**
 * Reads one or more capture files as FrameBatches (one interface per batch). Several files are
 * merged by timestamp into one timeline; inside a file the order is kept. Batches are cut when
 * the interface changes, so the sequence of batches preserves packet order across interfaces.
 */
export async function* readCaptureFiles(inputs: ReadonlyArray<string | CaptureFileInput>, opts: ReadCaptureOptions = {}): AsyncGenerator<FrameBatch> {
  const maxFrames = opts.batchFrames ?? 1024;
  const srcs: CaptureSource[] = [];
  try {
    for (const inp of inputs) srcs.push(await CaptureSource.open(inp, opts));
    const heads: Array<CaptureRecord | undefined> = [];
    for (const s of srcs) heads.push(await s.pull());
    const builders = new Map<string, BatchBuilder>();
    const filter = opts.filter !== undefined && opts.filter.trim() !== '' ? opts.filter : undefined;
    const programs = new Map<number, BpfProgram>();
    let builder: BatchBuilder | undefined;
    for (;;) {
      let best = -1;
      for (let k = 0; k < heads.length; k++) {
        const h = heads[k];
        if (h !== undefined && (best < 0 || h.timeUs < (heads[best] as CaptureRecord).timeUs)) best = k;
      }
      if (best < 0) break;
      const r = heads[best] as CaptureRecord;
      let keep = true;
      if (opts.counts) opts.counts.read++;
      if (filter !== undefined) {
        let prog = programs.get(r.linkType);
        if (prog === undefined) {
          prog = await compileFilter(filter, r.linkType);
          programs.set(r.linkType, prog);
        }
        if (bpfRun(prog, r.data, 0, r.capLen, r.wireLen) === 0) {
          keep = false;
          if (opts.counts) opts.counts.filteredOut++;
        }
      }
      if (keep) {
        if (builder === undefined || builder.iface !== r.iface || builder.linkType !== r.linkType) {
          if (builder !== undefined && builder.count > 0) yield builder.take();
          const key = `${r.linkType}/${r.iface}`;
          builder = builders.get(key);
          if (builder === undefined) {
            builder = new BatchBuilder(r.iface, r.linkType, maxFrames, 256 * 1024);
            builders.set(key, builder);
          }
        } else if (builder.wouldOverflow(r.capLen)) {
          yield builder.take();
        }
        builder.push(r.data, 0, r.capLen, r.wireLen, r.timeUs);
      }
      const src = srcs[best] as CaptureSource;
      heads[best] = src.nextBuffered() ?? (await src.pull());
    }
    if (builder !== undefined && builder.count > 0) yield builder.take();
  } finally {
    await Promise.all(srcs.map((s) => s.close().catch(() => undefined)));
  }
}
