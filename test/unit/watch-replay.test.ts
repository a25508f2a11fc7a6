import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync, writeFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Command } from 'commander';
import { startPipeline } from '../../src/pipeline/pipeline.js';
import { formatFlowEvent } from '../../src/output/terminal.js';
import { registerWatch } from '../../src/cli/watch.js';
import { parseSnapshot } from '../../src/conntrack/snapshot-source.js';
import { natOf } from '../../src/conntrack/nat.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';

// Recorded in the lab (scenario default, every standard probe) with test/fixtures/watch/record.sh.
const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;
const READ = [`${DIR}eth0.pcap`, `${DIR}docker0.pcap`];
const CT = `${DIR}conntrack.txt`;
const DOCKER = `${DIR}docker.json`;
const RULES = { iptablesSave: [`${DIR}iptables-save.txt`], addrs: `${DIR}addrs.json`, routes: `${DIR}routes.json` };

async function replay(extra: Record<string, unknown> = {}): Promise<JourneyEvent[]> {
  const p = await startPipeline({ read: READ, conntrackSnapshot: CT, dockerSnapshot: DOCKER, rulesetFiles: RULES, startDelayMs: 250, ...extra });
  const events: JourneyEvent[] = [];
  for await (const ev of p) events.push(ev);
  return events;
}

const flowsOf = (evs: JourneyEvent[], type: FlowEvent['type']) => evs.filter((e): e is FlowEvent => e.type === type).map((e) => e.flow);
const origTo = (fs: FlowInfo[], dst: string, dport?: number) =>
  fs.filter((f) => f.orig.dst === dst && (dport === undefined || f.orig.dport === dport));

describe('watch: replay of a lab recording (scenario default)', () => {
  let events: JourneyEvent[] = [];
  let starts: FlowInfo[] = [];
  beforeAll(async () => {
    events = await replay();
    starts = flowsOf(events, 'flow.start');
  });

  it('ext -> 10.0.10.26:8000: one flow, uplink and bridge legs, NAT equal to conntrack, named web', () => {
    const f = origTo(starts, '10.0.10.26', 8000).filter((x) => x.orig.src === '10.0.10.5');
    expect(f).toHaveLength(1);
    const flow = f[0]!;
    expect(flow.legs.filter((l) => l.direction === 'orig').map((l) => l.iface)).toEqual(['eth0', 'docker0']);
    expect(flow.legs.find((l) => l.iface === 'docker0' && l.direction === 'orig')?.tuple).toMatchObject({ dst: '172.17.0.2', dport: 80 });
    const ct = parseSnapshot(readFileSync(CT, 'utf8')).entries.find((e) => e.id === flow.id)!;
    expect(flow.nat).toEqual(natOf(ct.orig, ct.reply));
    expect(flow.nat.dnat).toEqual({ from: '10.0.10.26:8000', to: '172.17.0.2:80' });
    expect(flow.names.find((n) => n.addr === '172.17.0.2')?.container).toBe('web');
    expect(flow.legDelayUs).toBeGreaterThanOrEqual(0);
    expect(flow.legDelayUs).toBeLessThan(50_000);
    // explained against the recorded ruleset: DNAT in nat DOCKER, accepted by filter DOCKER #1
    expect(flow.explanation?.verdict).toBe('accept');
    expect(flow.explanation?.nat.dnat?.to).toBe('172.17.0.2:80');
    expect(flow.explanation?.steps.some((st) => st.table === 'nat' && st.chain === 'DOCKER' && st.verdict === 'dnat')).toBe(true);
  });

  it('container -> outside shows the MASQUERADE leg: tcp, udp and icmp', () => {
    for (const proto of ['tcp', 'udp', 'icmp'] as const) {
      const f = origTo(starts, '198.51.100.10').filter((x) => x.orig.proto === proto);
      expect(f, proto).toHaveLength(1);
      expect(f[0]!.nat.snat?.to.startsWith('10.0.10.26'), proto).toBe(true);
      expect(f[0]!.legs.filter((l) => l.direction === 'orig').map((l) => `${l.iface}:${l.tuple.src}`)).toEqual([
        'docker0:172.17.0.3',
        'eth0:10.0.10.26',
      ]);
      expect(
        f[0]!.legs.some((l) => l.direction === 'reply'),
        proto,
      ).toBe(true);
      expect(f[0]!.names.find((n) => n.addr === '172.17.0.3')?.container).toBe('client');
      expect(
        f[0]!.explanation?.steps.some((st) => st.verdict === 'masquerade'),
        proto,
      ).toBe(true);
    }
  });

  it('hairpin through docker-proxy: the two halves are linked', () => {
    const front = origTo(starts, '10.0.10.26', 8000).find((x) => x.orig.src === '172.17.0.3')!;
    const ends = new Map(flowsOf(events, 'flow.end').map((f) => [f.id, f]));
    const peer = ends.get(front.id)?.proxiedBy?.peerFlowId;
    expect(peer).toBeTruthy();
    const back = ends.get(peer!)!;
    expect(back.orig).toMatchObject({ src: '172.17.0.1', dst: '172.17.0.2', dport: 80 });
    expect(back.proxiedBy?.peerFlowId).toBe(front.id);
  });

  it('the dropped packet (FORWARD policy DROP) is a flow without conntrack that never reaches the bridge', () => {
    const f = origTo(starts, '172.17.0.2', 81);
    expect(f).toHaveLength(1);
    expect(f[0]!.ctStatus).toEqual([]);
    expect(f[0]!.legs.map((l) => l.iface)).toEqual(['eth0']);
    expect(f[0]!.explanation?.verdict).toBe('drop');
  });

  it('every flow appears once; seq increases; every event matches docs/event-schema.json', () => {
    const ids = starts.map((f) => f.id);
    expect(new Set(ids).size).toBe(ids.length);
    const ends = flowsOf(events, 'flow.end').map((f) => f.id);
    expect(new Set(ends).size).toBe(ends.length);
    expect([...ends].sort()).toEqual([...ids].sort());
    const seqs = events.map((e) => e.seq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    const schema = JSON.parse(readFileSync(new URL('../../docs/event-schema.json', import.meta.url), 'utf8'));
    const validate = ajv.compile(schema);
    for (const e of events) {
      const ok = validate(e);
      expect(ok ? null : { type: e.type, errors: validate.errors }).toBeNull();
    }
    const stats = events.filter((e) => e.type === 'capture.stats');
    expect(stats.at(-1)).toMatchObject({
      stats: [
        { iface: 'eth0', received: 65 },
        { iface: 'docker0', received: 129 },
      ],
    });
  });

  it('golden: the terminal lines of the replay', () => {
    const text = `${events
      .filter((e): e is FlowEvent => e.type.startsWith('flow.') && e.type !== 'flow.update')
      .map((e) => formatFlowEvent(e))
      .join('\n')}\n`;
    const golden = `${DIR}golden.txt`;
    if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(golden)) writeFileSync(golden, text);
    expect(text).toBe(readFileSync(golden, 'utf8'));
  });

  it('without a conntrack snapshot, packets are grouped by tuple and the notice says so', async () => {
    const p = await startPipeline({ read: READ });
    const evs: JourneyEvent[] = [];
    for await (const ev of p) evs.push(ev);
    expect(evs.some((e) => e.type === 'notice' && /without a conntrack snapshot/.test(e.message))).toBe(true);
    expect(flowsOf(evs, 'flow.start').every((f) => f.ctStatus.length === 0)).toBe(true);
  });

  it('garbage capture files are a clear error, not a crash', async () => {
    const d = mkdtempSync(join(tmpdir(), 'jw-'));
    try {
      writeFileSync(join(d, 'bad.pcap'), 'this is not a capture file at all');
      const p = await startPipeline({ read: [join(d, 'bad.pcap')], conntrackSnapshot: CT });
      const evs: JourneyEvent[] = [];
      for await (const ev of p) evs.push(ev);
      expect(evs.some((e) => e.type === 'notice' && e.code === 'E_PARSE')).toBe(true);
      expect(p.error?.code).toBe('E_PARSE');
      await expect(startPipeline({ read: [join(d, 'absent.pcap')] })).rejects.toMatchObject({ code: 'E_PARSE', message: /cannot open/ });
      writeFileSync(join(d, 'docker.json'), '{not json');
      await expect(startPipeline({ read: READ, dockerSnapshot: join(d, 'docker.json') })).rejects.toMatchObject({ code: 'E_PARSE' });
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('journey watch (the command) on the replay', () => {
  async function runCli(args: string[]): Promise<{ out: string; err: string }> {
    const program = new Command('journey').exitOverride();
    registerWatch(program);
    let out = '';
    let err = '';
    const ow = process.stdout.write.bind(process.stdout);
    const ew = process.stderr.write.bind(process.stderr);
    (process.stdout as { write: unknown }).write = (s: string | Uint8Array) => {
      out += String(s);
      return true;
    };
    (process.stderr as { write: unknown }).write = (s: string | Uint8Array) => {
      err += String(s);
      return true;
    };
    try {
      await program.parseAsync(['node', 'journey', 'watch', ...args]);
    } finally {
      (process.stdout as { write: unknown }).write = ow;
      (process.stderr as { write: unknown }).write = ew;
    }
    return { out, err };
  }
  const base = [
    '--read',
    ...READ,
    '--conntrack',
    CT,
    '--docker-snapshot',
    DOCKER,
    '--no-color',
    '--ruleset',
    `${DIR}iptables-save.txt`,
    '--host-addrs',
    `${DIR}addrs.json`,
    '--host-routes',
    `${DIR}routes.json`,
  ];

  it('prints one line per flow event and the capture statistics on stderr', async () => {
    const { out, err } = await runCli(base);
    expect(out).toBe(readFileSync(`${DIR}golden.txt`, 'utf8'));
    expect(err).toMatch(/eth0: 65 packets received, 0 dropped by kernel/);
    expect(err).toMatch(/docker0: 129 packets received/);
  });

  it('--verdict takes the word the terminal prints (DROPPED) as well as the filter word (drop)', async () => {
    const golden = readFileSync(`${DIR}golden.txt`, 'utf8').split('\n');
    const dropped = golden.filter((l) => / DROPPED /.test(l));
    expect(dropped.length).toBeGreaterThan(0);
    for (const word of ['DROPPED', 'dropped', 'drop']) {
      const { out } = await runCli([...base, '--verdict', word]);
      expect(out.trim().split('\n'), word).toEqual(dropped);
    }
    await expect(runCli([...base, '--verdict', 'DROPPD'])).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringMatching(/DROPPD/) });
  });

  it('-o FORMAT and its shorthands are the same printer; two formats at once are refused', async () => {
    expect((await runCli([...base, '-o', 'explain'])).out).toBe((await runCli([...base, '--explain'])).out);
    expect((await runCli([...base, '-o', 'line'])).out).toBe(readFileSync(`${DIR}golden.txt`, 'utf8'));
    await expect(runCli([...base, '-o', 'json', '--top'])).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(runCli([...base, '-o', 'yaml'])).rejects.toMatchObject({
      code: 'E_USAGE',
      message: expect.stringMatching(/line, json, top, explain/),
    });
  });

  it('--json prints the same events as serve, one per line', async () => {
    const { out } = await runCli([...base, '--json']);
    const evs = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as JourneyEvent);
    expect(evs.filter((e) => e.type === 'flow.start').length).toBe(
      readFileSync(`${DIR}golden.txt`, 'utf8')
        .split('\n')
        .filter((l) => / START /.test(l)).length,
    );
    expect(evs.at(-1)?.type).toBe('capture.stats');
  });

  it('filters: --container, --port, --proto, --nat', async () => {
    const web = (await runCli([...base, '--container', 'web'])).out.trim().split('\n');
    expect(web.length).toBeGreaterThan(0);
    expect(web.every((l) => l.includes('web('))).toBe(true);
    const udp = (await runCli([...base, '--proto', 'udp'])).out.trim().split('\n');
    expect(udp).toHaveLength(2);
    expect(udp.every((l) => / udp /.test(l))).toBe(true);
    const p81 = (await runCli([...base, '--port', '81'])).out.trim().split('\n');
    expect(p81).toHaveLength(2);
    const nat = (await runCli([...base, '--nat'])).out.trim().split('\n');
    expect(nat.every((l) => /DNAT|SNAT|MASQUERADE/.test(l))).toBe(true);
  });

  it('--explain prints each new flow in full', async () => {
    const { out } = await runCli([...base, '--explain', '--port', '8000', '--addr', '10.0.10.5']);
    expect(out).toMatch(/journey of .*web\(172\.17\.0\.2\):80 ← 10\.0\.10\.5/);
    expect(out).toMatch(/eth0 +orig +10\.0\.10\.5:\d+ → 10\.0\.10\.26:8000/);
    expect(out).toMatch(/docker0 +orig +10\.0\.10\.5:\d+ → 172\.17\.0\.2:80/);
    expect(out).toMatch(/DNAT 10\.0\.10\.26:8000 → 172\.17\.0\.2:80/);
    expect(out).toMatch(/verdict: ACCEPTED filter DOCKER#1/);
    expect(out).toMatch(/prerouting\/ip nat DOCKER #\d+ +dnat/);
    // START/END lines stay, and the reply direction is explained from the conntrack entry
    expect(out).toMatch(/ START +web\(172\.17\.0\.2\):80 ← 10\.0\.10\.5:\d+ .*ACCEPTED filter DOCKER#1/);
    expect(out).toMatch(/ END +web\(172\.17\.0\.2\):80 ← 10\.0\.10\.5:\d+ .*replay-end/);
    expect(out).toMatch(/reply: ACCEPTED filter FORWARD#5, out of eth0 as 10\.0\.10\.26:8000 → 10\.0\.10\.5:\d+/);
    expect(out).toMatch(/postrouting\/conntrack +DE-DNAT source 172\.17\.0\.2:80 → 10\.0\.10\.26:8000/);
    const masq = await runCli([...base, '--explain', '--port', '39432']);
    expect(masq.out).toMatch(/reply: ACCEPTED filter FORWARD#3, out of docker0 as 198\.51\.100\.10:80 → 172\.17\.0\.3:39432/);
    expect(masq.out).toMatch(/prerouting\/conntrack +DE-SNAT destination 10\.0\.10\.26:39432 → 172\.17\.0\.3:39432/);
  });

  it('a capture file that cannot be read is an error exit, after the statistics', async () => {
    const d = mkdtempSync(join(tmpdir(), 'jw-'));
    try {
      writeFileSync(join(d, 'bad.pcap'), 'garbage garbage garbage garbage');
      await expect(runCli(['--read', join(d, 'bad.pcap')])).rejects.toMatchObject({ code: 'E_PARSE' });
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('usage errors are E_USAGE', async () => {
    await expect(runCli(['--conntrack', CT])).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(runCli([...base, '--json', '--top'])).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(runCli([...base, '--port', 'http'])).rejects.toMatchObject({ code: 'E_USAGE' });
  });
});
