import { describe, it, expect } from 'vitest';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseConntrackLine, parseConntrackText, normaliseIp } from '../../src/conntrack/parse.js';
import { natOf } from '../../src/conntrack/nat.js';
import { ConntrackTable } from '../../src/conntrack/table.js';
import { ListingDiff } from '../../src/conntrack/diff.js';
import { parseSnapshot, SnapshotConntrackSource } from '../../src/conntrack/snapshot-source.js';
import { ProcConntrackSource } from '../../src/conntrack/proc-source.js';
import { openConntrackSource } from '../../src/conntrack/select.js';
import type { ConntrackEvent } from '../../src/model/conntrack.js';

const FIX = new URL('../fixtures/conntrack/', import.meta.url).pathname;
const tcp = (src: string, sport: number, dst: string, dport: number) => ({
  family: 4 as const,
  proto: 'tcp' as const,
  protoNum: 6,
  src,
  dst,
  sport,
  dport,
});

describe('parse', () => {
  it('reads /proc/net/nf_conntrack lines, counts garbage', () => {
    const { lines, skipped } = parseConntrackText(readFileSync(`${FIX}proc-docker.txt`, 'utf8'), 'proc');
    expect(skipped).toBe(2);
    expect(lines).toHaveLength(5);
    const [web, masq, icmp, udp, v6] = lines.map((l) => l.entry);
    expect(web).toMatchObject({
      id: 'tcp/10.0.10.5/40000/10.0.10.26/8000',
      orig: tcp('10.0.10.5', 40000, '10.0.10.26', 8000),
      reply: tcp('172.17.0.2', 80, '10.0.10.5', 40000),
      tcpState: 'ESTABLISHED',
      timeout: 431999,
      source: 'proc',
    });
    expect(web!.status).toEqual(expect.arrayContaining(['SEEN_REPLY', 'ASSURED', 'DST_NAT']));
    expect(web!.status).not.toContain('SRC_NAT');
    expect(masq!.status).toContain('SRC_NAT');
    expect(icmp).toMatchObject({
      orig: { proto: 'icmp', sport: 7, dport: 7, icmpType: 8 },
      reply: { src: '10.0.10.5', dst: '10.0.10.26', icmpType: 0 },
    });
    expect(icmp!.tcpState).toBeUndefined();
    expect(udp!.status).not.toContain('SEEN_REPLY');
    expect(v6).toMatchObject({ orig: { family: 6, src: 'fd00::5', dst: 'fd00::1a' }, tcpState: 'SYN_SENT' });
  });
  it('reads conntrack -E -o extended,id,timestamp (ids, events, times; icmp id vs conntrack id)', () => {
    const { lines } = parseConntrackText(readFileSync(`${FIX}tool-events.txt`, 'utf8'), 'conntrack-tool');
    expect(lines.map((l) => l.event)).toEqual(['new', 'update', 'update', 'update', 'new', 'update', 'destroy']);
    expect(lines[0]!.entry.id).toBe('2257759859');
    expect(lines[0]!.timeMs).toBe(1795407369445);
    expect(lines[4]!.entry).toMatchObject({ id: '2560203762', orig: { sport: 9860, dport: 9860 } });
    expect(lines[6]!.entry.timeout).toBe(0);
    expect(natOf(lines[0]!.entry.orig, lines[0]!.entry.reply)).toEqual({ dnat: { from: '10.77.0.2:9000', to: '10.77.0.2:9001' }, snat: null });
  });
  it('never throws on random input', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        parseConntrackLine(s, 'proc');
      }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('src=1.2.3.4', 'dst=::1', 'sport=x', 'id=9', '[ASSURED]', 'ipv4', '2', 'tcp', '6', 'zone=3', 'type=8')),
        (a) => {
          parseConntrackLine(a.join(' '), 'proc');
        },
      ),
    );
  });
  it('compresses IPv6 as inet_ntop does', () => {
    expect(normaliseIp('fd00:0000:0000:0000:0000:0000:0000:0002')).toBe('fd00::2');
    expect(normaliseIp('2001:0db8:0000:0001:0000:0000:0000:0001')).toBe('2001:db8:0:1::1');
    expect(normaliseIp('0000:0000:0000:0000:0000:0000:0000:0001')).toBe('::1');
    expect(normaliseIp('10.0.0.1')).toBe('10.0.0.1');
  });
});

describe('nat', () => {
  it('derives DNAT, SNAT (MASQUERADE), both, and none from the tuples', () => {
    expect(natOf(tcp('10.0.10.5', 40000, '10.0.10.26', 8000), tcp('172.17.0.2', 80, '10.0.10.5', 40000))).toEqual({
      dnat: { from: '10.0.10.26:8000', to: '172.17.0.2:80' },
      snat: null,
    });
    expect(natOf(tcp('172.17.0.2', 5000, '10.0.10.5', 9000), tcp('10.0.10.5', 9000, '10.0.10.26', 5000))).toEqual({
      dnat: null,
      snat: { from: '172.17.0.2:5000', to: '10.0.10.26:5000' },
    });
    const both = natOf(tcp('172.17.0.3', 5000, '172.17.0.1', 8000), tcp('172.17.0.2', 80, '172.17.0.1', 5000));
    expect(both.dnat?.to).toBe('172.17.0.2:80');
    expect(both.snat).toEqual({ from: '172.17.0.3:5000', to: '172.17.0.1:5000' });
    expect(natOf(tcp('1.1.1.1', 1, '2.2.2.2', 2), tcp('2.2.2.2', 2, '1.1.1.1', 1))).toEqual({ dnat: null, snat: null });
  });
});

describe('table', () => {
  it('finds an entry from both sides of NAT in both directions', () => {
    const t = new ConntrackTable();
    const e = parseConntrackText(readFileSync(`${FIX}proc-docker.txt`, 'utf8'), 'proc').lines[0]!.entry;
    t.upsert(e);
    expect(t.lookup(tcp('10.0.10.5', 40000, '10.0.10.26', 8000))).toMatchObject({ direction: 'orig', natted: false });
    expect(t.lookup(tcp('10.0.10.5', 40000, '172.17.0.2', 80))).toMatchObject({ direction: 'orig', natted: true });
    expect(t.lookup(tcp('172.17.0.2', 80, '10.0.10.5', 40000))).toMatchObject({ direction: 'reply', natted: true });
    expect(t.lookup(tcp('10.0.10.26', 8000, '10.0.10.5', 40000))).toMatchObject({ direction: 'reply', natted: false });
    expect(t.lookup(tcp('10.0.10.5', 40001, '10.0.10.26', 8000))).toBeNull();
    t.remove(e.id);
    expect(t.lookup(tcp('10.0.10.5', 40000, '10.0.10.26', 8000))).toBeNull();
  });
  it('with DNAT and SNAT, also finds the packet between the two rewrites (self-hairpin on a bridge)', () => {
    const t = new ConntrackTable();
    // web 172.17.0.2 -> its own published port, DNAT to itself and MASQUERADE to the gateway
    t.upsert({
      id: 'h',
      orig: tcp('172.17.0.2', 39650, '10.0.10.26', 8000),
      reply: tcp('172.17.0.2', 80, '172.17.0.1', 39650),
      status: [],
      mark: 0,
      zone: 0,
      timeout: 1,
      source: 'proc',
    });
    expect(t.lookup(tcp('172.17.0.2', 39650, '172.17.0.2', 80))).toMatchObject({ direction: 'orig', natted: true });
    expect(t.lookup(tcp('172.17.0.2', 80, '172.17.0.2', 39650))).toMatchObject({ direction: 'reply', natted: true });
    expect(t.lookup(tcp('172.17.0.1', 39650, '172.17.0.2', 80))).toMatchObject({ direction: 'orig' });
  });
  it('is bounded and counts evictions', () => {
    const t = new ConntrackTable({ maxEntries: 100 });
    for (let i = 0; i < 250; i++) {
      const o = tcp('10.0.0.1', 1000 + i, '10.0.0.2', 80);
      t.upsert({
        id: String(i),
        orig: o,
        reply: { ...o, src: o.dst, dst: o.src, sport: 80, dport: o.sport },
        status: [],
        mark: 0,
        zone: 0,
        timeout: 1,
        source: 'proc',
      });
    }
    expect(t.size).toBe(100);
    expect(t.evicted).toBe(150);
    expect(t.get('149')).toBeUndefined();
    expect(t.get('150')).toBeDefined();
    expect(t.lookup(tcp('10.0.0.1', 1000, '10.0.0.2', 80))).toBeNull();
  });
});

describe('sources', () => {
  it('the /proc poller synthesises new, update and destroy by diffing', async () => {
    const lines = readFileSync(`${FIX}proc-docker.txt`, 'utf8').split('\n');
    let text = lines.slice(0, 2).join('\n');
    const src = new ProcConntrackSource({ intervalMs: 20, read: async () => text });
    expect(src.limitations.join(' ')).toMatch(/no SNAT\/DNAT status bits/);
    expect(await src.dump()).toHaveLength(2);
    const got: ConntrackEvent[] = [];
    await src.start(
      (evs) => got.push(...evs),
      (e) => {
        throw e;
      },
    );
    text = [lines[0]!.replace('ESTABLISHED', 'FIN_WAIT'), lines[2]].join('\n');
    await new Promise((r) => setTimeout(r, 120));
    await src.stop();
    expect(got.map((e) => `${e.type} ${e.entry.orig.proto}`).sort()).toEqual(['destroy tcp', 'new icmp', 'update tcp']);
  });
  it('a missing /proc file is a clear E_CONNTRACK', async () => {
    const src = new ProcConntrackSource({
      read: async () => {
        throw Object.assign(new Error('nope'), { code: 'ENOENT' });
      },
    });
    await expect(src.dump()).rejects.toMatchObject({ code: 'E_CONNTRACK', message: /does not exist/ });
  });
  it('snapshot files: text listings, event logs, JSON lines; garbage is an error', async () => {
    const d = mkdtempSync(join(tmpdir(), 'jct-'));
    try {
      const ev = new SnapshotConntrackSource(`${FIX}tool-events.txt`);
      const entries = await ev.dump();
      expect(entries.map((e) => e.id).sort()).toEqual(['2257759859', '2560203762']);
      expect(entries.find((e) => e.id === '2257759859')?.tcpState).toBe('TIME_WAIT');
      expect(ev.events).toHaveLength(7);
      const json = parseSnapshot(`${entries.map((e) => JSON.stringify({ type: 'new', time: 5, entry: e })).join('\n')}\nnot json\n`);
      expect(json.entries).toHaveLength(2);
      expect(json.skipped).toBe(1);
      writeFileSync(join(d, 'bad.txt'), 'hello\nworld\n');
      await expect(new SnapshotConntrackSource(join(d, 'bad.txt')).dump()).rejects.toMatchObject({ code: 'E_PARSE' });
      await expect(new SnapshotConntrackSource(join(d, 'absent.txt')).dump()).rejects.toMatchObject({ code: 'E_CONNTRACK' });
      const opened = await openConntrackSource({ snapshot: `${FIX}proc-docker.txt` });
      expect(opened.source.kind).toBe('snapshot');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
  it('ListingDiff ignores timeout-only changes', () => {
    const d = new ListingDiff();
    const e = parseConntrackText(readFileSync(`${FIX}proc-docker.txt`, 'utf8'), 'proc').lines[0]!.entry;
    d.baseline([e]);
    expect(d.next([{ ...e, timeout: 5 }], 1)).toEqual([]);
  });
});

describe('a long conntrack -E log', () => {
  it('150,000 event lines read without a stack overflow, every event kept', async () => {
    const { writeFileSync: wf, mkdtempSync: md } = await import('node:fs');
    const { tmpdir: td } = await import('node:os');
    const { join: jn } = await import('node:path');
    const { SnapshotConntrackSource: Src } = await import('../../src/conntrack/snapshot-source.js');
    const lines: string[] = [];
    for (let i = 0; i < 150_000; i++) {
      const a = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const port = 1024 + (i % 60000);
      lines.push(
        `[${(1795407369 + i / 1000).toFixed(6)}]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=${a} dst=10.77.0.2 sport=${port} dport=9000 [UNREPLIED] src=10.77.0.2 dst=${a} sport=9000 dport=${port} id=${i + 1}`,
      );
    }
    const f = jn(md(jn(td(), 'journey-ct-')), 'long.log');
    wf(f, lines.join('\n'));
    const s = new Src(f);
    expect(await s.dump()).toHaveLength(150_000);
    expect(s.events).toHaveLength(150_000);
    expect(s.skipped).toBe(0);
  }, 60_000);
});
