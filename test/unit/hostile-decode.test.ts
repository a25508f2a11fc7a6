/**
 * Decoding as tcpdump does where frames are odd: trailing IP fragments join their datagram's flow
 * (not a port-0 flow of their own), DHCP replies are counted like requests (no flow), the link type
 * with FCS bits (0x04000001) is Ethernet, and an IP version that contradicts the ethertype or the
 * link type is invalid (a counted skip), not decoded.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCaptureFiles } from '../../src/capture/pcap-file.js';
import { decodeBytes, FragmentPorts, observationFromView, PacketView, SkipCounters } from '../../src/decode/index.js';

const CLI = new URL('../../dist/src/cli/main.js', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'journey-decode-'));

function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] ?? 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}
function ip4(src: string, dst: string, proto: number, id: number, fragOff: number, more: boolean, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE((more ? 0x2000 : 0) | (fragOff / 8), 6);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(src.split('.').map(Number)).copy(h, 12);
  Buffer.from(dst.split('.').map(Number)).copy(h, 16);
  h.writeUInt16BE(csum(h), 10);
  return Buffer.concat([h, payload]);
}
function ip6udp(): Buffer {
  const h = Buffer.alloc(48);
  h[0] = 0x60;
  h.writeUInt16BE(8, 4);
  h[6] = 17;
  h[7] = 64;
  h[23] = 1;
  h[39] = 2;
  h.writeUInt16BE(1000, 40);
  h.writeUInt16BE(2000, 42);
  h.writeUInt16BE(8, 44);
  return h;
}
const eth = (p: Buffer, et = 0x0800): Buffer => {
  const e = Buffer.alloc(14);
  e.fill(2, 0, 6);
  e.fill(4, 6, 12);
  e.writeUInt16BE(et, 12);
  return Buffer.concat([e, p]);
};
function pcap(frames: Buffer[], lt = 1): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(lt, 20);
  const rs = [h];
  frames.forEach((f, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(1795407381, 0);
    r.writeUInt32LE(i * 1000, 4);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    rs.push(r, f);
  });
  return Buffer.concat(rs);
}
/** A 3,008-byte UDP datagram 10.0.0.1:40000 → 10.0.0.2:5353 in three fragments. */
function fragments(id = 4242): Buffer[] {
  const d = Buffer.alloc(8 + 3000, 7);
  d.writeUInt16BE(40000, 0);
  d.writeUInt16BE(5353, 2);
  d.writeUInt16BE(d.length, 4);
  const out: Buffer[] = [];
  for (let off = 0; off < d.length; off += 1480)
    out.push(eth(ip4('10.0.0.1', '10.0.0.2', 17, id, off, off + 1480 < d.length, d.subarray(off, off + 1480))));
  return out;
}
type Flow = { orig: { sport: number; dport: number }; legs: { packets: number }[] };
function watchFlows(file: string): { ends: Flow[]; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'watch', '-r', file, '--json'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  const evs = r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { type: string; flow?: Flow });
  return { ends: evs.filter((e) => e.type === 'flow.end').map((e) => e.flow as Flow), stderr: r.stderr + r.stdout };
}

describe('IP fragments', () => {
  it('trailing fragments join their datagram: one flow of 3 packets, no port-0 flow', () => {
    const f = join(tmp, 'frag.pcap');
    writeFileSync(f, pcap(fragments()));
    const { ends } = watchFlows(f);
    expect(ends.map((e) => [e.orig.sport, e.orig.dport, e.legs.reduce((n, l) => n + l.packets, 0)])).toEqual([[40000, 5353, 3]]);
  });
  it('a trailing fragment without its first fragment keeps ports 0 and is counted and said', () => {
    const f = join(tmp, 'orphan.pcap');
    writeFileSync(f, pcap(fragments().slice(1)));
    const { ends, stderr } = watchFlows(f);
    expect(ends.map((e) => [e.orig.sport, e.orig.dport])).toEqual([[0, 0]]);
    expect(stderr).toMatch(/2 trailing IP fragments came without their first fragment/);
  });
  it('FragmentPorts is bounded (4,096 datagrams remembered at most)', () => {
    const fp = new FragmentPorts(16);
    const v = new PacketView();
    for (let id = 0; id < 1000; id++) {
      const [first] = fragments(id);
      decodeBytes(first as Buffer, 0, (first as Buffer).length, 1, v);
      fp.join(observationFromView(v, 'x') as NonNullable<ReturnType<typeof observationFromView>>);
    }
    expect((fp as unknown as { firsts: Map<string, unknown> }).firsts.size).toBeLessThanOrEqual(16);
  });
});

describe('DHCP', () => {
  it('requests and replies are counted, not shown as flows (docs/watch.md)', () => {
    const dh = (sp: number, dp: number, s: string, d: string): Buffer => {
      const u = Buffer.alloc(308);
      u.writeUInt16BE(sp, 0);
      u.writeUInt16BE(dp, 2);
      u.writeUInt16BE(308, 4);
      return eth(ip4(s, d, 17, 1, 0, false, u));
    };
    const f = join(tmp, 'dhcp.pcap');
    writeFileSync(
      f,
      pcap([
        dh(68, 67, '0.0.0.0', '255.255.255.255'),
        dh(67, 68, '10.0.0.1', '10.0.0.50'),
        dh(68, 67, '10.0.0.50', '10.0.0.1'),
        dh(67, 68, '10.0.0.1', '10.0.0.50'),
      ]),
    );
    expect(watchFlows(f).ends).toEqual([]);
  });
});

describe('link types and IP versions', () => {
  it('link type 0x04000001 (Ethernet with FCS bits) is read as Ethernet', async () => {
    const f = join(tmp, 'fcs.pcap');
    writeFileSync(f, pcap(fragments(), 0x04000001));
    const skipped: Record<string, number> = {};
    const lts: number[] = [];
    for await (const b of readCaptureFiles([f], { skipped })) lts.push(b.linkType);
    expect(lts).toEqual([1]);
    expect(watchFlows(f).ends).toHaveLength(1);
  });
  it('an IP version that contradicts the ethertype or the link type is invalid and counted', () => {
    const v = new PacketView();
    const skips = new SkipCounters();
    const v6inV4 = eth(ip6udp(), 0x0800);
    expect(decodeBytes(v6inV4, 0, v6inV4.length, 1, v, skips)).toBe(false);
    expect(v.skipReason).toBe('bad-ip-version');
    const v4inV6 = eth(ip4('10.0.0.1', '10.0.0.2', 17, 1, 0, false, Buffer.alloc(8)), 0x86dd);
    expect(decodeBytes(v4inV6, 0, v4inV6.length, 1, v, skips)).toBe(false);
    expect(v.skipReason).toBe('bad-ip-version');
    // LINKTYPE_IPV4 (228) carrying IPv6, LINKTYPE_IPV6 (229) carrying IPv4
    const six = ip6udp();
    expect(decodeBytes(six, 0, six.length, 228, v, skips)).toBe(false);
    expect(v.skipReason).toBe('bad-ip-version');
    const four = ip4('10.0.0.1', '10.0.0.2', 17, 1, 0, false, Buffer.alloc(8));
    expect(decodeBytes(four, 0, four.length, 229, v, skips)).toBe(false);
    // the same packets on the right link types decode
    expect(decodeBytes(six, 0, six.length, 229, v, skips)).toBe(true);
    expect(decodeBytes(four, 0, four.length, 228, v, skips)).toBe(true);
    expect(skips.snapshot()['bad-ip-version']).toBe(4);
  });
});
