/**
 * Arms the kernel's trace (`meta nftrace set 1`) for the first packet of new connections in the
 * Docker host's namespace and reads it with `nft -a monitor trace`: the oracle `--verify` checks
 * each flow's explanation against (src/explain/flow-verify.ts).
 *
 * journey sees a flow only after its first packet went through netfilter, so the trace must be
 * armed before that packet comes. It is armed in the kernel, per connection: journey's own table
 * `inet journey_trace_<pid>` (a unique name; the pid says whose it is) hooks prerouting and output
 * at the lowest priority after the kernel's own bridge guard (before defrag, raw, conntrack, every
 * other table), and for a
 * packet that opens a connection (a TCP SYN, a UDP datagram, an ICMP echo request) whose exact
 * 5-tuple (addresses, protocol, ports or ICMP id) it has not seen, adds that 5-tuple and its
 * inverse (the reply of a connection without NAT) to a set and sets nftrace on this one packet —
 * for at most `rate` packets a second (`limit rate`). Later packets of the same 5-tuple are never
 * traced. The first UDP reply of a NATed connection (its tuple is not the inverse) is armed as a
 * new 5-tuple; it uses one trace of the rate and is never taken for a flow's first packet (the
 * flow is found by its own tuple). A chain after conntrack that added each connection's reply
 * tuple cost every packet a second hook, more than the arming itself (scripts/bench/verify-trace.mjs).
 * The sets' entries expire after 3 minutes. Nothing here changes a verdict: every chain's policy is accept and no
 * rule drops. Without `--verify` the table does not exist (nothing costs anything).
 *
 * The table is removed on stop; a table left by a journey that was killed (its pid no longer runs)
 * is removed at the next start (removeLeftoverTraceTables).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { inNetns, run } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import { isTraceTableName } from '../ruleset/model.js';
import { parseNftTrace, type KernelTrace } from './kernel-trace.js';

/** Tables journey's tracer makes are named so; the number is the pid of the journey that made it. */
export const TRACE_TABLE_PREFIX = 'journey_trace_';

/**
 * Right after NF_IP_PRI_FIRST: before defrag, raw, conntrack and every table, but after the
 * bridge's own guard (br_netfilter's ip_sabotage_in at NF_IP_PRI_FIRST), which stops a bridged
 * packet's second pass through prerouting — at NF_IP_PRI_FIRST itself the trace would see it twice.
 */
export const TRACE_PRIORITY = -2147483647;

/** Chains of the trace table that set nftrace: the first traced line of a packet is in one of them. */
const ARM_CHAINS = ['p4', 'i4', 'p6', 'i6'] as const;

/** The trace table (nft -f input): arms the first packet of up to `rate` new 5-tuples a second. */
export function traceTableDefinition(table: string, rate: number): string {
  const r = Math.max(1, Math.floor(rate));
  const set = (name: string, typeof_: string): string => `  set ${name} { typeof ${typeof_}; flags dynamic,timeout; timeout 180s; size 65535; }\n`;
  const p4 = 'ip saddr . meta l4proto . th sport . ip daddr . th dport';
  const i4 = 'ip saddr . ip daddr . icmp id';
  const p6 = 'ip6 saddr . meta l4proto . th sport . ip6 daddr . th dport';
  const i6 = 'ip6 saddr . ip6 daddr . icmpv6 id';
  const r4 = 'ip daddr . meta l4proto . th dport . ip saddr . th sport';
  const r6 = 'ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport';
  const arm = (name: string, key: string, inverse?: string): string =>
    `  chain ${name} {\n    ${key} @${name} return\n` +
    (inverse !== undefined ? `    add @${name} { ${inverse} }\n` : '') +
    `    add @${name} { ${key} } limit rate ${r}/second burst ${r} packets meta nftrace set 1\n  }\n`;
  return (
    `table inet ${table} {\n` +
    set('p4', p4) +
    set('i4', i4) +
    set('p6', p6) +
    set('i6', i6) +
    `  chain pre { type filter hook prerouting priority ${TRACE_PRIORITY}; policy accept; jump first; }\n` +
    `  chain out { type filter hook output priority ${TRACE_PRIORITY}; policy accept; jump first; }\n` +
    '  chain first {\n' +
    '    tcp flags & (fin|syn|rst|ack) != syn return\n' +
    '    meta nfproto ipv4 meta l4proto { tcp, udp } goto p4\n' +
    '    icmp type echo-request goto i4\n' +
    '    meta nfproto ipv6 meta l4proto { tcp, udp } goto p6\n' +
    '    icmpv6 type echo-request goto i6\n' +
    '  }\n' +
    arm('p4', p4, r4) +
    arm('i4', i4) +
    arm('p6', p6, r6) +
    arm('i6', i6) +
    '}\n'
  );
}

/** The trace table for one packet: its exact match sets nftrace, in prerouting and output. */
export function exactTraceDefinition(table: string, match: string): string {
  const chain = (name: string, hook: string): string =>
    `  chain ${name} { type filter hook ${hook} priority ${TRACE_PRIORITY}; policy accept;\n    ${match} meta nftrace set 1\n  }\n`;
  return `table inet ${table} {\n${chain('pre', 'prerouting')}${chain('out', 'output')}}\n`;
}

const pidRuns = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but is not ours to signal
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Trace tables in the namespace (`nft list tables`): their family and name. */
async function traceTables(netns: string | undefined): Promise<{ family: string; name: string }[]> {
  const r = await run(['nft', 'list', 'tables'], { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 10_000 });
  const out: { family: string; name: string }[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^table (\S+) (\S+)/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined && isTraceTableName(m[2])) out.push({ family: m[1], name: m[2] });
  }
  return out;
}

/**
 * Removes trace tables left by a journey that no longer runs (killed before it could remove its
 * own): their pid is not a running process, or is this very process (a pid reused). Returns their names.
 */
export async function removeLeftoverTraceTables(netns: string | undefined): Promise<string[]> {
  const removed: string[] = [];
  for (const t of await traceTables(netns)) {
    const pid = Number(t.name.slice(TRACE_TABLE_PREFIX.length));
    if (pid !== process.pid && pidRuns(pid)) continue;
    await run(['nft', 'delete', 'table', t.family, t.name], { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 10_000 });
    removed.push(t.name);
  }
  return removed;
}

/** Why no flow can be verified on this host, or null when the trace works. */
export async function traceUnavailable(netns: string | undefined): Promise<string | null> {
  const o = { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 10_000 };
  try {
    const v = await run(['nft', '--version'], o);
    if (v.code !== 0) return 'no nft: nft --version failed';
  } catch (e) {
    if (e instanceof JourneyError && e.code === 'E_TOOL_MISSING') return 'no nft: the nft tool is not installed';
    throw e;
  }
  // rules of legacy iptables (x_tables) are not nftables rules: nft monitor trace never shows them
  for (const tool of ['iptables-legacy-save', 'ip6tables-legacy-save']) {
    try {
      const r = await run([tool], o);
      if (r.code === 0 && /^-A /m.test(r.stdout)) return `legacy iptables: ${tool} shows rules the kernel's nftables trace cannot see`;
    } catch (e) {
      if (!(e instanceof JourneyError && e.code === 'E_TOOL_MISSING')) throw e;
      // no legacy tool: no legacy rules either
    }
  }
  return null;
}

export interface TraceArmOptions {
  readonly netns?: string;
  /** New connections traced per second, at most. */
  readonly rate: number;
  /**
   * One packet instead of new connections: an nft match of its exact tuple (`ip saddr … tcp dport …`);
   * every packet it matches is traced (journey explain --verify).
   */
  readonly match?: string;
  /** How long traced lines are kept for flows to find theirs (default 10 s). */
  readonly keepMs?: number;
}

interface BufferedLine {
  readonly at: number;
  readonly text: string;
}

/**
 * The armed trace: the table, `nft -a monitor trace` reading it, and the recent trace lines.
 * start() throws JourneyError when the table cannot be added; stop() is idempotent.
 */
export class TraceArm {
  readonly table = `${TRACE_TABLE_PREFIX}${process.pid}`;
  /** Trace table packets seen (first packets armed), monitor lines read, lines dropped as too old. */
  readonly counters = { armed: 0, lines: 0, expired: 0 };
  /** Times (ms) at which a first packet was armed, for the last few seconds (rate-limit attribution). */
  private readonly armedAt: number[] = [];
  private lines: BufferedLine[] = [];
  private monitor: ChildProcess | null = null;
  private rulesetJson = '';
  private rulesetVersion = 0;
  private parsed: KernelTrace | null = null;
  private parsedKey = '';
  private stopped = false;
  /** Set when the monitor exited by itself: why the trace stopped. */
  failed: string | null = null;
  /** When the table went in (ms): packets before it were never armed. */
  startedAt = 0;

  constructor(private readonly opts: TraceArmOptions) {}

  private get ns(): { netns?: string } {
    return this.opts.netns !== undefined ? { netns: this.opts.netns } : {};
  }

  async start(): Promise<{ removedLeftovers: string[] }> {
    const removedLeftovers = await removeLeftoverTraceTables(this.opts.netns);
    const def = this.opts.match !== undefined ? exactTraceDefinition(this.table, this.opts.match) : traceTableDefinition(this.table, this.opts.rate);
    await run(['nft', '-f', '-'], { ...this.ns, input: def, timeoutMs: 10_000 });
    await this.refreshRuleset();
    const [cmd, ...args] = inNetns(['nft', '-a', 'monitor', 'trace'], this.opts.netns);
    const child = spawn(cmd ?? 'nft', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.monitor = child;
    let err = '';
    child.stderr?.on('data', (b: Buffer) => {
      err = `${err}${b.toString()}`.slice(-500);
    });
    child.on('error', (e) => {
      this.failed = `nft monitor trace could not run: ${e.message}`;
    });
    child.on('close', (code) => {
      if (!this.stopped) this.failed = `nft monitor trace exited (${code ?? 'signal'}): ${err.trim()}`;
    });
    createInterface({ input: child.stdout! }).on('line', (l) => this.onLine(l));
    // a process that leaves without stop() (a second Ctrl-C, process.exit) still takes its table along
    process.on('exit', this.onExit);
    this.startedAt = Date.now();
    return { removedLeftovers };
  }

  /** Re-reads `nft -a -j list ruleset` (rule numbers from handles); call after a ruleset change. */
  async refreshRuleset(): Promise<void> {
    const r = await run(['nft', '-a', '-j', 'list', 'ruleset'], { ...this.ns, allowFailure: true, timeoutMs: 10_000 });
    if (r.code === 0) {
      this.rulesetJson = r.stdout;
      this.rulesetVersion++;
    }
  }

  /**
   * Keeps a trace line, rewritten so that each packet starts at the trace table: the line that
   * armed it (`p4 packet:` …) becomes the `pre`/`out` entry of the packet (by whether it came in
   * on an interface), the packet line of the lo half of a host-to-itself packet stays a `pre`
   * entry, every other line of the trace table is left out.
   */
  private onLine(line: string): void {
    this.counters.lines++;
    const now = Date.now();
    const m = /^trace id \S+ inet (\S+) (\S+) (packet: |rule |verdict |policy )/.exec(line);
    let text = line;
    if (m && m[1] === this.table) {
      const chain = m[2] ?? '';
      if (m[3] !== 'packet: ') return;
      if ((ARM_CHAINS as readonly string[]).includes(chain)) {
        this.counters.armed++;
        this.armedAt.push(now);
        const entry = / iif "/.test(line) ? 'pre' : 'out';
        text = line.replace(` inet ${this.table} ${chain} packet: `, ` inet ${this.table} ${entry} packet: `);
      } else if (chain !== 'pre' && chain !== 'out') return;
    }
    this.lines.push({ at: now, text });
    this.trim(now);
  }

  private trim(now: number): void {
    const keep = this.opts.keepMs ?? 10_000;
    let i = 0;
    while (i < this.lines.length && (now - (this.lines[i]?.at ?? now) > keep || this.lines.length - i > 50_000)) i++;
    if (i > 0) {
      this.counters.expired += i;
      this.lines = this.lines.slice(i);
    }
    while (this.armedAt.length > 0 && now - (this.armedAt[0] ?? now) > 5_000) this.armedAt.shift();
  }

  /** The kernel's trace of the recent lines (packets in arrival order). */
  trace(): KernelTrace {
    // parsed again only when lines came (or went) since the last time
    const key = `${this.counters.lines} ${this.counters.expired} ${this.rulesetVersion}`;
    if (this.parsed === null || this.parsedKey !== key) {
      this.parsed = parseNftTrace(this.lines.map((l) => l.text).join('\n'), { ruleset: this.rulesetJson, traceTable: this.table });
      this.parsedKey = key;
    }
    return this.parsed;
  }

  /** First packets armed in the second around `atMs` (the kernel's limit allows `rate` of them). */
  armedAround(atMs: number): number {
    return this.armedAt.filter((t) => Math.abs(t - atMs) <= 1_000).length;
  }

  get rate(): number {
    return this.opts.rate;
  }

  private readonly onExit = (): void => {
    if (this.stopped) return;
    this.stopped = true;
    this.monitor?.kill('SIGTERM');
    const [cmd, ...args] = inNetns(['nft', 'delete', 'table', 'inet', this.table], this.opts.netns);
    spawnSync(cmd ?? 'nft', args, { stdio: 'ignore', timeout: 5_000 });
  };

  /** Stops the monitor and removes the table. Idempotent; never throws. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    process.off('exit', this.onExit);
    const child = this.monitor;
    if (child && child.exitCode === null) {
      const closed = new Promise<void>((r) => child.once('close', () => r()));
      child.kill('SIGTERM');
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2_000).unref())]);
    }
    await run(['nft', 'delete', 'table', 'inet', this.table], { ...this.ns, allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
  }
}
