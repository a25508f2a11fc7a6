/**
 * IPv6 in the kernel-events path (lab scenario `ipv6`, lab up once):
 *  - the eBPF programs walk IPv6 extension headers (hop-by-hop, destination options) to the
 *    transport header: a real TCP SYN sent with both headers (sticky socket options, python3) from
 *    ext2 to the published port is dropped by the ip6 DOCKER-USER rule; the drop carries reason
 *    NETFILTER_DROP and the TCP tuple after DNAT (not protocol 0/60 without ports), and joins the
 *    ip6tables rule that dropped it. The kernel's own word: `nft monitor trace` saw DOCKER-USER drop
 *    it, and the packet on the wire (tcpdump) carried the extension headers.
 *  - watch (the real pipeline) on IPv6 flows: published port (DNAT to web's IPv6), outbound NAT66
 *    (MASQUERADE), direct access from ext to web's IPv6 (routed, no NAT): each flow has its uplink and bridge legs joined
 *    through conntrack, each leg's tuple equal to `conntrack -L -f ipv6`'s entry, names and an
 *    explanation; the ip6 DOCKER-USER drop reported with its reason and rule.
 *  - serve over IPv6: `journey serve --listen [fd00:10::26]:0` (the lab host's IPv6 address, with a
 *    token) answers /healthz to a client in the external namespace over IPv6, and that client's
 *    WebSocket receives the published-port flow over IPv6 with its uplink and bridge legs, equal to
 *    `conntrack -L -f ipv6`'s entry.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { labExec, runProbe } from '../../lab/driver.js';
import { parseConntrackText } from '../../src/conntrack/parse.js';
import type { DropEvent, FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import type { Tuple } from '../../src/model/tuple.js';
import { startPipeline } from '../../src/pipeline/pipeline.js';
import { run } from '../../src/host/exec.js';
import { openKernelEvents, type KernelDrop } from '../../src/native/index.js';
import { joinDropRule } from '../../src/native/join.js';
import { compileRuleset, explainPacket, loadHostContext, loadLiveRuleset } from '../../src/explain/explain.js';
import { labTestId, useLab } from './lab-helpers.js';

const ID = labTestId('v6w');
const lab = useLab(ID, 'ipv6');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A TCP connect over IPv6 with a hop-by-hop and a destination-options header (PadN, 8 bytes each). */
const SENDER = [
  'import socket,sys',
  's=socket.socket(socket.AF_INET6,socket.SOCK_STREAM)',
  'opt=bytes([0,0,1,4,0,0,0,0])',
  's.setsockopt(socket.IPPROTO_IPV6,54,opt)', // IPV6_HOPOPTS
  's.setsockopt(socket.IPPROTO_IPV6,59,opt)', // IPV6_DSTOPTS
  's.settimeout(1.5)',
  'try:',
  '  s.connect((sys.argv[1],int(sys.argv[2])))',
  '  print("connected")',
  'except Exception as e:',
  '  print("refused:",type(e).__name__)',
].join('\n');

describe('IPv6 extension headers in the eBPF programs', () => {
  it('a SYN with hop-by-hop + destination options dropped by the ip6 DOCKER-USER rule: reason, TCP tuple, rule', async () => {
    const v6 = lab.v6;
    if (!v6) throw new Error('the ipv6 scenario has no IPv6 addresses');
    const web = lab.containers.find((c) => c.name === 'web');
    if (!web?.ip6) throw new Error(`web has no IPv6 address: ${JSON.stringify(lab.containers)}`);
    const host = lab.netns.host;
    const k = await openKernelEvents({ netns: host, filter: { addr: v6.ext2Addr }, hooks: 'none' });
    const drops: KernelDrop[] = [];
    k.onDrop((d) => drops.push(...d));
    // the packet on the wire: tcpdump on ext2's side shows the extension headers
    const dump = run(['timeout', '20', 'tcpdump', '-ni', 'any', '-c', '1', '-vv', 'ip6', 'and', 'src', v6.ext2Addr, 'and', 'dst', v6.hostAddr], {
      netns: lab.netns.ext2,
      allowFailure: true,
    });
    await sleep(1500);
    let found: KernelDrop | undefined;
    let sent = 0;
    try {
      // poll: each attempt sends one more real SYN (with its retransmissions), up to 6 attempts
      for (let i = 0; i < 6 && !found; i++) {
        const r = await labExec(ID, 'ext2', ['python3', '-c', SENDER, v6.hostAddr, '8000']);
        sent++;
        expect(r.stdout).toMatch(/refused: (timeout|TimeoutError)/);
        for (let w = 0; w < 20 && !found; w++) {
          found = drops.find((d) => d.reason === 'NETFILTER_DROP' && d.tuple?.src === v6.ext2Addr);
          if (!found) await sleep(100);
        }
      }
      expect(k.lost).toEqual([]);
      expect(found, JSON.stringify(drops.slice(0, 4))).toBeDefined();
      if (!found) return;
      // the transport header found behind two extension headers: TCP, ports, after DNAT
      expect(found.tuple).toMatchObject({ proto: 'tcp', src: v6.ext2Addr, dst: web.ip6, dport: 80 });
      expect(found.tuple?.sport).toBeGreaterThan(1023);
      expect(found.ct?.orig).toMatchObject({ dst: v6.hostAddr, dport: 8000 });
      const compiled = compileRuleset(await loadLiveRuleset({ netns: host }), await loadHostContext({ netns: host }));
      const joined = joinDropRule(found, (spec) => explainPacket(compiled, spec));
      expect(joined.rule).toMatchObject({ table: 'filter', chain: 'DOCKER-USER' });
      expect(joined.rule?.rule).toMatch(new RegExp(`-s ${v6.ext2Addr}/128 .*-j DROP`));
      const wire = (await dump).stdout;
      expect(wire, wire).toMatch(/HBH/);
      expect(wire, wire).toMatch(/DSTOPT/);
      console.log(
        `ipv6 ext headers: ${sent} connect(s) with HBH+DSTOPT, drop ${found.reason} tuple ${found.tuple?.proto} ` +
          `[${found.tuple?.src}]:${found.tuple?.sport} > [${found.tuple?.dst}]:${found.tuple?.dport}, rule ${joined.rule?.rule}`,
      );
    } finally {
      await k.stop();
    }
  }, 120_000);
});

const same = (a: Tuple | undefined, b: Tuple | undefined): boolean =>
  !!a && !!b && a.proto === b.proto && a.src === b.src && a.dst === b.dst && a.sport === b.sport && a.dport === b.dport;
const rev = (t: Tuple): Tuple => ({ ...t, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport });

describe('watch on IPv6 flows', () => {
  it('published port, NAT66 outbound, direct access: both legs through conntrack, tuples equal conntrack; the DOCKER-USER drop with its rule', async () => {
    const v6 = lab.v6;
    const web = lab.containers.find((c) => c.name === 'web');
    const client = lab.containers.find((c) => c.name === 'client');
    if (!v6 || !web?.ip6 || !client?.ip6) throw new Error('the ipv6 scenario has no IPv6 addresses');
    const p = await startPipeline({ netns: lab.netns.host, dockerHost: `unix://${lab.dockerHost!}` });
    const evs: JourneyEvent[] = [];
    p.on('event', (e) => evs.push(e));
    const flows = (): FlowInfo[] => evs.filter((e): e is FlowEvent => e.type === 'flow.start' || e.type === 'flow.update').map((e) => e.flow);
    const latest = (pred: (f: FlowInfo) => boolean): FlowInfo | undefined => flows().filter(pred).at(-1);
    const both = (f: FlowInfo | undefined): boolean =>
      !!f && ['eth0', 'docker0'].every((i) => f.legs.some((l) => l.iface === i && l.direction === 'orig'));
    const until = async (cond: () => boolean): Promise<void> => {
      const end = Date.now() + 15_000;
      while (Date.now() < end && !cond()) await sleep(200);
    };
    try {
      await sleep(1500);
      const cases = [
        { probe: 'ext-to-published6', pred: (f: FlowInfo) => f.orig.src === v6.extAddr && f.orig.dport === 8000, bridged: true },
        { probe: 'container-to-outside6', pred: (f: FlowInfo) => f.orig.src === client.ip6 && f.orig.dst === v6.outsideAddr, bridged: true },
        { probe: 'direct-access6', pred: (f: FlowInfo) => f.orig.src === v6.extAddr && f.orig.dst === web.ip6 && f.orig.dport === 80, bridged: true },
      ];
      let compared = 0;
      for (const c of cases) {
        await runProbe(ID, c.probe);
        await until(() => (c.bridged ? both(latest(c.pred)) : (latest(c.pred)?.legs.length ?? 0) > 0));
        const f = latest(c.pred);
        expect(f, `${c.probe}: no flow in ${JSON.stringify(flows().map((x) => x.orig))}`).toBeDefined();
        if (!f) continue;
        if (c.bridged) expect(both(f), `${c.probe}: legs ${JSON.stringify(f.legs)}`).toBe(true);
        else
          expect(
            f.legs.every((l) => l.iface === 'docker0'),
            `${c.probe}: legs ${JSON.stringify(f.legs)}`,
          ).toBe(true);
        // conntrack's own entry for this connection (IPv6 table)
        const ct = await run(['conntrack', '-L', '-f', 'ipv6', '-o', 'extended,id'], { netns: lab.netns.host, allowFailure: true });
        const entry = parseConntrackText(ct.stdout, 'conntrack-tool')
          .lines.map((l) => l.entry)
          .find((e) => same(e.orig, f.orig));
        expect(entry, `${c.probe}: no conntrack entry for ${JSON.stringify(f.orig)}\n${ct.stdout}`).toBeDefined();
        if (!entry) continue;
        expect(f.reply).toMatchObject({ src: entry.reply.src, dst: entry.reply.dst, sport: entry.reply.sport, dport: entry.reply.dport });
        // every leg's tuple is the original tuple (as it left the sender) or the reply tuple reversed
        // (as it reached the receiver), in its direction
        for (const l of f.legs) {
          const ok =
            l.direction === 'orig'
              ? same(l.tuple, entry.orig) || same(l.tuple, rev(entry.reply))
              : same(l.tuple, entry.reply) || same(l.tuple, rev(entry.orig));
          expect(ok, `${c.probe}: leg ${l.iface}/${l.direction} ${JSON.stringify(l.tuple)} vs conntrack ${JSON.stringify(entry)}`).toBe(true);
          compared++;
        }
        expect(
          f.names.some((n) => n.container === (c.probe === 'container-to-outside6' ? 'client' : 'web')),
          JSON.stringify(f.names),
        ).toBe(true);
        expect(f.explanation?.verdict, `${c.probe}: explanation`).toBe('accept');
        expect(f.explanation).not.toBeNull();
        if (c.probe === 'container-to-outside6')
          expect(f.legs.find((l) => l.iface === 'eth0' && l.direction === 'orig')?.tuple.src, 'NAT66 leg').toBe(v6.hostAddr);
      }
      // the ip6 DOCKER-USER drop: reason and rule in watch's drop event
      await runProbe(ID, 'ext2-to-published6');
      const dropOf = (): DropEvent | undefined =>
        evs.find((e): e is DropEvent => e.type === 'drop' && e.drop.tuple?.src === v6.ext2Addr && e.drop.reason === 'NETFILTER_DROP');
      await until(() => dropOf()?.drop.rule != null);
      const d = dropOf();
      expect(d, JSON.stringify(evs.filter((e) => e.type === 'drop').slice(0, 4))).toBeDefined();
      expect(d?.drop.rule).toMatchObject({ table: 'filter', chain: 'DOCKER-USER' });
      expect(d?.drop.rule?.rule).toMatch(/-s fd00:10::6\/128 -j DROP/);
      // NDP (neighbour/router solicitations and adverts, ICMPv6 133-137) is link-local plumbing:
      // counted, never a flow, as ARP is for IPv4
      const ndp = flows().filter((f) => f.orig.proto === 'icmpv6' && (f.orig.icmpType ?? 0) >= 133 && (f.orig.icmpType ?? 0) <= 137);
      expect(ndp, JSON.stringify(ndp.map((f) => f.orig))).toEqual([]);
      expect(flows().filter((f) => f.orig.dst.startsWith('ff02:'))).toEqual([]);
      console.log(
        `watch ipv6: ${cases.length} flows, ${compared} legs equal to conntrack -L -f ipv6; drop ${d?.drop.reason} rule ${d?.drop.rule?.rule}`,
      );
    } finally {
      await p.stop();
    }
  }, 120_000);
});

describe('serve over IPv6', () => {
  it("on the host's IPv6 address: /healthz and a WebSocket client in ext receive the published-port flow with both legs", async () => {
    const v6 = lab.v6;
    const web = lab.containers.find((c) => c.name === 'web');
    if (!v6 || !web?.ip6) throw new Error('the ipv6 scenario has no IPv6 addresses');
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const token = 'lab-v6w-serve-token-0d9e8f7a';
    const inNs = (ns: string, argv: string[]): string[] => ['nsenter', `--net=/var/run/netns/${ns}`, '--', ...argv];
    const serveArgv = inNs(lab.netns.host, [
      process.execPath,
      join(root, 'dist/src/cli/main.js'),
      'serve',
      '--listen',
      `[${v6.hostAddr}]:0`,
      '--netns',
      lab.netns.host,
      '--docker-host',
      `unix://${lab.dockerHost}`,
      '--duration',
      '100',
    ]);
    const serve = spawn(serveArgv[0] as string, serveArgv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, JOURNEY_TOKEN: token },
    });
    const serveErr: string[] = [];
    createInterface({ input: serve.stderr }).on('line', (l) => serveErr.push(l));
    const dir = mkdtempSync(join(tmpdir(), 'journey-v6w-'));
    let client: ReturnType<typeof spawn> | undefined;
    const lines: string[] = [];
    const until = async (cond: () => boolean, what: string, ms = 30_000): Promise<void> => {
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}\nserve: ${serveErr.join('\n')}\nclient: ${lines.slice(-5).join('\n')}`);
        await sleep(200);
      }
    };
    try {
      await until(() => serveErr.some((l) => /listening on/.test(l)) && serveErr.some((l) => /capturing on/.test(l)), 'serve to listen and capture');
      const m = /listening on http:\/\/\[([0-9a-f:]+)\]:(\d+)\//.exec(serveErr.join('\n'));
      expect(m?.[1]).toBe(v6.hostAddr);
      const port = Number(m?.[2]);
      // a client in the external namespace, over IPv6: /healthz, then the stream (one JSON line a message)
      const script = join(dir, 'client.mjs');
      writeFileSync(
        script,
        `
import WebSocket from ${JSON.stringify(join(root, 'node_modules/ws/wrapper.mjs'))};
import http from 'node:http';
const base = 'http://[${v6.hostAddr}]:${port}';
const healthz = await new Promise((resolve) => http.get(base + '/healthz', (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => resolve({ status: res.statusCode, body: b.trim() })); }).on('error', (e) => resolve({ error: e.message })));
console.log(JSON.stringify({ type: 'healthz', ...healthz }));
const ws = new WebSocket('ws://[${v6.hostAddr}]:${port}/events', { headers: { Authorization: 'Bearer ${token}' } });
ws.on('open', () => {
  console.log(JSON.stringify({ type: 'open', local: ws._socket.localAddress, remote: ws._socket.remoteAddress }));
  ws.send(JSON.stringify({ type: 'subscribe', filter: { port: 8000 } }));
});
ws.on('message', (d) => console.log(String(d)));
ws.on('error', (e) => console.log(JSON.stringify({ type: 'error', message: e.message })));
`,
      );
      const clientArgv = inNs(lab.netns.ext, [process.execPath, script]);
      client = spawn(clientArgv[0] as string, clientArgv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
      createInterface({ input: client.stdout as NodeJS.ReadableStream }).on('line', (l) => lines.push(l));
      const msgs = (): Record<string, unknown>[] => lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      await until(() => msgs().some((x) => x['type'] === 'subscribed'), 'the client to subscribe');
      expect(msgs().find((x) => x['type'] === 'healthz')).toMatchObject({ status: 200 });
      expect(msgs().find((x) => x['type'] === 'open')).toMatchObject({ local: v6.extAddr, remote: v6.hostAddr });
      await runProbe(ID, 'ext-to-published6');
      const flow = (): FlowInfo | undefined =>
        msgs()
          .filter((x) => String(x['type']).startsWith('flow.'))
          .map((x) => x['flow'] as FlowInfo)
          .filter((f) => f.orig.src === v6.extAddr && f.orig.dst === v6.hostAddr && f.orig.dport === 8000)
          .at(-1);
      const bothLegs = (f: FlowInfo | undefined): boolean =>
        !!f && ['eth0', 'docker0'].every((i) => f.legs.some((l) => l.iface === i && l.direction === 'orig'));
      await until(() => bothLegs(flow()), 'the published-port flow with both legs over the WebSocket');
      const f = flow() as FlowInfo;
      const ct = await run(['conntrack', '-L', '-f', 'ipv6', '-o', 'extended,id'], { netns: lab.netns.host, allowFailure: true });
      const entry = parseConntrackText(ct.stdout, 'conntrack-tool')
        .lines.map((l) => l.entry)
        .find((e) => same(e.orig, f.orig));
      expect(entry, `no conntrack -f ipv6 entry for ${JSON.stringify(f.orig)}\n${ct.stdout}`).toBeDefined();
      if (!entry) return;
      expect(same(f.reply ?? undefined, entry.reply)).toBe(true);
      expect(f.nat.dnat).toEqual({ from: `[${v6.hostAddr}]:8000`, to: `[${web.ip6}]:80` });
      let legs = 0;
      for (const l of f.legs) {
        const ok =
          l.direction === 'orig'
            ? same(l.tuple, entry.orig) || same(l.tuple, rev(entry.reply))
            : same(l.tuple, entry.reply) || same(l.tuple, rev(entry.orig));
        expect(ok, `leg ${l.iface}/${l.direction} ${JSON.stringify(l.tuple)} vs conntrack ${JSON.stringify(entry)}`).toBe(true);
        legs++;
      }
      console.log(
        `serve over IPv6: /healthz and the stream on [${v6.hostAddr}]:${port} from ext; the published-port flow's ${legs} legs equal conntrack -L -f ipv6`,
      );
    } finally {
      client?.kill('SIGKILL');
      serve.kill('SIGINT');
      const killer = setTimeout(() => serve.kill('SIGKILL'), 10_000);
      if (serve.exitCode === null && serve.signalCode === null) await new Promise((r) => serve.once('exit', r));
      clearTimeout(killer);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
