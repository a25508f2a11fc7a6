/**
 * The pipe protocol between a capture worker (child process) and the main process.
 * Every message: u32 LE length of what follows, u8 type, payload.
 * - HELLO/STATS/ERROR: UTF-8 JSON.
 * - BATCH: u32 count, u32 dataLen, f64 timesUs[count], u32 lengths[count], u32 wireLengths[count],
 *   then the frames back to back. Columns are laid out so that the receiver can view them with
 *   typed arrays on one aligned copy (no per-packet work to rebuild a FrameBatch).
 * - BATCH_FOLDED (the native backend with `fold`): u32 count, u32 dataLen, f64 timesUs[count],
 *   f64 firstUs[count], u32 lengths[count], u32 wireLengths[count], u32 packets[count],
 *   u32 aux[count], then the frames: an entry is a run of `packets` packets of one connection,
 *   its frame and time the latest's, its wire length their sum (FrameBatch `folds`).
 */
import type { FrameBatch } from '../model/observation.js';

export const MSG_HELLO = 1;
export const MSG_BATCH = 2;
export const MSG_STATS = 3;
export const MSG_ERROR = 4;
export const MSG_BATCH_FOLDED = 5;

export interface HelloMessage {
  iface: string;
  linkType: number;
  backend: string;
  pid: number;
  snaplen: number;
}

export interface WorkerStatsMessage {
  /** Frames taken from libpcap. */
  received: number;
  /** pcap_stats: ps_recv, ps_drop, ps_ifdrop (-1 when the backend cannot tell). */
  psRecv: number;
  kernelDropped: number;
  ifDropped: number;
  /** Frames we dropped because the pipe to the main process was full. */
  ownDropped: number;
  batches: number;
  /** CPU time of the worker process, µs (user, system). */
  cpuUserUs: number;
  cpuSystemUs: number;
}

export interface WorkerErrorMessage {
  message: string;
  /** 'open' (could not start), 'read' (capture failed: interface gone or down), 'internal'. */
  phase: 'open' | 'read' | 'internal';
}

export function encodeJson(type: number, value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  const b = Buffer.allocUnsafe(5 + body.length);
  b.writeUInt32LE(1 + body.length, 0);
  b[4] = type;
  body.copy(b, 5);
  return b;
}

/** Encodes the first `n` frames of a worker's batch columns as one BATCH message. */
export function encodeBatch(n: number, times: Float64Array, lens: Uint32Array, wires: Uint32Array, data: Uint8Array, dataLen: number): Buffer {
  const msg = Buffer.allocUnsafe(5 + 8 + 16 * n + dataLen);
  msg.writeUInt32LE(1 + 8 + 16 * n + dataLen, 0);
  msg[4] = MSG_BATCH;
  msg.writeUInt32LE(n, 5);
  msg.writeUInt32LE(dataLen, 9);
  let o = 13;
  msg.set(new Uint8Array(times.buffer, times.byteOffset, 8 * n), o);
  o += 8 * n;
  msg.set(new Uint8Array(lens.buffer, lens.byteOffset, 4 * n), o);
  o += 4 * n;
  msg.set(new Uint8Array(wires.buffer, wires.byteOffset, 4 * n), o);
  o += 4 * n;
  msg.set(data.subarray(0, dataLen), o);
  return msg;
}

/** The packets a whole BATCH or BATCH_FOLDED message stands for (0 for anything else). */
export function packetsInBatch(msg: Uint8Array | null): number {
  if (msg === null || msg.length < 13) return 0;
  const dv = new DataView(msg.buffer, msg.byteOffset, msg.length);
  const count = dv.getUint32(5, true);
  if (msg[4] === MSG_BATCH) return count;
  if (msg[4] !== MSG_BATCH_FOLDED || msg.length < 13 + 32 * count) return 0;
  // the packets column: after times, firstUs, lengths and wire lengths
  const at = 13 + 24 * count;
  let n = 0;
  for (let i = 0; i < count; i++) n += dv.getUint32(at + 4 * i, true);
  return n;
}

/** Incremental decoder of the worker stream (parent side). */
export class MessageReader {
  private chunks: Buffer[] = [];
  private have = 0;

  constructor(
    private readonly iface: () => string,
    private readonly linkType: () => number,
    private readonly onJson: (type: number, value: unknown) => void,
    private readonly onBatch: (b: FrameBatch) => void,
  ) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    for (;;) {
      if (this.have < 4) return;
      const len = this.peekU32();
      if (this.have < 4 + len) return;
      this.take(4);
      if (len === 0) continue;
      const type = this.take(1)[0] as number;
      this.dispatch(type, this.take(len - 1));
    }
  }

  /**
   * Copies what is left of the chunks pushed so far (an incomplete message) into memory of its
   * own: for a caller that pushes views of one reused read buffer.
   */
  detach(): void {
    if (this.have === 0) {
      this.chunks.length = 0;
      return;
    }
    this.chunks = [Buffer.concat(this.chunks, this.have)]; // always a copy
  }

  private peekU32(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 4) return first.readUInt32LE(0);
    return this.concatHead(4).readUInt32LE(0);
  }

  private concatHead(n: number): Buffer {
    const b = Buffer.concat(this.chunks);
    this.chunks = [b];
    return b.subarray(0, n);
  }

  /** Takes n bytes; for messages the result is a fresh, 8-aligned copy. */
  private take(n: number): Uint8Array {
    // uninitialised (every byte is written below), its own ArrayBuffer at offset 0 (aligned columns)
    const out = Buffer.allocUnsafeSlow(n);
    let got = 0;
    while (got < n) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - got);
      out.set(k === c.length ? c : c.subarray(0, k), got);
      got += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.have -= n;
    return out;
  }

  private dispatch(type: number, payload: Uint8Array): void {
    if (type === MSG_BATCH || type === MSG_BATCH_FOLDED) {
      // payload is a fresh copy at offset 0 of its ArrayBuffer: the columns are aligned
      const ab = payload.buffer;
      if (payload.length < 8) return;
      const dv = new DataView(ab);
      const count = dv.getUint32(0, true);
      const dataLen = dv.getUint32(4, true);
      const folded = type === MSG_BATCH_FOLDED;
      const cols = folded ? 32 : 16;
      if (8 + cols * count + dataLen > payload.length) return;
      // column by column, in the order of the layout above
      let at = 8;
      const f64 = (): Float64Array => {
        const c = new Float64Array(ab, at, count);
        at += 8 * count;
        return c;
      };
      const u32 = (): Uint32Array => {
        const c = new Uint32Array(ab, at, count);
        at += 4 * count;
        return c;
      };
      const timesUs = f64();
      const firstUs = folded ? f64() : undefined;
      const lengths = u32();
      const wireLengths = u32();
      const packets = folded ? u32() : undefined;
      const aux = folded ? u32() : undefined;
      const data = new Uint8Array(ab, at, dataLen);
      const offsets = new Uint32Array(count);
      let o = 0;
      for (let i = 0; i < count; i++) {
        offsets[i] = o;
        o += lengths[i] as number;
      }
      const b: FrameBatch = { iface: this.iface(), linkType: this.linkType(), data, offsets, lengths, wireLengths, timesUs, count };
      this.onBatch(folded ? { ...b, folds: { packets: packets as Uint32Array, firstUs: firstUs as Float64Array, aux: aux as Uint32Array } } : b);
    } else {
      let value: unknown;
      try {
        value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8'));
      } catch {
        value = { message: 'unreadable message from capture worker', phase: 'internal' };
      }
      this.onJson(type, value);
    }
  }
}
