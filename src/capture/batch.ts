/** Builds FrameBatch objects: frames copied back to back, columns in typed arrays. */
import type { FrameBatch } from '../model/observation.js';

export class BatchBuilder {
  private data: Uint8Array;
  private offsets: Uint32Array;
  private lengths: Uint32Array;
  private wire: Uint32Array;
  private times: Float64Array;
  private used = 0;
  count = 0;

  constructor(
    readonly iface: string,
    readonly linkType: number,
    readonly maxFrames = 1024,
    readonly maxBytes = 1 << 20,
  ) {
    this.data = new Uint8Array(maxBytes);
    this.offsets = new Uint32Array(maxFrames);
    this.lengths = new Uint32Array(maxFrames);
    this.wire = new Uint32Array(maxFrames);
    this.times = new Float64Array(maxFrames);
  }

  /** True when one more frame of `len` bytes would not fit. */
  wouldOverflow(len: number): boolean {
    return this.count >= this.maxFrames || (this.used + len > this.data.length && this.count > 0);
  }

  get bytes(): number {
    return this.used;
  }

  push(src: Uint8Array, off: number, len: number, wireLen: number, timeUs: number): void {
    if (this.used + len > this.data.length) {
      // a single frame larger than the buffer: grow once
      const bigger = new Uint8Array(Math.max(this.data.length * 2, this.used + len));
      bigger.set(this.data.subarray(0, this.used));
      this.data = bigger;
    }
    this.data.set(src.subarray(off, off + len), this.used);
    const i = this.count++;
    this.offsets[i] = this.used;
    this.lengths[i] = len;
    this.wire[i] = wireLen;
    this.times[i] = timeUs;
    this.used += len;
  }

  /** Hands the frames over as a FrameBatch (compact copies) and starts empty again. */
  take(): FrameBatch {
    const n = this.count;
    const batch: FrameBatch = {
      iface: this.iface,
      linkType: this.linkType,
      data: this.data.slice(0, this.used),
      offsets: this.offsets.slice(0, n),
      lengths: this.lengths.slice(0, n),
      wireLengths: this.wire.slice(0, n),
      timesUs: this.times.slice(0, n),
      count: n,
    };
    this.count = 0;
    this.used = 0;
    return batch;
  }
}

/** Maps the link-type names node-pcap and cap return to LINKTYPE_* numbers. */
export function linkTypeFromName(name: string): number {
  switch (name) {
    case 'LINKTYPE_ETHERNET':
    case 'ETHERNET':
      return 1;
    case 'LINKTYPE_LINUX_SLL':
      return 113;
    case 'LINKTYPE_RAW':
    case 'RAW':
      return 101;
    case 'LINKTYPE_NULL':
    case 'NULL':
      return 0;
    case 'LINKTYPE_IEEE802_11_RADIO':
    case 'IEEE802_11_RADIO':
      return 127;
    default: {
      const m = /Unknown linktype (\d+)/.exec(name);
      return m?.[1] !== undefined ? Number(m[1]) : -1;
    }
  }
}
