/**
 * Readers of the addon's records (src/native/decode.ts, layout.ts) on records written field by
 * field with the mirror's offsets: IPv4/IPv6/ICMP tuples, conntrack events, drops and hook events,
 * and bad input (short buffers, unknown kinds, garbage) that must give a counted skip, never a throw.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readCtBatch, readCtRecord, readKernelRecord } from '../../src/native/decode.js';
import { DropReasons } from '../../src/native/drop-reasons.js';
import { KernelSymbols } from '../../src/native/kallsyms.js';
import { CONNTRACK_PRIORITY, conntrackTuple, hookPlan, phaseOf, type HookEvent } from '../../src/native/hook-points.js';
import { nativeFilter } from '../../src/native/kernel-events.js';
import { CT_EVENT, EVENT, TUPLE, addrBytes, ctStatusNames, readTuple } from '../../src/native/layout.js';
import type { Tuple } from '../../src/model/tuple.js';

interface T {
  family: 4 | 6;
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  icmpType?: number;
  icmpCode?: number;
}

function writeTuple(buf: Buffer, off: number, t: T): void {
  const s = addrBytes(t.src);
  const d = addrBytes(t.dst);
  if (!s || !d) throw new Error('bad test address');
  s.copy(buf, off + TUPLE.fields.saddr);
  d.copy(buf, off + TUPLE.fields.daddr);
  buf.writeUInt16LE(t.sport, off + TUPLE.fields.sport);
  buf.writeUInt16LE(t.dport, off + TUPLE.fields.dport);
  buf.writeUInt8(t.family, off + TUPLE.fields.family);
  buf.writeUInt8(t.proto, off + TUPLE.fields.proto);
  buf.writeUInt8(t.icmpType ?? 0, off + TUPLE.fields.icmp_type);
  buf.writeUInt8(t.icmpCode ?? 0, off + TUPLE.fields.icmp_code);
}

function ctRecord(o: {
  type: number;
  id: number;
  status: number;
  orig: T;
  reply: T;
  tcpState?: number;
  timeout?: number;
  mark?: number;
  zone?: number;
}): Buffer {
  const b = Buffer.alloc(CT_EVENT.size);
  const f = CT_EVENT.fields;
  b.writeBigUInt64LE(1_700_000_000_123_000_000n, f.time_ns);
  b.writeUInt32LE(o.type, f.type);
  b.writeUInt32LE(o.id, f.id);
  b.writeUInt32LE(o.status, f.status);
  b.writeUInt32LE(o.mark ?? 0, f.mark);
  b.writeUInt32LE(o.timeout ?? 0, f.timeout);
  b.writeUInt16LE(o.zone ?? 0, f.zone);
  b.writeUInt8(o.tcpState ?? 0xff, f.tcp_state);
  writeTuple(b, f.orig, o.orig);
  writeTuple(b, f.reply, o.reply);
  return b;
}

function kernelRecord(o: {
  kind: number;
  pkt?: T;
  ctOrig?: T;
  ctReply?: T;
  status?: number;
  hook?: number;
  pf?: number;
  priority?: number;
  reason?: number;
  ifname?: string;
  tsNs?: bigint;
}): Buffer {
  const b = Buffer.alloc(EVENT.size);
  const f = EVENT.fields;
  b.writeBigUInt64LE(o.tsNs ?? 5_000_000_000n, f.ts_ns);
  b.writeBigUInt64LE(0xffffffff81000010n, f.location);
  b.writeUInt32LE(o.kind, f.kind);
  b.writeUInt32LE(4026531840, f.netns);
  b.writeUInt32LE(7, f.ifindex);
  b.writeUInt32LE(o.reason ?? 0, f.reason);
  b.writeUInt32LE(o.status ?? 0, f.ct_status);
  b.writeInt32LE(o.priority ?? 0, f.priority);
  b.writeUInt32LE(60, f.pkt_len);
  b.writeUInt8(o.hook ?? 0, f.hook);
  b.writeUInt8(o.pf ?? 2, f.pf);
  b.writeUInt8(o.ctOrig ? 1 : 0, f.has_ct);
  b.write(o.ifname ?? 'eth0', f.ifname, 'latin1');
  if (o.pkt) writeTuple(b, f.pkt, o.pkt);
  if (o.ctOrig) writeTuple(b, f.ct_orig, o.ctOrig);
  if (o.ctReply) writeTuple(b, f.ct_reply, o.ctReply);
  return b;
}

const pre: T = { family: 4, proto: 6, src: '10.0.10.5', dst: '10.0.10.26', sport: 40000, dport: 8000 };
const post: T = { family: 4, proto: 6, src: '172.17.0.2', dst: '10.0.10.5', sport: 80, dport: 40000 };

describe('tuples', () => {
  it('reads IPv4, IPv6 (compressed like inet_ntop) and ICMP', () => {
    const b = Buffer.alloc(TUPLE.size * 3);
    writeTuple(b, 0, pre);
    writeTuple(b, TUPLE.size, { family: 6, proto: 17, src: 'fd00::2', dst: '2001:db8:0:0:1:0:0:1', sport: 5353, dport: 53 });
    writeTuple(b, TUPLE.size * 2, { family: 4, proto: 1, src: '172.17.0.3', dst: '198.51.100.10', sport: 77, dport: 77, icmpType: 8 });
    expect(readTuple(b, 0)).toEqual({ family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', dst: '10.0.10.26', sport: 40000, dport: 8000 });
    expect(readTuple(b, TUPLE.size)).toMatchObject({ family: 6, proto: 'udp', src: 'fd00::2', dst: '2001:db8::1:0:0:1', dport: 53 });
    expect(readTuple(b, TUPLE.size * 2)).toMatchObject({ proto: 'icmp', sport: 77, dport: 77, icmpType: 8, icmpCode: 0 });
  });
  it('unknown family or a short buffer is null', () => {
    expect(readTuple(Buffer.alloc(TUPLE.size), 0)).toBeNull();
    const b = Buffer.alloc(TUPLE.size);
    writeTuple(b, 0, pre);
    expect(readTuple(b.subarray(0, 39), 0)).toBeNull();
  });
  it('addrBytes round-trips any IPv4/IPv6 address and refuses garbage', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
        const bytes = addrBytes(ip);
        expect(bytes).not.toBeNull();
        if (!bytes) return;
        const b = Buffer.alloc(TUPLE.size);
        bytes.copy(b, 0);
        b.writeUInt8(bytes.length === 4 ? 4 : 6, TUPLE.fields.family);
        const back = readTuple(b, 0);
        expect(addrBytes(back?.src ?? '')).toEqual(bytes);
      }),
    );
    for (const bad of ['', '1.2.3', '256.1.1.1', 'fd00:::1', '1:2:3:4:5:6:7:8:9', 'x::1', '::1::2']) expect(addrBytes(bad)).toBeNull();
  });
});

describe('conntrack records', () => {
  it('a NEW with DNAT: both tuples, status names, tcp state, kernel id', () => {
    const b = ctRecord({
      type: 1,
      id: 2074124758,
      status: (1 << 3) | (1 << 5) | (1 << 7) | (1 << 8),
      orig: pre,
      reply: post,
      tcpState: 1,
      timeout: 120,
    });
    const r = readCtRecord(b, 0);
    expect(r?.type).toBe('new');
    expect(r?.timeMs).toBe(1_700_000_000_123);
    expect(r?.entry).toEqual({
      id: '2074124758',
      orig: readTuple(b, CT_EVENT.fields.orig),
      reply: readTuple(b, CT_EVENT.fields.reply),
      status: ['CONFIRMED', 'DST_NAT', 'SRC_NAT_DONE', 'DST_NAT_DONE'],
      tcpState: 'SYN_SENT',
      mark: 0,
      zone: 0,
      timeout: 120,
      source: 'netlink',
    });
  });
  it('ICMP: the reply direction gets the echo reply type; udp has no tcpState', () => {
    const icmp = ctRecord({
      type: 2,
      id: 9,
      status: 0,
      orig: { family: 4, proto: 1, src: 'a'.length ? '172.17.0.3' : '', dst: '198.51.100.10', sport: 5, dport: 5, icmpType: 8 },
      reply: { family: 4, proto: 1, src: '198.51.100.10', dst: '10.0.10.26', sport: 5, dport: 5 },
      tcpState: 3,
    });
    const r = readCtRecord(icmp, 0);
    expect(r?.type).toBe('update');
    expect(r?.entry.reply.icmpType).toBe(0);
    expect(r?.entry.tcpState).toBeUndefined();
  });
  it('a batch: dump records become new, destroy stays destroy, garbage is counted', () => {
    const good1 = ctRecord({ type: 4, id: 1, status: 8, orig: pre, reply: post });
    const good2 = ctRecord({ type: 3, id: 2, status: 8, orig: pre, reply: post });
    const bad = Buffer.alloc(CT_EVENT.size, 0xee);
    const { events, bad: nbad } = readCtBatch(Buffer.concat([good1, bad, good2]), 4);
    expect(events.map((e) => [e.type, e.entry.id])).toEqual([
      ['new', '1'],
      ['destroy', '2'],
    ]);
    expect(nbad).toBe(2); // the garbage record and the one the count claimed but the buffer lacks
  });
  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(10), (bytes, count) => {
        const { events, bad } = readCtBatch(Buffer.from(bytes), count);
        expect(events.length + bad).toBe(count);
      }),
    );
  });
});

describe('kernel records', () => {
  it('a drop: reason code, location, interface, tuple, time on the realtime clock', () => {
    const r = readKernelRecord(kernelRecord({ kind: 1, pkt: pre, reason: 12, ifname: 'eth0', tsNs: 2_000_000_000n }), 0, 1_000_000_000_000);
    expect(r).toMatchObject({ kind: 'drop', reasonCode: 12, iface: 'eth0', ifindex: 7, len: 60, netns: 4026531840, ct: null, timeUs: 1_002_000_000 });
    expect(r?.kind === 'drop' && r.location).toBe(0xffffffff81000010n);
    expect(r?.tuple).toMatchObject({ src: '10.0.10.5', dport: 8000 });
  });
  it('a hook event after DNAT: hook name, priority, conntrack view', () => {
    const dnat = { family: 4 as const, proto: 6, src: '10.0.10.5', dst: '172.17.0.2', sport: 40000, dport: 80 };
    const r = readKernelRecord(
      kernelRecord({ kind: 2, pkt: dnat, ctOrig: pre, ctReply: post, status: (1 << 5) | (1 << 8), hook: 0, priority: -99, ifname: 'eth0' }),
      0,
      0,
    );
    expect(r).toMatchObject({ kind: 'hook', hook: 'prerouting', hookNum: 0, pf: 2, priority: -99 });
    expect(r?.ct?.status).toEqual(['DST_NAT', 'DST_NAT_DONE']);
    expect(r?.ct?.orig).toMatchObject({ dst: '10.0.10.26', dport: 8000 });
    expect(r?.ct?.reply).toMatchObject({ src: '172.17.0.2', sport: 80 });
  });
  it('unknown kinds, unknown hooks and short buffers are null', () => {
    expect(readKernelRecord(kernelRecord({ kind: 9 }), 0, 0)).toBeNull();
    expect(readKernelRecord(kernelRecord({ kind: 2, hook: 7 }), 0, 0)).toBeNull();
    expect(readKernelRecord(Buffer.alloc(EVENT.size - 1), 0, 0)).toBeNull();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: EVENT.size, maxLength: EVENT.size }), (bytes) => void readKernelRecord(Buffer.from(bytes), 0, 0)),
    );
  });
  it('a 16-byte interface name without a terminator', () => {
    const r = readKernelRecord(kernelRecord({ kind: 1, ifname: 'abcdefghijklmnop' }), 0, 0);
    expect(r?.iface).toBe('abcdefghijklmnop');
  });
});

describe('support', () => {
  it('status bits by the kernel numbering (IPS_*)', () => {
    expect(ctStatusNames(0b1110)).toEqual(['SEEN_REPLY', 'ASSURED', 'CONFIRMED']);
    expect(ctStatusNames(1 << 4)).toEqual(['SRC_NAT']);
  });
  it('drop reasons keep the kernel names, without the prefix', () => {
    const r = new DropReasons([
      { value: 1, name: 'SKB_CONSUMED' },
      { value: 12, name: 'SKB_DROP_REASON_NETFILTER_DROP' },
    ]);
    expect(r.name(12)).toBe('NETFILTER_DROP');
    expect(r.name(1)).toBe('SKB_CONSUMED');
    expect(r.name(999)).toBe('REASON_999');
    expect(r.value('NETFILTER_DROP')).toBe(12);
  });
  it('kernel symbols resolve an address inside a function', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jn-ksyms-'));
    const file = join(dir, 'kallsyms');
    writeFileSync(
      file,
      'ffffffff81000000 T _stext\nffffffff81000100 t nf_hook_slow\nffffffff81000200 D some_data\nffffffff81000300 T ip_rcv\tmodule\n',
    );
    const s = new KernelSymbols();
    expect(s.resolve(0xffffffff81000150n)).toBe('0xffffffff81000150');
    await s.load(file);
    expect(s.resolve(0xffffffff81000150n)).toBe('nf_hook_slow+0x50');
    expect(s.resolve(0xffffffff81000300n)).toBe('ip_rcv+0x0');
    expect(s.resolve(0x10n)).toBe('0x10');
  });
  it('the NAT hook plan brackets each NAT priority', () => {
    const plan = hookPlan('nat', [4]);
    expect(plan).toHaveLength(8);
    for (const p of plan) {
      if (p.hook === 'forward') expect(phaseOf(p.hook, p.priority)).toBeNull();
      else expect(['before-nat', 'after-nat']).toContain(phaseOf(p.hook, p.priority));
    }
    expect(plan.filter((p) => p.hook === 'prerouting').map((p) => phaseOf(p.hook, p.priority))).toEqual(['before-nat', 'after-nat']);
  });
  it('the default plan is one point after each NAT priority: two links a forwarded packet', () => {
    const plan = hookPlan('after-nat', [4]);
    expect(plan.every((p) => phaseOf(p.hook, p.priority) === 'after-nat')).toBe(true);
    // a forwarded packet passes prerouting, forward, postrouting
    expect(plan.filter((p) => ['prerouting', 'forward', 'postrouting'].includes(p.hook))).toHaveLength(2);
    expect(hookPlan('nat', [4]).filter((p) => ['prerouting', 'forward', 'postrouting'].includes(p.hook))).toHaveLength(5);
  });
  it("the tuple before DNAT comes from conntrack's entry, for the packet's direction, never for a related packet", () => {
    const orig: Tuple = { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', sport: 40000, dst: '10.0.10.26', dport: 8000 };
    const reply: Tuple = { family: 4, proto: 'tcp', protoNum: 6, src: '172.17.0.2', sport: 80, dst: '10.0.10.5', dport: 40000 };
    const ev = (hook: HookEvent['hook'], priority: number, ctinfo: number | null): HookEvent => ({
      kind: 'hook',
      timeUs: 1,
      hook,
      family: 4,
      priority,
      phase: phaseOf(hook, priority),
      tuple: { ...orig, dst: '172.17.0.2', dport: 80 },
      ctStatus: [],
      ct: ctinfo === null ? null : { status: [], statusBits: 0, mark: 0, zone: 0, ctinfo, orig, reply },
      iface: 'eth0',
      ifindex: 2,
      netns: 1,
      len: 60,
    });
    const none = new Set<string>();
    expect(conntrackTuple(ev('prerouting', -99, 2), none)).toMatchObject({
      priority: CONNTRACK_PRIORITY,
      phase: 'before-nat',
      tuple: orig,
      from: 'conntrack',
    });
    expect(conntrackTuple(ev('output', -99, 0), none)?.tuple).toEqual(orig);
    expect(conntrackTuple(ev('prerouting', -99, 3), none)?.tuple).toEqual(reply);
    // related (ICMP errors), no entry, no conntrack at that hook, a program already there
    for (const ctinfo of [1, 4, null]) expect(conntrackTuple(ev('prerouting', -99, ctinfo), none)).toBeNull();
    expect(conntrackTuple(ev('postrouting', 101, 2), none)).toBeNull();
    expect(conntrackTuple(ev('prerouting', -99, 2), new Set(['4/prerouting']))).toBeNull();
  });
  it('filters are validated before they reach the kernel', () => {
    expect(nativeFilter({ proto: 'tcp', port: 8000, addr: '10.0.10.5' })).toEqual({ proto: 6, port: 8000, addr: Buffer.from([10, 0, 10, 5]) });
    expect(() => nativeFilter({ proto: 'bogus' })).toThrow(/protocol/);
    expect(() => nativeFilter({ port: 70000 })).toThrow(/port/);
    expect(() => nativeFilter({ addr: '10.0.0' })).toThrow(/address/);
  });
});
