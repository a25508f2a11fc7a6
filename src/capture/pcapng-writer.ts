/**
 * Writes captured frames as pcapng: one section, an interface description block (with if_name
 * and µs resolution) the first time an interface/link type is seen, an enhanced packet block per
 * frame. Writes are buffered and asynchronous; when the disk falls behind by more than
 * `maxBufferedBytes`, frames are dropped and counted (`dropped`), never held without bound.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { openOutputFile } from './output-file.js';
import { JourneyError } from '../model/errors.js';
import type { FrameBatch } from '../model/observation.js';

export interface PcapngWriterOptions {
  /** Bytes allowed to wait for the disk before frames are dropped (default 64 MiB). */
  readonly maxBufferedBytes?: number;
  /** shb_userappl option. */
  readonly application?: string;
}

export interface PcapngWriter {
  readonly path: string;
  writeBatch(batch: FrameBatch): void;
  writeFrame(iface: string, linkType: number, frame: Uint8Array, wireLen: number, timeUs: number): void;
  /** Frames written and frames dropped because the disk was behind. */
  readonly written: number;
  readonly dropped: number;
  /** Resolves when what was written so far has been handed to the disk (for lossless bulk writes). */
  drain(): Promise<void>;
  /** Flushes and closes; rejects with E_CAPTURE if the file could not be written. */
  close(): Promise<void>;
}

const pad4 = (n: number): number => (n + 3) & ~3;

function option(code: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + pad4(value.length));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(value.length, 2);
  value.copy(b, 4);
  return b;
}

function block(type: number, body: Buffer): Buffer {
  const len = 12 + body.length;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(len, 4);
  body.copy(b, 8);
  b.writeUInt32LE(len, len - 4);
  return b;
}

function shb(application: string): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(0x1a2b3c4d, 0);
  fixed.writeUInt16LE(1, 4);
  fixed.writeUInt16LE(0, 6);
  fixed.writeInt32LE(-1, 8);
  fixed.writeInt32LE(-1, 12);
  return block(0x0a0d0d0a, Buffer.concat([fixed, option(4, Buffer.from(application)), Buffer.alloc(4)]));
}

function idb(name: string, linkType: number): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(linkType, 0);
  fixed.writeUInt32LE(262144, 4);
  return block(1, Buffer.concat([fixed, option(2, Buffer.from(name)), option(9, Buffer.from([6])), Buffer.alloc(4)]));
}

export function createPcapngWriter(path: string, opts: PcapngWriterOptions = {}): PcapngWriter {
  const max = opts.maxBufferedBytes ?? 64 * 1024 * 1024;
  let stream: WriteStream;
  const fd = openOutputFile(path);
  try {
    stream = createWriteStream('', { fd });
  } catch (e) {
    throw new JourneyError('E_CAPTURE', `--write ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  let failure: Error | undefined;
  stream.on('error', (e) => {
    failure = e;
  });
  const ids = new Map<string, number>();
  let pending: Buffer[] = [shb(opts.application ?? 'journey')];
  let pendingBytes = pending[0]?.length ?? 0;
  let written = 0;
  let dropped = 0;
  let scheduled = false;

  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0 || failure !== undefined) return;
    const chunk = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    stream.write(chunk);
  };
  const queue = (b: Buffer): void => {
    pending.push(b);
    pendingBytes += b.length;
    if (pendingBytes >= 1 << 20) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  const ifaceId = (iface: string, linkType: number): number => {
    const key = `${linkType}/${iface}`;
    let id = ids.get(key);
    if (id === undefined) {
      id = ids.size;
      ids.set(key, id);
      queue(idb(iface, linkType));
    }
    return id;
  };
  const writeOne = (id: number, src: Uint8Array, off: number, len: number, wireLen: number, timeUs: number): void => {
    const total = 32 + pad4(len);
    const b = Buffer.allocUnsafe(total);
    b.writeUInt32LE(6, 0);
    b.writeUInt32LE(total, 4);
    b.writeUInt32LE(id, 8);
    const t = Math.max(0, Math.floor(timeUs));
    b.writeUInt32LE(Math.floor(t / 4294967296), 12);
    b.writeUInt32LE(t % 4294967296, 16);
    b.writeUInt32LE(len, 20);
    b.writeUInt32LE(Math.max(wireLen, len), 24);
    b.set(src.subarray(off, off + len), 28);
    b.fill(0, 28 + len, total - 4);
    b.writeUInt32LE(total, total - 4);
    queue(b);
    written++;
  };
  const behind = (): boolean => stream.writableLength + pendingBytes > max;

  return {
    path,
    get written() {
      return written;
    },
    get dropped() {
      return dropped;
    },
    writeBatch(batch: FrameBatch): void {
      if (failure !== undefined || behind()) {
        dropped += batch.count;
        return;
      }
      const id = ifaceId(batch.iface, batch.linkType);
      for (let i = 0; i < batch.count; i++) {
        writeOne(id, batch.data, batch.offsets[i] ?? 0, batch.lengths[i] ?? 0, batch.wireLengths[i] ?? 0, batch.timesUs[i] ?? 0);
      }
    },
    writeFrame(iface, linkType, frame, wireLen, timeUs): void {
      if (failure !== undefined || behind()) {
        dropped++;
        return;
      }
      writeOne(ifaceId(iface, linkType), frame, 0, frame.length, wireLen, timeUs);
    },
    drain(): Promise<void> {
      flush();
      if (!stream.writableNeedDrain || failure !== undefined) return Promise.resolve();
      return new Promise((resolve) => {
        const done = (): void => {
          stream.off('drain', done);
          stream.off('error', done);
          resolve();
        };
        stream.on('drain', done);
        stream.on('error', done);
      });
    },
    close(): Promise<void> {
      flush();
      return new Promise((resolve, reject) => {
        // the stream may have failed already while its 'error' event is still queued
        failure ??= stream.errored ?? undefined;
        if (failure !== undefined) {
          reject(new JourneyError('E_CAPTURE', `--write ${path}: ${failure.message}`, { path }, { cause: failure }));
          return;
        }
        stream.end((err?: Error | null) => {
          failure ??= err ?? undefined;
          if (failure !== undefined) reject(new JourneyError('E_CAPTURE', `--write ${path}: ${failure.message}`, { path }, { cause: failure }));
          else resolve();
        });
        stream.once('error', (e) => reject(new JourneyError('E_CAPTURE', `--write ${path}: ${e.message}`, { path }, { cause: e })));
      });
    },
  };
}
