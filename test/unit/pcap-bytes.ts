/** Test helper: pcap files made in memory. */

/** A classic pcap file of (timeUs, frame) records, in the order given. */
export function pcapBytes(records: readonly (readonly [number, Buffer])[]): Buffer {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(262144, 16);
  head.writeUInt32LE(1, 20);
  const parts = [head];
  for (const [t, f] of records) {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(Math.floor(t / 1e6), 0);
    r.writeUInt32LE(t % 1e6, 4);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    parts.push(r, f);
  }
  return Buffer.concat(parts);
}
