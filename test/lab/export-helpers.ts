/**
 * Real collectors for the export tests: Debian's nfcapd on loopback (its `-R` repeater hands a
 * copy of every datagram to the test), nfdump reading the files back, nats-server with
 * JetStream; and the comparison of nfdump's view of a flow with journey's own --json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/host/exec.js';
import type { FlowEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A free port on loopback (TCP or UDP), as the kernel picks it. */
export async function freePort(kind: 'tcp' | 'udp' = 'udp'): Promise<number> {
  if (kind === 'udp') {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const p = s.address().port;
    s.close();
    return p;
  }
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const p = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return p;
}

function need(tool: string): void {
  for (const d of ['/usr/bin', '/usr/sbin', '/bin', '/sbin']) if (existsSync(join(d, tool))) return;
  throw new Error(`${tool} is missing: run scripts/setup as root (apt-get install -y nfdump nats-server)`);
}

export interface Nfcapd {
  readonly port: number;
  readonly dir: string;
  /** Every datagram nfcapd received, as its repeater passed it on. */
  readonly datagrams: Buffer[];
  /** Stops nfcapd (the file is complete then) and returns nfdump's JSON records. */
  stop(): Promise<NfRecord[]>;
  /** `nfdump -I`: the file's statistics, sequence failures included. */
  info(): Promise<string>;
}

/** nfcapd on 127.0.0.1:PORT writing into a temp dir, repeating to a socket of the test. */
export async function startNfcapd(): Promise<Nfcapd> {
  need('nfcapd');
  const dir = mkdtempSync(join(tmpdir(), 'journey-nfcapd-'));
  const port = await freePort('udp');
  const rep = createSocket('udp4');
  const datagrams: Buffer[] = [];
  rep.on('message', (m) => datagrams.push(Buffer.from(m)));
  await new Promise<void>((r) => rep.bind(0, '127.0.0.1', () => r()));
  const child: ChildProcess = spawn(
    'nfcapd',
    ['-b', '127.0.0.1', '-p', String(port), '-w', dir, '-t', '3600', '-R', `127.0.0.1/${rep.address().port}`],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  child.stdout?.on('data', (d) => (log += String(d)));
  child.stderr?.on('data', (d) => (log += String(d)));
  for (let i = 0; i < 50 && !/Startup/.test(log); i++) await sleep(100);
  if (!/Startup/.test(log)) throw new Error(`nfcapd did not start: ${log}`);
  let stopped = false;
  const file = (): string => {
    const f = readdirSync(dir).filter((n) => n.startsWith('nfcapd.') && !n.includes('current'));
    if (f.length !== 1) throw new Error(`nfcapd wrote ${f.join(', ') || 'no file'} in ${dir}: ${log}`);
    return join(dir, f[0] as string);
  };
  return {
    port,
    dir,
    datagrams,
    async stop() {
      if (!stopped) {
        stopped = true;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGINT');
        await exited;
        rep.close();
      }
      const r = await run(['nfdump', '-r', file(), '-o', 'json'], { env: { ...process.env, TZ: 'UTC' } });
      const text = r.stdout.trim();
      return text === '' ? [] : (JSON.parse(text) as NfRecord[]);
    },
    async info() {
      return (await run(['nfdump', '-r', file(), '-I'])).stdout;
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** What nfdump -o json prints for a flow (the fields compared). */
export interface NfRecord {
  readonly first: string;
  readonly last: string;
  readonly proto: number;
  readonly src4_addr?: string;
  readonly dst4_addr?: string;
  readonly src6_addr?: string;
  readonly dst6_addr?: string;
  readonly src_port?: number;
  readonly dst_port?: number;
  readonly icmp_type?: number;
  readonly icmp_code?: number;
  readonly in_packets: number;
  readonly in_bytes: number;
  readonly out_packets?: number;
  readonly out_bytes?: number;
  readonly src4_xlt_ip?: string;
  readonly dst4_xlt_ip?: string;
  readonly src_xlt_port?: string;
  readonly dst_xlt_port?: string;
  readonly nat_event_id?: string;
}

/** One flow as both sides can say it: tuple, post-NAT tuple, counters each way, times. */
export interface FlowView {
  readonly key: string;
  readonly post: string | null;
  readonly orig: string;
  readonly reply: string;
  readonly firstMs: number;
  readonly lastMs: number;
}

const tupleText = (proto: number, src: string, sport: number, dst: string, dport: number) => `${proto} ${src}:${sport}>${dst}:${dport}`;

/** nfdump prints "2026-11-23T04:26:56.199" in the TZ it runs in (UTC here). */
const nfTime = (s: string): number => Date.parse(`${s}Z`);

/** nfdump's records of one flow summed (several when active timeouts split it). */
export function nfViews(records: readonly NfRecord[]): Map<string, FlowView> {
  const m = new Map<string, FlowView>();
  for (const r of records) {
    const icmp = r.proto === 1 || r.proto === 58;
    const src = r.src4_addr ?? r.src6_addr ?? '';
    const dst = r.dst4_addr ?? r.dst6_addr ?? '';
    const key = icmp
      ? tupleText(r.proto, src, 0, dst, ((r.icmp_type ?? 0) << 8) | (r.icmp_code ?? 0))
      : tupleText(r.proto, src, r.src_port ?? 0, dst, r.dst_port ?? 0);
    const post =
      r.src4_xlt_ip !== undefined
        ? tupleText(r.proto, r.src4_xlt_ip, Number(r.src_xlt_port ?? 0), r.dst4_xlt_ip ?? '', Number(r.dst_xlt_port ?? 0))
        : null;
    const prev = m.get(key);
    const sum = (a: string | undefined, p: number, b: number) => {
      const [x, y] = (a ?? '0/0').split('/').map(Number) as [number, number];
      return `${x + p}/${y + b}`;
    };
    m.set(key, {
      key,
      post,
      orig: sum(prev?.orig, r.in_packets, r.in_bytes),
      reply: sum(prev?.reply, r.out_packets ?? 0, r.out_bytes ?? 0),
      firstMs: Math.min(prev?.firstMs ?? Number.POSITIVE_INFINITY, nfTime(r.first)),
      lastMs: Math.max(prev?.lastMs ?? 0, nfTime(r.last)),
    });
  }
  return m;
}

/** journey's view of a flow from its --json flow.end event (counters: first interface each way, as watch prints). */
export function journeyView(f: FlowInfo): FlowView {
  const o = f.orig;
  const icmp = o.proto === 'icmp' || o.proto === 'icmpv6';
  const key = icmp
    ? tupleText(o.protoNum, o.src, 0, o.dst, ((o.icmpType ?? 0) << 8) | (o.icmpCode ?? 0))
    : tupleText(o.protoNum, o.src, o.sport, o.dst, o.dport);
  const nat = f.reply !== null && (f.nat.dnat !== null || f.nat.snat !== null) && o.family === 4;
  const post = nat && f.reply ? tupleText(o.protoNum, f.reply.dst, icmp ? 0 : f.reply.dport, f.reply.src, icmp ? 0 : f.reply.sport) : null;
  const first = (dir: 'orig' | 'reply') => {
    const l = f.legs.filter((x) => x.direction === dir).sort((a, b) => a.firstUs - b.firstUs)[0];
    return `${l?.packets ?? 0}/${l?.bytes ?? 0}`;
  };
  const firsts = f.legs.map((l) => l.firstUs);
  const lasts = f.legs.map((l) => l.lastUs);
  return {
    key,
    post,
    orig: first('orig'),
    reply: first('reply'),
    firstMs: firsts.length ? Math.floor(Math.min(...firsts) / 1000) : Number.NaN,
    lastMs: lasts.length ? Math.floor(Math.max(...lasts) / 1000) : Number.NaN,
  };
}

export function endedFlows(events: readonly JourneyEvent[]): FlowInfo[] {
  return events.filter((e): e is FlowEvent => e.type === 'flow.end').map((e) => e.flow);
}

/** Differences between journey's flows and nfdump's, one line each (empty: equal). */
export function compareViews(journey: readonly FlowInfo[], nf: Map<string, FlowView>): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const f of journey) {
    if (f.legs.length === 0) continue; // no packet, no time: compared by tuple only below
    const j = journeyView(f);
    seen.add(j.key);
    const n = nf.get(j.key);
    if (!n) {
      problems.push(`${j.key}: not in nfdump's records`);
      continue;
    }
    for (const k of ['post', 'orig', 'reply', 'firstMs', 'lastMs'] as const)
      if (j[k] !== n[k]) problems.push(`${j.key}: ${k} journey ${String(j[k])} nfdump ${String(n[k])}`);
  }
  for (const k of nf.keys()) if (!seen.has(k) && !journey.some((f) => journeyView(f).key === k)) problems.push(`${k}: in nfdump only`);
  return problems;
}

/** IPFIX messages of a datagram or TCP stream: header fields and the set ids with their record counts. */
export interface WireMessage {
  readonly length: number;
  readonly exportTime: number;
  readonly sequence: number;
  readonly domain: number;
  readonly sets: readonly { readonly id: number; readonly length: number }[];
}
export function parseMessages(buf: Buffer): { messages: WireMessage[]; rest: Buffer } {
  const messages: WireMessage[] = [];
  let o = 0;
  while (buf.length - o >= 16) {
    const version = buf.readUInt16BE(o);
    const length = buf.readUInt16BE(o + 2);
    if (version !== 10 || length < 16) throw new Error(`not IPFIX at ${o}: version ${version} length ${length}`);
    if (buf.length - o < length) break;
    const sets: { id: number; length: number }[] = [];
    for (let s = o + 16; s + 4 <= o + length; ) {
      const id = buf.readUInt16BE(s);
      const len = buf.readUInt16BE(s + 2);
      if (len < 4) throw new Error(`set length ${len}`);
      sets.push({ id, length: len });
      s += len;
    }
    messages.push({ length, exportTime: buf.readUInt32BE(o + 4), sequence: buf.readUInt32BE(o + 8), domain: buf.readUInt32BE(o + 12), sets });
    o += length;
  }
  return { messages, rest: buf.subarray(o) };
}

/** nats-server with JetStream on loopback, its store in a temp dir; restartable on the same port and store. */
export interface NatsServer {
  readonly port: number;
  readonly url: string;
  readonly storeDir: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startNatsServer(opts: { readonly args?: readonly string[] } = {}): Promise<NatsServer> {
  need('nats-server');
  const storeDir = mkdtempSync(join(tmpdir(), 'journey-nats-'));
  const port = await freePort('tcp');
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    const c = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir, ...(opts.args ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    let log = '';
    c.stdout?.on('data', (d) => (log += String(d)));
    c.stderr?.on('data', (d) => (log += String(d)));
    for (let i = 0; i < 100 && !/Server is ready/.test(log); i++) await sleep(100);
    if (!/Server is ready/.test(log)) throw new Error(`nats-server did not start: ${log}`);
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child;
    if (c === null || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
    child = null;
  };
  await start();
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    stop,
    start,
    async close() {
      await stop();
      removeDir(storeDir);
    },
  };
}

/** The built CLI as a user runs it; resolves once `ready` matches a stdout/stderr line. */
export interface Journey {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<number>;
  stop(): Promise<number>;
}
export async function runJourney(cli: string, args: string[], ready: RegExp | null, env: NodeJS.ProcessEnv = {}): Promise<Journey> {
  const { createInterface } = await import('node:readline');
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<number>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1))));
  const lines = (input: NodeJS.ReadableStream, into: string[], onLine: (l: string) => void) =>
    createInterface({ input }).on('line', (l) => {
      into.push(l);
      onLine(l);
    });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`journey ${args.join(' ')} not ready in 60 s:\n${stderr.join('\n')}`)), 60_000);
    const check = (l: string) => {
      if (ready === null || ready.test(l)) {
        clearTimeout(t);
        resolve();
      }
    };
    lines(child.stdout as NodeJS.ReadableStream, stdout, check);
    lines(child.stderr as NodeJS.ReadableStream, stderr, check);
    if (ready === null) {
      clearTimeout(t);
      resolve();
    }
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`journey ${args.join(' ')} exited ${code}:\n${stderr.join('\n')}`));
    });
  });
  return {
    child,
    stdout,
    stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT');
        const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
        const code = await exited;
        clearTimeout(t);
        return code;
      }
      return exited;
    },
  };
}

/** Data records per message, read with the templates the same stream announced. */
export function countRecords(messages: readonly Buffer[]): { templateSets: number[]; records: number[]; sequences: number[] } {
  const templates = new Map<number, number[]>(); // id -> field lengths (65535: variable)
  const out = { templateSets: [] as number[], records: [] as number[], sequences: [] as number[] };
  for (const m of messages) {
    const length = m.readUInt16BE(2);
    out.sequences.push(m.readUInt32BE(8));
    let nT = 0;
    let nR = 0;
    for (let s = 16; s + 4 <= length; ) {
      const id = m.readUInt16BE(s);
      const len = m.readUInt16BE(s + 2);
      const end = s + len;
      let o = s + 4;
      if (id === 2) {
        nT++;
        while (o + 4 <= end) {
          const tid = m.readUInt16BE(o);
          const count = m.readUInt16BE(o + 2);
          o += 4;
          const lens: number[] = [];
          for (let i = 0; i < count; i++) {
            const ie = m.readUInt16BE(o);
            lens.push(m.readUInt16BE(o + 2));
            o += ie & 0x8000 ? 8 : 4;
          }
          templates.set(tid, lens);
        }
      } else if (id >= 256) {
        const lens = templates.get(id);
        if (!lens) throw new Error(`data set ${id} before its template`);
        while (o < end) {
          for (const l of lens) {
            if (l !== 0xffff) o += l;
            else {
              const b = m.readUInt8(o);
              o += b < 255 ? 1 + b : 3 + m.readUInt16BE(o + 1);
            }
          }
          nR++;
        }
      }
      s = end;
    }
    out.templateSets.push(nT);
    out.records.push(nR);
  }
  return out;
}
