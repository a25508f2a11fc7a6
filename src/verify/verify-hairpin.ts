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
 * named by the kernel itself. Passive mode (./passive.ts) sends nothing.
 */
import { collectHostFacts, netnsInodeOf, processNetnsInode, type HostFacts } from './host-facts.js';
import { resolveDockerHost } from '../docker/client.js';
import { daemonForSocket, findDaemons } from '../docker/daemon.js';
import { bridgeOfAddr, collectInventory, type Inventory } from './endpoints.js';
import { planChecks, summarizeHost, type PlanOptions, type PlannedCheck } from './plan.js';
import { runProbe, sourcePortBlock } from './probe.js';
import { traceProbe, watchConntrack, watchPackets, type Collector, type PacketLine, type TimedEntry } from './collectors.js';
import { judge, selectConntrack, selectPackets } from './diagnose.js';
import { compileRuleset, type CompiledRuleset } from '../explain/explain.js';
import { explainedLine, explainProbe, toSteps } from './probe-accounts.js';
import { natEqual, natFromConntrack } from '../explain/kernel-compare.js';
import type { Explanation } from '../model/explanation.js';
import type { DropInfo } from '../model/events.js';
import { openKernelEvents, type KernelDrop, type KernelEvents } from '../native/index.js';
import type { ConntrackEntry } from '../model/conntrack.js';
import { parseConntrackLine } from '../conntrack/parse.js';
import { run } from '../host/exec.js';
import { passiveHairpin } from './passive.js';
import type { CheckKind, HairpinCheck, HairpinReport, ProbeResult, TraceStep } from './types.js';
import { VERIFY_REPORT_VERSION } from './types.js';
import { addrPort, familyOfAddr, gatewayOfFamily } from './family-view.js';
import { JourneyError } from '../model/errors.js';

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

/** A check's evidence while it is being gathered (the judgement adds `observed`). */
interface EvidenceDraft {
  conntrack: ConntrackEntry[];
  proxyLeg: ConntrackEntry | null;
  packets: string[];
  explanation: Explanation | null;
  trace: TraceStep[];
  drops: DropInfo[];
}

async function conntrackLookup(netns: string | undefined, proto: string, sport: number, c: PlannedCheck): Promise<ConntrackEntry | null> {
  const fam = familyOfAddr(c.dstIp) === 6 ? ['-f', 'ipv6'] : [];
  const r = await run(['conntrack', '-L', ...fam, '-o', 'extended,id', '-p', proto, '--orig-port-src', String(sport)], {
    ...(netns !== undefined ? { netns } : {}),
    allowFailure: true,
    timeoutMs: 5_000,
  }).catch(() => null);
  for (const line of r?.stdout.split('\n') ?? []) {
    const p = parseConntrackLine(line, 'conntrack-tool');
    if (p && p.entry.orig.dst === c.dstIp && p.entry.orig.dport === c.dstPort) return p.entry;
  }
  return null;
}

/** The docker-proxy connections (gateway -> container:port) in the table now. */
async function proxyLegs(netns: string | undefined, c: PlannedCheck, gw: string | null): Promise<ConntrackEntry[]> {
  const fam = familyOfAddr(c.port.containerIp) === 6 ? ['-f', 'ipv6'] : [];
  const argv = [
    'conntrack',
    '-L',
    ...fam,
    '-o',
    'extended,id',
    '-p',
    c.port.proto,
    '-d',
    c.port.containerIp,
    '--dport',
    String(c.port.containerPort),
  ];
  const r = await run(argv, { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 5_000 }).catch(() => null);
  const out: ConntrackEntry[] = [];
  for (const line of r?.stdout.split('\n') ?? []) {
    const p = parseConntrackLine(line, 'conntrack-tool');
    if (p && (gw === null || p.entry.orig.src === gw)) out.push(p.entry);
  }
  return out;
}

function targetPortIfname(inv: Inventory, c: PlannedCheck): string | null {
  return inv.endpoints.find((e) => e.ip === c.port.containerIp)?.port ?? null;
}

/** The target bridge's gateway in the container address's family: where docker-proxy connects from. */
function gatewayFor(host: HostFacts, bridge: string | null, containerIp: string): string | null {
  return gatewayOfFamily(
    host.bridges.find((b) => b.name === bridge),
    containerIp,
  );
}

function packetFilter(ports: readonly number[], checks: readonly PlannedCheck[]): string {
  const lo = Math.min(...ports);
  const hi = Math.max(...ports);
  const cports = [...new Set(checks.map((c) => c.port.containerPort))];
  const targets = cports.map((p) => `port ${p}`).join(' or ');
  // + 303: runProbe's retries on EADDRINUSE (source port + 101, 202, 303)
  return `(tcp or udp) and (portrange ${lo}-${hi + 303}${targets !== '' ? ` or ${targets}` : ''})`;
}

async function runOne(
  c: PlannedCheck,
  srcPort: number,
  host: HostFacts,
  inv: Inventory,
  opts: VerifyOptions,
  ct: Collector<TimedEntry>,
  pk: Collector<PacketLine>,
  traceFresh: () => number,
  compiled: CompiledRuleset | null,
  kernelDrops: readonly KernelDrop[] = [],
): Promise<HairpinCheck> {
  const timeoutMs = opts.timeoutMs ?? 2_000;
  const netns = opts.netns;
  const proto = c.port.proto === 'udp' ? ('udp' as const) : ('tcp' as const);
  const spec = (sp: number) => ({
    ns: c.fromNs,
    ...(netns !== undefined ? { hostNetns: netns } : {}),
    dstIp: c.dstIp,
    dstPort: c.dstPort,
    srcPort: sp,
    timeoutMs,
    proto,
  });
  const gwFirst = gatewayFor(host, c.port.bridge, c.port.containerIp);
  const legsBefore = c.expected?.via === 'docker-proxy' ? await proxyLegs(netns, c, gwFirst) : null;
  const from = Date.now();
  let probe: ProbeResult;
  let steps: TraceStep[] = [];
  let usedPort = srcPort;
  const traceFirst = opts.trace === 'all' || (c.expected?.outcome === 'blocked' && opts.trace !== 'none');
  const traced = traceFirst
    ? await traceProbe(netns, srcPort, () => runProbe(spec(srcPort)), undefined, proto).catch((e: unknown) => {
        opts.log?.(`kernel trace unavailable: ${(e as Error).message}`);
        return null;
      })
    : null;
  if (traced !== null) {
    probe = traced.result;
    steps = toSteps(traced.trace.text, traced.trace.rulesetJson, traced.trace.table);
  } else {
    probe = await runProbe(spec(srcPort));
  }
  // the probe may have moved to another source port (EADDRINUSE in the caller's namespace)
  srcPort = probe.localPort;
  usedPort = srcPort;
  await new Promise((r) => setTimeout(r, 150));
  const to = Date.now();
  const gw = gatewayFor(host, c.port.bridge, c.port.containerIp);
  let { own, proxyLeg } = selectConntrack(ct.items, c, usedPort, { from, to }, gw);
  for (let i = 0; own === null && i < 3; i++) {
    // the event stream missed it (a loaded host): read the table itself, a little later each time
    if (i > 0) await new Promise((res) => setTimeout(res, 200 * i));
    own = await conntrackLookup(netns, c.port.proto, usedPort, c);
    if (own === null) own = selectConntrack(ct.items, c, usedPort, { from, to: Date.now() }, gw).own;
  }
  if (proxyLeg === null && legsBefore !== null && probe.connected) {
    // the event stream missed it: the docker-proxy connection that appeared during this probe
    const before = new Set(legsBefore.map((e) => e.id));
    proxyLeg = (await proxyLegs(netns, c, gw)).find((e) => !before.has(e.id)) ?? null;
  }
  let packets = selectPackets(pk.items, usedPort, proxyLeg, { from, to });
  if (!probe.connected && (opts.trace ?? 'failures') === 'failures') {
    // Once more under the kernel's trace, from a fresh source port, so the drop is named by the kernel.
    usedPort = traceFresh();
    const t0 = Date.now();
    const r = await traceProbe(netns, usedPort, () => runProbe(spec(usedPort)), undefined, proto).catch((e: unknown) => {
      opts.log?.(`kernel trace unavailable: ${(e as Error).message}`);
      return null;
    });
    if (r !== null) {
      steps = toSteps(r.trace.text, r.trace.rulesetJson, r.trace.table);
      await new Promise((res) => setTimeout(res, 150));
      const sel = selectConntrack(ct.items, c, usedPort, { from: t0, to: Date.now() }, gw);
      // keep the first probe's evidence; add the traced one's when the first had none
      if (own === null) own = sel.own;
      if (proxyLeg === null) proxyLeg = sel.proxyLeg;
      if (packets.length === 0) packets = selectPackets(pk.items, usedPort, proxyLeg, { from: t0, to: Date.now() });
    }
  }
  const explanation = explainProbe(compiled, c, srcPort);
  const mine = (p: number): boolean => p === srcPort || p === usedPort;
  const probeDrops = kernelDrops
    .filter(
      (d) =>
        d.tuple !== null &&
        (mine(d.tuple.sport) ||
          mine(d.tuple.dport) ||
          (proxyLeg !== null && (d.tuple.sport === proxyLeg.orig.sport || d.tuple.dport === proxyLeg.orig.sport))),
    )
    .slice(0, 20)
    .map((d): DropInfo => ({ timeUs: d.timeUs, reason: d.reason, iface: d.iface, tuple: d.tuple, rule: d.rule }));
  const evidenceBase: EvidenceDraft = {
    conntrack: own ? [own] : [],
    proxyLeg,
    packets: packets.map((p) => p.text),
    explanation,
    trace: steps,
    drops: probeDrops,
  };
  let j = judge(c, host, probe, evidenceBase, targetPortIfname(inv, c));
  if (j.status === 'fail' && probe.connected && steps.length === 0 && (opts.trace ?? 'failures') === 'failures') {
    // docker-proxy accepted but did not reach the container: trace its own connection to name the drop
    const sp = traceFresh();
    const t0 = Date.now();
    const r = await traceProbe(netns, sp, () => runProbe(spec(sp)), undefined, proto, { ip: c.port.containerIp, port: c.port.containerPort }).catch(
      () => null,
    );
    if (r !== null) {
      await new Promise((res) => setTimeout(res, 150));
      const sel = selectConntrack(ct.items, c, sp, { from: t0, to: Date.now() }, gw);
      const traced = toSteps(r.trace.text, r.trace.rulesetJson, r.trace.table);
      j = judge(c, host, probe, { ...evidenceBase, proxyLeg: evidenceBase.proxyLeg ?? sel.proxyLeg, trace: traced }, targetPortIfname(inv, c));
      evidenceBase.trace = traced;
    }
  }
  if (explanation !== null) {
    j.observed.push(explainedLine(explanation));
    if (own !== null && explanation.verdict !== 'drop' && !natEqual(explanation.nat, natFromConntrack(own))) {
      const k = natFromConntrack(own);
      j.deviations.push(
        `the explainer predicts ${explanation.nat.dnat ? `DNAT to ${explanation.nat.dnat.to}` : 'no DNAT'}/${explanation.nat.snat ? `SNAT to ${explanation.nat.snat.to}` : 'no SNAT'}, conntrack shows ${k.dnat ? `DNAT to ${k.dnat.to}` : 'no DNAT'}/${k.snat ? `SNAT to ${k.snat.to}` : 'no SNAT'}`,
      );
    }
    if (j.status === 'fail' && steps.length === 0) {
      const d = explanation.steps.find((x) => x.verdict === 'drop' || x.verdict === 'reject');
      if (d) j.causes.unshift(`dropped in ${d.chain} by rule ${d.ruleNumber ?? '?'} (explained, not traced)${d.rule !== null ? `: ${d.rule}` : ''}`);
    }
  }
  return checkOf(c, {
    status: j.status,
    probe,
    evidence: { ...evidenceBase, observed: j.observed },
    causes: j.causes,
    deviations: j.deviations,
    skipReason: null,
  });
}

/** A planned check with its outcome (the report's field order). */
function checkOf(c: PlannedCheck, r: Pick<HairpinCheck, 'status' | 'probe' | 'evidence' | 'causes' | 'deviations' | 'skipReason'>): HairpinCheck {
  return {
    id: c.id,
    kind: c.kind,
    port: c.port,
    from: c.from,
    to: addrPort(c.dstIp, c.dstPort),
    status: r.status,
    expected: c.expected,
    probe: r.probe,
    evidence: r.evidence,
    causes: r.causes,
    deviations: r.deviations,
    skipReason: r.skipReason,
  };
}

function skipped(c: PlannedCheck): HairpinCheck {
  return checkOf(c, { status: 'skipped', probe: null, evidence: null, causes: [], deviations: [], skipReason: c.skipReason });
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
        checks.push(skipped(c));
        continue;
      }
      if (opts.signal?.aborted === true) {
        checks.push({ ...skipped(c), skipReason: 'interrupted before this check ran' });
        continue;
      }
      opts.log?.(`checking ${c.kind}: ${c.from.name} -> ${addrPort(c.dstIp, c.dstPort)}`);
      checks.push(await runOne(c, take(), host, inv, opts, ct, pk, take, compiled, drops));
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
