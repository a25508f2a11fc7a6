/**
 * Evidence collectors that run in the host's network namespace while the probes run, bounded in
 * time and volume:
 *   - conntrack events (`conntrack -E -o extended,id,timestamp`, parsed by src/conntrack/parse.ts);
 *   - packets (`tcpdump -i any -nn -l -tt` with a filter on the probes' source ports and the
 *     published container ports), one text line per packet with its interface and direction;
 *   - the kernel's trace (`nft -a monitor trace`) of chosen probes, through a temporary table that
 *     sets `meta nftrace` for the probe's source port only (removed when done).
 * Each collector is a child process started here and stopped by its own handle (never by name).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { inNetns, run } from '../host/exec.js';
import type { ConntrackEntry } from '../model/conntrack.js';
import { parseConntrackLine } from '../conntrack/parse.js';

export interface Collector<T> {
  readonly items: T[];
  /** Lines that could not be parsed. */
  skipped: number;
  /** Stderr / start-up errors, for notices. */
  readonly errors: string[];
  stop(): Promise<void>;
}

interface Started {
  child: ChildProcess;
  closed: Promise<void>;
}

function startLines(argv: readonly string[], netns: string | undefined, onLine: (line: string) => void, onErr: (line: string) => void): Started {
  const full = inNetns(argv, netns);
  const child = spawn(full[0] ?? 'false', full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    if (buf.length > 1 << 20) buf = '';
  });
  let ebuf = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    ebuf += d;
    for (let nl = ebuf.indexOf('\n'); nl >= 0; nl = ebuf.indexOf('\n')) {
      onErr(ebuf.slice(0, nl));
      ebuf = ebuf.slice(nl + 1);
    }
  });
  child.on('error', (e) => onErr(`${argv[0] ?? ''}: ${e.message}`));
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return { child, closed };
}

async function stopChild(s: Started, graceMs = 300): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGINT');
  const t = setTimeout(() => s.child.kill('SIGKILL'), graceMs);
  await s.closed;
  clearTimeout(t);
}

export interface TimedEntry {
  readonly entry: ConntrackEntry;
  readonly event: string | null;
  /** Kernel timestamp when printed, else arrival time (ms since the epoch). */
  readonly timeMs: number;
}

/** Conntrack events in `netns` until stopped (at most `max` kept). */
export async function watchConntrack(netns: string | undefined, max = 20_000): Promise<Collector<TimedEntry>> {
  const items: TimedEntry[] = [];
  const errors: string[] = [];
  const c: Collector<TimedEntry> = { items, skipped: 0, errors, stop: async () => undefined };
  const s = startLines(
    ['conntrack', '-E', '-o', 'extended,id,timestamp'],
    netns,
    (line) => {
      if (line.trim() === '') return;
      const p = parseConntrackLine(line, 'conntrack-tool');
      if (p === null) {
        c.skipped++;
        return;
      }
      if (items.length < max) items.push({ entry: p.entry, event: p.event, timeMs: p.timeMs ?? Date.now() });
    },
    (l) => {
      if (!/flow events have been shown/.test(l) && l.trim() !== '') errors.push(l.trim());
    },
  );
  // conntrack -E prints nothing when ready: prove it is subscribed with a marker of our own, one
  // UDP datagram on the namespace's loopback (127.0.0.1 -> 127.0.0.1:9, discard), seen as an event.
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  const markers = new Set<number>();
  while (Date.now() - t0 < 3_000) {
    const marker = 20_000 + Math.floor(Math.random() * 10_000);
    markers.add(marker);
    const send = `const s=require('node:dgram').createSocket('udp4');s.on('error',()=>process.exit(0));s.bind(${marker},'127.0.0.1',()=>s.send('journey',9,'127.0.0.1',()=>s.close()))`;
    await run([process.execPath, '-e', send], { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 3_000 }).catch(
      () => undefined,
    );
    let ready = false;
    for (let i = 0; i < 10 && !ready; i++) {
      ready = items.some((x) => x.entry.orig.proto === 'udp' && markers.has(x.entry.orig.sport));
      if (!ready) await new Promise((r) => setTimeout(r, 20));
    }
    if (ready) break;
  }
  c.stop = () => stopChild(s);
  return c;
}

export interface PacketLine {
  readonly timeMs: number;
  readonly iface: string;
  /** In / Out / P(romisc)... as tcpdump -i any prints it. */
  readonly dir: string;
  readonly src: string;
  readonly sport: number;
  readonly dst: string;
  readonly dport: number;
  readonly flags: string;
  readonly text: string;
}

/** "1795407369.445107 veth1a2b In  IP 172.17.0.3.41000 > 10.0.10.26.8000: Flags [S], seq ..." */
export function parseTcpdumpLine(line: string): PacketLine | null {
  const m =
    /^(\d+\.\d+)\s+(\S+)\s+(In|Out|P|M|B|\S+)\s+IP6?\s+([0-9a-fA-F:.]+)\.(\d+)\s+>\s+([0-9a-fA-F:.]+)\.(\d+):\s+(?:Flags\s+\[([^\]]*)\])?/.exec(
      line.trim(),
    );
  if (!m) return null;
  return {
    timeMs: Math.round(Number(m[1]) * 1000),
    iface: m[2] ?? '',
    dir: m[3] ?? '',
    src: m[4] ?? '',
    sport: Number(m[5]),
    dst: m[6] ?? '',
    dport: Number(m[7]),
    flags: m[8] ?? '',
    text: line.trim().replace(/^\d+\.\d+\s+/, ''),
  };
}

/** Packets in `netns` matching `filter`, until stopped (at most `max`). Resolves once tcpdump listens. */
export async function watchPackets(netns: string | undefined, filter: string, max = 5_000): Promise<Collector<PacketLine>> {
  const items: PacketLine[] = [];
  const errors: string[] = [];
  const c: Collector<PacketLine> = { items, skipped: 0, errors, stop: async () => undefined };
  let ready: () => void = () => undefined;
  const listening = new Promise<void>((r) => (ready = r));
  const s = startLines(
    ['tcpdump', '-i', 'any', '-nn', '-l', '-tt', '-Q', 'inout', '-c', String(max), filter],
    netns,
    (line) => {
      const p = parseTcpdumpLine(line);
      if (p) items.push(p);
      else if (line.trim() !== '') c.skipped++;
    },
    (l) => {
      if (/listening on/.test(l)) ready();
      else if (!/packets? (captured|received|dropped)|data link type|verbose output suppressed/.test(l) && l.trim() !== '') errors.push(l.trim());
    },
  );
  s.closed.then(ready, ready);
  await Promise.race([listening, new Promise((r) => setTimeout(r, 3_000))]);
  c.stop = async () => {
    await new Promise((r) => setTimeout(r, 50)); // let the last packets be printed
    await stopChild(s);
  };
  return c;
}

// ---------------------------------------------------------------- kernel trace

export interface KernelTraceRun {
  readonly text: string;
  readonly rulesetJson: string;
  readonly table: string;
}

/**
 * Traces the packets of one probe (TCP, source or destination port `port`) with `nft monitor trace`:
 * adds `table inet <table>` with chains at priority -500 on prerouting and output that set nftrace
 * for those packets, runs `action`, and removes the table again (also on error).
 */
export async function traceProbe<T>(
  netns: string | undefined,
  port: number,
  action: () => Promise<T>,
  table = `jl_verify_${process.pid}`,
  proto: 'tcp' | 'udp' = 'tcp',
  /** Also trace the packets to (and from) this address:port — the docker-proxy's own connection. */
  also?: { readonly ip: string; readonly port: number },
  /** How long `nft monitor trace` gets to start before the action (longer on a loaded host). */
  startMs = 200,
): Promise<{ result: T; trace: KernelTraceRun }> {
  const ns = netns !== undefined ? { netns } : {};
  let match = `${proto} sport ${port} meta nftrace set 1\n ${proto} dport ${port} meta nftrace set 1`;
  if (also !== undefined) {
    const ipk = also.ip.includes(':') ? 'ip6' : 'ip';
    match += `\n ${ipk} daddr ${also.ip} ${proto} dport ${also.port} meta nftrace set 1\n ${ipk} saddr ${also.ip} ${proto} sport ${also.port} meta nftrace set 1`;
  }
  // inet: one table traces IPv4 and IPv6 alike
  const def = `table inet ${table} {\n chain pre {\n type filter hook prerouting priority -500; policy accept;\n ${match}\n }\n chain out {\n type filter hook output priority -500; policy accept;\n ${match}\n }\n}\n`;
  await run(['nft', '-f', '-'], { ...ns, input: def, timeoutMs: 10_000 });
  let text = '';
  const s = startLines(
    ['nft', '-a', 'monitor', 'trace'],
    netns,
    (l) => (text += `${l}\n`),
    () => undefined,
  );
  try {
    await new Promise((r) => setTimeout(r, startMs));
    const result = await action();
    await new Promise((r) => setTimeout(r, 150));
    const rs = await run(['nft', '-a', '-j', 'list', 'ruleset'], { ...ns, allowFailure: true, timeoutMs: 10_000 });
    return { result, trace: { text, rulesetJson: rs.stdout, table } };
  } finally {
    await stopChild(s);
    await run(['nft', 'delete', 'table', 'inet', table], { ...ns, allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
  }
}
