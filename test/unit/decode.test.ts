import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SocketAddress } from 'node:net';
import { PacketView, SkipCounters, decodeBytes, decodeFrame, ipv4ToString, ipv6ToString, observationFromView } from '../../src/decode/index.js';
import type { FrameBatch } from '../../src/model/observation.js';

interface Golden {
  name: string;
  linkType: number;
  tcpdump: string;
  hex: string;
  expect: {
    ok: boolean;
    arpOp?: number;
    arpSpa?: string;
    arpTpa?: string;
    obs?: Record<string, unknown> | null;
    view?: Record<string, unknown>;
    inner?: Record<string, unknown>;
  };
}
const golden = JSON.parse(readFileSync(new URL('../fixtures/decode/golden.json', import.meta.url), 'utf8')) as {
  frames: Golden[];
};
const frame = (name: string): Buffer => Buffer.from(golden.frames.find((f) => f.name === name)!.hex, 'hex');

describe('decode: golden frames (expectations from tcpdump -nn -v)', () => {
  const view = new PacketView();
  for (const g of golden.frames) {
    it(`${g.name}: ${g.tcpdump}`, () => {
      const buf = Buffer.from(g.hex, 'hex');
      const skips = new SkipCounters();
      const ok = decodeBytes(buf, 0, buf.length, g.linkType, view, skips);
      expect(ok).toBe(g.expect.ok);
      expect(skips.total).toBe(0);
      if (g.expect.arpOp !== undefined) {
        expect(view.isArp).toBe(true);
        expect(view.arpOp).toBe(g.expect.arpOp);
      }
      if (g.expect.arpSpa !== undefined) expect(ipv4ToString(view.arpSpa)).toBe(g.expect.arpSpa);
      if (g.expect.arpTpa !== undefined) expect(ipv4ToString(view.arpTpa)).toBe(g.expect.arpTpa);
      for (const [k, v] of Object.entries(g.expect.view ?? {})) expect((view as unknown as Record<string, unknown>)[k], k).toBe(v);
      for (const [k, v] of Object.entries(g.expect.inner ?? {})) expect((view.inner as unknown as Record<string, unknown>)[k], `inner.${k}`).toBe(v);
      const obs = observationFromView(view, 'c1b', 1234);
      if (g.expect.obs === null) expect(obs).toBeUndefined();
      else if (g.expect.obs !== undefined) {
        expect(obs).toBeDefined();
        expect(obs).toMatchObject({ iface: 'c1b', timeUs: 1234, ...g.expect.obs });
      }
    });
  }

  it('a captured frame decodes the same at any offset inside a batch', () => {
    const a = frame('eth22');
    const b = frame('eth31');
    const data = new Uint8Array(7 + a.length + b.length);
    data.set(a, 7);
    data.set(b, 7 + a.length);
    const batch: FrameBatch = {
      iface: 'x',
      linkType: 1,
      data,
      offsets: Uint32Array.of(7, 7 + a.length),
      lengths: Uint32Array.of(a.length, b.length),
      wireLengths: Uint32Array.of(a.length, 1500),
      timesUs: Float64Array.of(1e15, 2e15),
      count: 2,
    };
    expect(decodeFrame(batch, 0, view)).toBe(true);
    expect(observationFromView(view, 'x')).toMatchObject({ timeUs: 1e15, tuple: { sport: 52554, dport: 5555 }, tcpFlags: 2 });
    expect(decodeFrame(batch, 1, view)).toBe(true);
    expect(observationFromView(view, 'x')).toMatchObject({ timeUs: 2e15, wireLen: 1500, inner: { sport: 46382, dport: 9999 } });
    expect(decodeFrame(batch, 2, view)).toBe(false);
  });
});

describe('decode: odd and truncated frames are counted by reason, never thrown', () => {
  const view = new PacketView();
  const cases: Array<[string, () => Buffer, number, boolean, string]> = [
    ['a 5-byte Ethernet frame', () => frame('eth3').subarray(0, 5), 1, false, 'truncated-link'],
    ['Ethernet + 10 bytes of IPv4', () => frame('eth3').subarray(0, 24), 1, false, 'truncated-ip'],
    ['an ARP cut in the addresses', () => frame('eth1').subarray(0, 30), 1, false, 'truncated-arp'],
    ['a TCP header cut after the ports', () => frame('eth22').subarray(0, 14 + 20 + 10), 1, true, 'truncated-l4'],
    ['IPv4 with IHL 4', () => patch(frame('eth3'), 14, 0x44), 1, false, 'bad-ip-header'],
    ['IPv4 total length below its header', () => patch(patch(frame('eth3'), 16, 0), 17, 10), 1, false, 'bad-ip-header'],
    ['IP version 7', () => patch(frame('eth3'), 14, 0x75), 1, false, 'bad-ip-version'],
    ['LLDP', () => patch(patch(frame('eth3'), 12, 0x88), 13, 0xcc), 1, false, 'non-ip'],
    ['an unknown link type', () => frame('eth3'), 147, false, 'unsupported-linktype'],
    ['an IPv6 hop-by-hop header cut short', () => frame('eth36').subarray(0, 14 + 40 + 4), 1, true, 'truncated-ext-header'],
    ['an ICMP error whose embedded header is cut', () => frame('eth31').subarray(0, 14 + 20 + 8 + 12), 1, true, 'truncated-icmp-inner'],
    [
      'five VLAN tags',
      () =>
        Buffer.concat([frame('eth3').subarray(0, 12), Buffer.from('8100000181000002810000038100000481000005', 'hex'), frame('eth3').subarray(12)]),
      1,
      false,
      'too-many-vlan-tags',
    ],
  ];
  for (const [what, make, lt, ok, reason] of cases) {
    it(`${what} → ${reason}`, () => {
      const b = make();
      const skips = new SkipCounters();
      expect(decodeBytes(b, 0, b.length, lt, view, skips)).toBe(ok);
      expect(view.skipReason).toBe(reason);
      expect(skips.snapshot()).toEqual({ [reason]: 1 });
    });
  }

  it('a TCP header cut after the ports still gives the ports', () => {
    const b = frame('eth22').subarray(0, 14 + 20 + 10);
    decodeBytes(b, 0, b.length, 1, view);
    expect(view.l4State).toBe(1);
    expect(observationFromView(view, 'x')).toMatchObject({ tuple: { sport: 52554, dport: 5555 } });
    expect(observationFromView(view, 'x')?.tcpFlags).toBeUndefined();
  });

  it('reuses one view: nothing from a previous packet leaks into the next', () => {
    decodeBytes(frame('eth31'), 0, frame('eth31').length, 1, view);
    expect(view.hasInner).toBe(true);
    decodeBytes(frame('eth30'), 0, frame('eth30').length, 1, view);
    expect(view.hasInner).toBe(false);
    expect(observationFromView(view, 'x')?.inner).toBeUndefined();
    decodeBytes(frame('eth5'), 0, frame('eth5').length, 1, view);
    decodeBytes(frame('eth3'), 0, frame('eth3').length, 1, view);
    expect(observationFromView(view, 'x')?.fragment).toBeUndefined();
  });
});

function patch(b: Buffer, at: number, value: number): Buffer {
  const c = Buffer.from(b);
  c[at] = value;
  return c;
}

describe('decode: fuzz', () => {
  const linkTypes = [0, 1, 101, 113, 228, 229, 276, 147];
  const view = new PacketView();
  it('random frames never throw and always leave a consistent view', () => {
    const skips = new SkipCounters();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(...linkTypes), (bytes, lt) => {
        const ok = decodeBytes(bytes, 0, bytes.length, lt, view, skips);
        if (!ok) expect(view.skipReason).toBeDefined();
        if (ok && view.family !== 0) {
          const o = observationFromView(view, 'f');
          expect(o).toBeDefined();
          expect(view.l4Offset).toBeLessThanOrEqual(bytes.length + 64 * 1024);
        }
      }),
      { numRuns: 20_000 },
    );
  });

  it('every truncation and every single-byte mutation of the golden frames decodes without throwing', () => {
    const skips = new SkipCounters();
    fc.assert(
      fc.property(fc.constantFrom(...golden.frames), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (g, cut, pos, val) => {
        const full = Buffer.from(g.hex, 'hex');
        const b = Buffer.from(full.subarray(0, cut % (full.length + 1)));
        if (b.length > 0) b[pos % b.length] = val;
        decodeBytes(b, 0, b.length, g.linkType, view, skips);
        if (view.family !== 0) observationFromView(view, 'f');
      }),
      { numRuns: 20_000 },
    );
    // every prefix of every golden frame
    for (const g of golden.frames) {
      const full = Buffer.from(g.hex, 'hex');
      for (let n = 0; n <= full.length; n++) {
        const ok = decodeBytes(full, 0, n, g.linkType, view, skips);
        if (!ok) expect(view.skipReason).toBeDefined();
      }
    }
    expect(skips.total).toBeGreaterThan(0);
  });

  it('offsets and lengths out of range are clamped, not thrown', () => {
    const b = frame('eth3');
    expect(() => decodeBytes(b, 50, 1000, 1, view)).not.toThrow();
    expect(() => decodeBytes(b, 500, 10, 1, view)).not.toThrow();
    expect(decodeBytes(b, 500, 10, 1, view)).toBe(false);
  });
});

describe('address formatting', () => {
  it('IPv6 as inet_ntop prints it', () => {
    const h = (s: string): Uint8Array => Buffer.from(s.replace(/:/g, ''), 'hex');
    expect(ipv6ToString(h('fd00:0009:0000:0000:0000:0000:0000:0001'), 0)).toBe('fd00:9::1');
    expect(ipv6ToString(h('0000:0000:0000:0000:0000:0000:0000:0000'), 0)).toBe('::');
    expect(ipv6ToString(h('0000:0000:0000:0000:0000:0000:0000:0001'), 0)).toBe('::1');
    expect(ipv6ToString(h('2001:0db8:0000:0001:0000:0000:0000:0001'), 0)).toBe('2001:db8:0:1::1');
    expect(ipv6ToString(h('2001:0db8:0000:0000:0001:0000:0000:0001'), 0)).toBe('2001:db8::1:0:0:1');
    expect(ipv6ToString(h('2001:0db8:0001:0001:0001:0001:0000:0001'), 0)).toBe('2001:db8:1:1:1:1:0:1');
    expect(ipv6ToString(h('0000:0000:0000:0000:0000:ffff:0a00:0001'), 0)).toBe('::ffff:10.0.0.1');
    expect(ipv4ToString(0xac110002)).toBe('172.17.0.2');
  });

  it('IPv6 text equals inet_ntop (node:net SocketAddress) for random addresses, dense in zero runs', () => {
    const word = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(word, { minLength: 8, maxLength: 8 }), (ws) => {
        const b = Buffer.alloc(16);
        for (const [i, w] of ws.entries()) b.writeUInt16BE(w, 2 * i);
        const full = ws.map((w) => w.toString(16)).join(':');
        expect(ipv6ToString(b, 0)).toBe(new SocketAddress({ address: full, family: 'ipv6' }).address);
      }),
      { numRuns: 3000 },
    );
  });
});
