/**
 * `verifyHairpin(opts)`: can containers (and the host) reach each published port through the host,
 * and does each path behave as this host's configuration says it should? Used by
 * `journey verify hairpin` (src/cli/verify.ts) and offered by `journey serve`.
 *
 *   const report = await verifyHairpin({ netns: 'jl-f-host', timeoutMs: 2000 });
 *   report.ok          // true when no check failed
 *   report.checks[i]   // { kind, from, to, status, expected, probe, evidence, causes }
 *
 * Active mode: for every planned check (./plan.ts) a TCP connect from the caller's namespace,
 * watched by conntrack events and a bounded tcpdump in the host namespace; a failing check is
 * probed once more under the kernel's trace (`nft monitor trace`, temporary table) so the drop is
 * named by the kernel itself (one check: ./hairpin-check-run.ts). Passive mode (./passive.ts) sends nothing.
 */
import { collectHostFacts, netnsInodeOf, processNetnsInode } from './host-facts.js';
import { resolveDockerHost } from '../docker/client.js';
import { daemonForSocket, findDaemons } from '../docker/daemon.js';
import { bridgeOfAddr, collectInventory } from './endpoints.js';
import { planChecks, summarizeHost, type PlanOptions, type PlannedCheck } from './plan.js';
import { sourcePortBlock } from './probe.js';
import { watchConntrack, watchPackets, type Collector, type PacketLine, type TimedEntry } from './collectors.js';
import { compileRuleset, type CompiledRuleset } from '../explain/explain.js';
import { openKernelEvents, type KernelDrop, type KernelEvents } from '../native/index.js';
import { passiveHairpin } from './passive.js';
import type { CheckKind, HairpinCheck, HairpinReport } from './types.js';
import { VERIFY_REPORT_VERSION } from './types.js';
import { addrPort } from './family-view.js';
import { JourneyError } from '../model/errors.js';
import { runHairpinCheck, skippedCheck } from './hairpin-check-run.js';

export interface VerifyOptions extends PlanOptions {
  /** Network namespace of the Docker host (name under /var/run/netns, path or pid); default: this one. */
  readonly netns?: string;
  readonly dockerHost?: string;
  /** Do not ask the Docker API (find endpoints and ports on the host). */
  readonly noDocker?: boolean;
  /** Per-probe timeout (default 2000 ms). */
  readonly timeoutMs?: number;
  /** Kernel trace: of failing probes (default), of every probe, or never. */
  readonly trace?: 'failures' | 'all' | 'none';
  /** Passive mode: classify hairpin flows as they happen, for `durationMs`, sending nothing. */
  readonly passive?: boolean;
  readonly durationMs?: number;
  /** Passive mode's source: the live pipeline (default) or conntrack events only. */
  readonly passiveSource?: 'pipeline' | 'conntrack';
  /** eBPF drop reasons (default on when the kernel and the native binding allow it). */
  readonly drops?: boolean;
  /** Progress lines (stderr in the CLI). */
  readonly log?: (msg: string) => void;
  /** Stop early (passive mode) when this signal aborts. */
  readonly signal?: AbortSignal;
}

function packetFilter(ports: readonly number[], checks: readonly PlannedCheck[]): string {
  const lo = Math.min(...ports);
  const hi = Math.max(...ports);
  const cports = [...new Set(checks.map((c) => c.port.containerPort))];
  const targets = cports.map((p) => `port ${p}`).join(' or ');
  // + 303: runProbe's retries on EADDRINUSE (source port + 101, 202, 303)
  return `(tcp or udp) and (portrange ${lo}-${hi + 303}${targets !== '' ? ` or ${targets}` : ''})`;
}

export function summarize(checks: readonly { status: string }[]): HairpinReport['summary'] {
  const n = (s: string): number => checks.filter((c) => c.status === s).length;
  return { total: checks.length, pass: n('pass'), fail: n('fail'), blocked: n('blocked'), skipped: n('skipped') };
}

/**
 * Without --netns: when the dockerd serving --docker-host runs in another network namespace than
 * journey (a daemon started inside a namespace, as in the lab), check that namespace.
 */
function withDaemonNetns(opts: VerifyOptions, notices: string[]): VerifyOptions {
  if (opts.netns !== undefined || opts.noDocker === true) return opts;
  try {
    const ep = resolveDockerHost(opts.dockerHost);
    const d = daemonForSocket(ep.socketPath, findDaemons());
    if (d === null) return opts;
    const theirs = processNetnsInode(d.pid);
    if (theirs === null || theirs === netnsInodeOf(undefined)) return opts;
    notices.push(`dockerd (pid ${d.pid}) runs in another network namespace than journey: checking that one (/proc/${d.pid}/ns/net)`);
    return { ...opts, netns: String(d.pid) };
  } catch {
    return opts;
  }
}

/** The checks that would run (`journey verify hairpin --plan`): the host read, nothing sent. */
export async function planHairpin(given: VerifyOptions = {}): Promise<{ host: HairpinReport['host']; checks: PlannedCheck[]; notices: string[] }> {
  const early: string[] = [];
  const opts = withDaemonNetns(given, early);
  const host = await collectHostFacts(opts.netns);
  const inv = await collectInventory(host, {
    ...(opts.dockerHost !== undefined ? { dockerHost: opts.dockerHost } : {}),
    ...(opts.noDocker !== undefined ? { noDocker: opts.noDocker } : {}),
  });
  return { host: summarizeHost(host, inv, opts), checks: planChecks(host, inv, opts), notices: [...early, ...host.notices, ...inv.notices] };
}

/** Runs the hairpin checks (active, or passive with `passive: true`) and returns the report. */
export async function verifyHairpin(given: VerifyOptions = {}): Promise<HairpinReport> {
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const early: string[] = [];
  const opts = withDaemonNetns(given, early);
  const facts = (async () => {
    const host = await collectHostFacts(opts.netns);
    const inv = await collectInventory(host, {
      ...(opts.dockerHost !== undefined ? { dockerHost: opts.dockerHost } : {}),
      ...(opts.noDocker !== undefined ? { noDocker: opts.noDocker } : {}),
    });
    return { host, inv };
  })();
  // passive mode starts watching at once: the host's facts are read meanwhile (they only classify what was seen)
  const watching = opts.passive === true ? passiveHairpin(facts, opts) : null;
  watching?.catch(() => undefined); // its rejection is awaited below; this only keeps it from being reported unhandled meanwhile
  const { host, inv } = await facts;
  const notices = [...early, ...host.notices, ...inv.notices];
  const hostSummary = summarizeHost(host, inv, opts);
  /** The report, timed now; its summary counts `results` (the checks, or the flows watched). */
  const report = (
    mode: HairpinReport['mode'],
    ports: HairpinReport['ports'],
    checks: HairpinReport['checks'],
    flows: HairpinReport['flows'],
    results: readonly { status: string }[],
    reportNotices: string[],
  ): HairpinReport => {
    const summary = summarize(results);
    return {
      v: VERIFY_REPORT_VERSION,
      mode,
      startedAt,
      durationMs: Date.now() - t0,
      host: hostSummary,
      ports,
      checks,
      flows,
      summary,
      ok: summary.fail === 0,
      notices: reportNotices,
    };
  };
  if (watching !== null) {
    const flows = await watching;
    return report(
      'passive',
      inv.ports.map((p) => ({ ...p, bridge: bridgeOfAddr(host.bridges, p.containerIp)?.name ?? null })),
      [],
      flows,
      flows,
      flows.length === 0 ? [...notices, 'no hairpin flow was seen while watching'] : notices,
    );
  }
  const plan = planChecks(host, inv, opts);
  let compiled: CompiledRuleset | null = null;
  try {
    compiled = compileRuleset(host.rules, host.context);
  } catch (e) {
    notices.push(`no explanation of the probes: ${(e as Error).message}`);
  }
  if (inv.ports.length === 0) notices.push('no published port found: nothing to check');
  else if (opts.ports !== undefined && opts.ports.length > 0 && plan.length === 0) {
    throw new JourneyError(
      'E_USAGE',
      `no published port ${opts.ports.join(', ')} (published: ${inv.ports.map((p) => `${p.hostPort}/${p.proto}`).join(', ')})`,
    );
  }
  if (host.rules.tables.some((t) => t.family === 'inet' && t.name === 'firewalld'))
    notices.push('firewalld is active (table inet firewalld): its chains are on these paths too, and are in the explained path and the kernel trace');
  const runnable = plan.filter((c) => c.skipReason === null);
  const ports = sourcePortBlock(runnable.length * 2 + 2);
  let next = 0;
  const take = (): number => ports[next++] ?? 40_000 + next;
  const checks: HairpinCheck[] = [];
  let ct: Collector<TimedEntry> | null = null;
  let pk: Collector<PacketLine> | null = null;
  let kd: KernelEvents | null = null;
  const drops: KernelDrop[] = [];
  try {
    if (runnable.length > 0) {
      ct = await watchConntrack(opts.netns);
      pk = await watchPackets(opts.netns, packetFilter(ports, runnable));
      if (opts.drops !== false) {
        kd = await openKernelEvents({ ...(opts.netns !== undefined ? { netns: opts.netns } : {}), hooks: 'none', drops: true }).catch(
          (e: unknown) => {
            notices.push(`no eBPF drop reasons: ${(e as Error).message}`);
            return null;
          },
        );
        if (kd !== null) {
          for (const l of kd.lost) notices.push(l);
          kd.onDrop((d) => {
            if (drops.length < 10_000) drops.push(...d);
          });
        }
      }
    }
    for (const c of plan) {
      if (c.skipReason !== null || ct === null || pk === null) {
        checks.push(skippedCheck(c));
        continue;
      }
      if (opts.signal?.aborted === true) {
        checks.push({ ...skippedCheck(c), skipReason: 'interrupted before this check ran' });
        continue;
      }
      opts.log?.(`checking ${c.kind}: ${c.from.name} -> ${addrPort(c.dstIp, c.dstPort)}`);
      checks.push(await runHairpinCheck(c, take(), host, inv, opts, ct, pk, take, compiled, drops));
    }
  } finally {
    await ct?.stop();
    await pk?.stop();
    await kd?.stop();
  }
  for (const col of [ct, pk]) for (const e of col?.errors ?? []) notices.push(`evidence: ${e}`);
  return report(
    'active',
    [...new Map(plan.map((c) => [`${c.port.proto}/${c.port.hostIp}/${c.port.hostPort}`, c.port])).values()],
    checks,
    [],
    checks,
    notices,
  );
}

export type { CheckKind };
