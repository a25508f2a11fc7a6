/**
 * The lab driver: brings up a Docker host in network namespaces (lab/lab.sh does the work for
 * scenarios; lab/replay.ts for `--ruleset`), describes it (LabInfo), runs commands and probes in
 * it, and records the kernel's own trace of what packets did (`traceKernel`).
 *
 * Every other lab test uses this API:
 *   const lab = await labUp({ id: 'x', scenario: 'noproxy' });
 *   const res = await runProbe('x', 'ext-to-published');
 *   const tr = await traceKernel('x', () => runProbe('x', 'ext-to-published'));
 *   await labDown('x');
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { run, type RunOptions, type RunResult } from '../src/host/exec.js';
import { JourneyError, isJourneyError } from '../src/model/errors.js';
import type { ConntrackEntry } from '../src/model/conntrack.js';
import { parseConntrackList } from '../src/netfilter/kernel-conntrack.js';
import { parseNftTrace, type KernelTrace } from '../src/netfilter/kernel-trace.js';
import { labNames, labSourceDir, resolveId, type LabNames } from './names.js';
import { probeArgv, resolveProbe, listProbes, type ProbeDef, type ProbeResult } from './probes.js';
import { replayUp } from './replay.js';
import { describeDockerLab } from './docker-describe.js';
import type { LabInfo, LabUpOptions } from './lab-info.js';

export type { KernelTrace } from '../src/netfilter/kernel-trace.js';
export type { ProbeDef, ProbeResult } from './probes.js';
export { listProbes } from './probes.js';
export { labNames } from './names.js';
export type { LabBridge, LabContainer, LabInfo, LabPublished, LabUpOptions } from './lab-info.js';

const log = (msg: string): void => {
  if (process.env['JOURNEY_LAB_QUIET'] !== '1') process.stderr.write(`lab: ${msg}\n`);
};

/** Fails loudly (never skips) when the lab cannot run on this machine. */
export async function assertLabCanRun(): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new JourneyError('E_NOT_ROOT', 'the lab needs root (network namespaces, a real dockerd, nft): run as root');
  }
  if (!existsSync('/proc/self/ns/net')) throw new JourneyError('E_NO_NETNS', 'network namespaces are not available (/proc/self/ns/net missing)');
  try {
    await run(['ip', 'netns', 'list'], { timeoutMs: 10_000 });
  } catch (e) {
    throw new JourneyError('E_NO_NETNS', `network namespaces cannot be used here: ${(e as Error).message}`, {}, { cause: e });
  }
}

function labScript(): string {
  return join(labSourceDir(), 'lab.sh');
}

async function labSh(args: string[], timeoutMs: number): Promise<RunResult> {
  return run(['bash', labScript(), ...args], { timeoutMs, allowFailure: true, env: { ...process.env, JOURNEY_NODE: process.execPath } });
}

function infoPath(n: LabNames): string {
  return join(n.dir, 'info.json');
}

export const SCENARIOS = ['default', 'noproxy', 'docker1', 'hostip', 'internal', 'noicc', 'multi', 'firewalld', 'ipv6', 'ipv6proxy'] as const;

/** The dual-stack scenarios (IPv6 on the uplink; `ipv6` also gives dockerd IPv6 and ip6tables). */
export const IPV6_SCENARIOS = ['ipv6', 'ipv6proxy'] as const;

export function isIpv6Scenario(name: string): boolean {
  return (IPV6_SCENARIOS as readonly string[]).includes(name);
}

/** Scenario names with their one-line description (the recipe's first comment line). */
export function listScenarios(): { name: string; description: string }[] {
  const dir = join(labSourceDir(), 'scenarios');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sh'))
    .map((f) => {
      const first = readFileSync(join(dir, f), 'utf8').split('\n')[0] ?? '';
      return { name: f.replace(/\.sh$/, ''), description: first.replace(/^#\s*\S+\s+—\s*/, '').replace(/^#\s*/, '') };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Brings a lab up (a scenario with a real dockerd, or a ruleset replay) and returns its description. */
export async function labUp(opts: LabUpOptions = {}): Promise<LabInfo> {
  await assertLabCanRun();
  const n = labNames(opts.id);
  // never tear down a lab that is up because another `up` was asked for the same id
  if (existsSync(`/var/run/netns/${n.netns.host}`) || existsSync(join(n.dir, 'pids'))) {
    throw new JourneyError(
      'E_LAB',
      `lab "${n.id}" is already up (or was left by a crash): run 'journey lab down${n.id ? ` --id ${n.id}` : ''}' first`,
      { id: n.id },
    );
  }
  if (opts.ruleset !== undefined) {
    const info = await replayUp(n, opts.ruleset);
    writeFileSync(infoPath(n), JSON.stringify(info, null, 2));
    return info;
  }
  const scenario = opts.scenario ?? 'default';
  const custom = scenario.includes('/');
  if (custom && !existsSync(scenario)) throw new JourneyError('E_USAGE', `no such scenario file: ${scenario}`);
  if (!custom && !existsSync(join(labSourceDir(), 'scenarios', `${scenario}.sh`))) {
    throw new JourneyError(
      'E_USAGE',
      `no such scenario: ${scenario} (have: ${listScenarios()
        .map((s) => s.name)
        .join(', ')})`,
    );
  }
  const t0 = Date.now();
  const res = await labSh(['up', '--id', n.id, '--scenario', scenario], 240_000).catch((e: unknown) => {
    if (isJourneyError(e) && e.code === 'E_TIMEOUT') return { code: 124, stdout: '', stderr: e.message };
    throw e;
  });
  if (res.code !== 0) {
    const why = res.stderr.trim().split('\n').slice(-8).join('\n');
    await labSh(['down', '--id', n.id], 120_000).catch(() => undefined);
    throw new JourneyError('E_LAB', `lab up (scenario ${scenario}) failed:\n${why}`, { id: n.id, scenario });
  }
  const info = await describeDockerLab(n, scenario);
  writeFileSync(infoPath(n), JSON.stringify(info, null, 2));
  log(`up ${n.id || '(no id)'}: scenario ${scenario} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return info;
}

/** Removes everything the lab made. Idempotent; works after a crash. `id: '*'` removes every jl-* lab. */
export async function labDown(id?: string): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new JourneyError('E_NOT_ROOT', 'lab down needs root');
  }
  const args = id === '*' ? ['down', '--all'] : ['down', '--id', resolveId(id)];
  const res = await labSh(args, 180_000);
  if (res.code !== 0) throw new JourneyError('E_LAB', `lab down failed: ${res.stderr.trim().split('\n').slice(-5).join(' | ')}`);
  const n = id === '*' ? null : labNames(id);
  if (n) {
    const left = await leftovers(n);
    if (left.length) throw new JourneyError('E_LAB', `lab down left things behind: ${left.join(', ')}`);
  }
}

/** What of a lab still exists (namespaces, its directory, its processes): empty after a clean down. */
export async function leftovers(n: LabNames): Promise<string[]> {
  const left: string[] = [];
  const ns = await run(['ip', 'netns', 'list'], { allowFailure: true });
  for (const line of ns.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    if (name === n.netns.host || name === n.netns.ext || name === n.netns.ext2) left.push(`netns ${name}`);
  }
  if (existsSync(n.dir)) left.push(`dir ${n.dir}`);
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[1]?.startsWith(`${n.dir}/`) || l.split(' ')[1] === n.dir);
  for (const m of mounts) left.push(`mount ${m.split(' ')[1]}`);
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(`${n.dir}/`)) left.push(`process ${p} (${cmd.slice(0, 80)})`);
    } catch {
      // gone
    }
  }
  return left;
}

/**
 * The running lab's description, or null when no lab with that id is up. `refresh` describes a
 * dockerd lab again from its engine (containers and networks added after `lab up`).
 */
export async function labStatus(id?: string, opts: { refresh?: boolean } = {}): Promise<LabInfo | null> {
  const n = labNames(id);
  if (!existsSync(`/var/run/netns/${n.netns.host}`)) return null;
  if (!existsSync(infoPath(n))) {
    // a lab made by lab/lab.sh directly (Vagrant, compose): describe it from its dockerd
    const scen = join(n.dir, 'scenario');
    if (!existsSync(scen) || !existsSync(n.dockerSock)) return null;
    const scenario = readFileSync(scen, 'utf8').trim();
    if (scenario === 'replay') return null;
    const info = await describeDockerLab(n, scenario);
    writeFileSync(infoPath(n), JSON.stringify(info, null, 2));
    return info;
  }
  let info: LabInfo;
  try {
    info = JSON.parse(readFileSync(infoPath(n), 'utf8')) as LabInfo;
  } catch (e) {
    throw new JourneyError('E_LAB', `lab ${n.id}: unreadable ${infoPath(n)}: ${(e as Error).message}`);
  }
  if (opts.refresh && info.dockerHost !== null && info.scenario !== 'replay' && existsSync(n.dockerSock)) {
    const fresh = await describeDockerLab(n, info.scenario);
    writeFileSync(infoPath(n), JSON.stringify(fresh, null, 2));
    return fresh;
  }
  return info;
}

async function requireLab(id?: string): Promise<LabInfo> {
  const info = await labStatus(id);
  if (!info) {
    const n = labNames(id);
    throw new JourneyError(
      'E_NO_NETNS',
      `no lab is up with id "${n.id}" (namespace ${n.netns.host} missing): run 'journey lab up${n.id ? ` --id ${n.id}` : ''}'`,
    );
  }
  return info;
}

/** Where a command runs: the namespace name (host/ext/ext2) or a container's pid. */
export function whereToNetns(info: LabInfo, where: string): string | number {
  if (where === 'host' || where === 'ext' || where === 'ext2') return info.netns[where];
  const c = info.containers.find((x) => x.name === where);
  if (!c) {
    throw new JourneyError(
      'E_USAGE',
      `no "${where}" in lab ${info.id}: use host, ext, ext2 or a container (${info.containers.map((x) => x.name).join(', ')})`,
    );
  }
  return c.pid;
}

/** Runs argv inside a lab namespace: 'host', 'ext', 'ext2' or a container (its netns, by pid). */
export async function labExec(
  id: string | undefined,
  where: string,
  argv: string[],
  opts: Omit<RunOptions, 'netns'> & { readonly mount?: boolean } = {},
): Promise<RunResult> {
  let info = await requireLab(id);
  // a container started after `lab up` (docker run by hand): describe the lab again
  const known = (i: LabInfo): boolean => ['host', 'ext', 'ext2'].includes(where) || i.containers.some((c) => c.name === where);
  if (!known(info)) info = (await labStatus(id, { refresh: true })) ?? info;
  const ns = whereToNetns(info, where);
  const { mount, ...runOpts } = opts;
  // mount: a container's own file system too (its busybox), not only its network namespace
  if (mount && typeof ns === 'number') return run(['nsenter', '-t', String(ns), '-m', '-n', '--', ...argv], runOpts);
  return run(argv, { ...runOpts, netns: ns });
}

/** Runs one of the scenario's probes (bounded in time) and says whether it was answered. */
export async function runProbe(id: string | undefined, probeName: string): Promise<ProbeResult> {
  const info = await requireLab(id);
  const def = listProbes(info.scenario, info).find((p) => p.name === probeName);
  if (!def) {
    throw new JourneyError(
      'E_USAGE',
      `no probe "${probeName}" in scenario ${info.scenario} (have: ${listProbes(info.scenario, info)
        .map((p) => p.name)
        .join(', ')})`,
    );
  }
  return runProbeDef(info, def);
}

export async function runProbeDef(info: LabInfo, def: ProbeDef): Promise<ProbeResult> {
  const r = resolveProbe(info, def);
  const argv = probeArgv(r, labSourceDir());
  const t0 = Date.now();
  let res: RunResult;
  try {
    res = await run(argv, { netns: whereToNetns(info, def.from), timeoutMs: r.timeoutMs + 5_000, allowFailure: true });
  } catch (e) {
    if (!isJourneyError(e) || e.code !== 'E_TIMEOUT') throw e;
    res = { code: 124, stdout: '', stderr: 'timeout: killed' };
  }
  const out = `${res.stdout}${res.stderr}`.trim();
  const sp = (/local \S+:(\d+)/.exec(out) ?? /\(sport (\d+)\)/.exec(out))?.[1];
  const sport = sp !== undefined && Number(sp) > 0 ? Number(sp) : undefined;
  const answered = res.code === 0;
  let outcome: ProbeResult['outcome'] = 'answered';
  if (!answered) {
    if (/refused|unreach|prohibited/i.test(out)) outcome = 'refused';
    else if (/reset/i.test(out)) outcome = 'reset';
    else if (/timeout|no answer|100% packet loss|0 packets received/i.test(out) || res.code === 124) outcome = 'timeout';
    else outcome = 'error';
  }
  return {
    name: def.name,
    description: def.description,
    proto: def.proto,
    from: {
      where: def.from,
      addr: /local (\S+):\d+(?:\s|$)/.exec(out)?.[1] ?? r.srcAddr,
      ...(sport !== undefined ? { port: sport } : {}),
    },
    to: { addr: r.dst, ...(r.dport !== undefined ? { port: r.dport } : {}), ...(r.via ? { via: r.via } : {}) },
    expect: def.expect,
    answered,
    outcome,
    asExpected: (def.expect === 'answer') === answered,
    output: out.slice(0, 2000),
    durationMs: Date.now() - t0,
    argv,
  };
}

// ------------------------------------------------------------------ kernel trace

export interface TraceOptions {
  /** An nft match limiting which packets are traced, e.g. `ip saddr 10.0.10.5` or `tcp dport 8000`. */
  readonly filter?: string;
  /** How long to keep listening after the action ended (late replies), default 300 ms. */
  readonly settleMs?: number;
  /** Also return the raw `nft -a -j list ruleset`, `iptables-save` and `conntrack -L` texts (fixtures, debugging). */
  readonly keepRaw?: boolean;
}

export interface KernelTraceRaw {
  readonly rulesetJson: string;
  readonly iptablesSave: string;
  readonly conntrackText: string;
}

export const TRACE_TABLE = 'jl_trace';

/** Marker packets (host -> 127.0.0.127, dropped by the trace table before conntrack) frame a trace. */
const MARKER_ADDR = '127.0.0.127';
const isMarkerLine = (l: string): boolean => l.includes(`ip daddr ${MARKER_ADDR}`);

/**
 * Records the kernel's trace of every IPv4 packet in the lab's host namespace while `action` runs:
 * adds `table ip jl_trace` (prerouting and output chains at priority -350 doing `meta nftrace set 1`,
 * optionally limited by `filter`), runs `nft -a monitor trace`, removes the table, and returns the
 * parsed trace (per packet, each step with table, chain, hook, rule, handle, rule number, verdict)
 * plus the conntrack table (`conntrack -L -o extended,id`) as it was right after the action.
 */
export async function traceKernel<T = unknown>(
  id: string | undefined,
  action: () => Promise<T>,
  opts: TraceOptions = {},
): Promise<KernelTrace & { actionResult?: T; actionError?: string; raw?: KernelTraceRaw }> {
  const info = await requireLab(id);
  const ns = info.netns.host;
  const filter = opts.filter ? `${opts.filter} ` : '';
  await run(['nft', 'delete', 'table', 'ip', TRACE_TABLE], { netns: ns, allowFailure: true });
  await run(['nft', 'delete', 'table', 'inet', TRACE_TABLE], { netns: ns, allowFailure: true });
  // an IPv6 lab is traced by an inet table (IPv4 markers still work there)
  const fam = info.family === 6 || info.v6 ? 'inet' : 'ip';
  const table =
    `table ${fam} ${TRACE_TABLE} {\n` +
    `  chain pre { type filter hook prerouting priority -350; policy accept;\n    ${filter}meta nftrace set 1\n  }\n` +
    `  chain out { type filter hook output priority -350; policy accept;\n` +
    `    ip daddr ${MARKER_ADDR} meta nftrace set 1 drop\n    ${filter}meta nftrace set 1\n  }\n}\n`;
  // the table goes in before the monitor starts: nft monitor reads the ruleset once, at start,
  // and prints rules added later as "unknown rule handle N"
  await run(['nft', '-f', '-'], { netns: ns, input: table });
  const startedAt = new Date();
  const mon = spawn('nsenter', [`--net=/var/run/netns/${ns}`, '--', 'nft', '-a', 'monitor', 'trace'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  mon.stdout.on('data', (b: Buffer) => out.push(b));
  mon.stderr.on('data', (b: Buffer) => err.push(b));
  const exited = new Promise<void>((resolve) => mon.on('close', () => resolve()));
  const markersSeen = (): number =>
    Buffer.concat(out)
      .toString('utf8')
      .split('\n')
      .filter((l) => l.includes(' packet: ') && isMarkerLine(l)).length;
  /** Sends a marker until the monitor has printed `want` of them: everything traced before is in. */
  const syncMarker = async (want: number): Promise<void> => {
    for (let i = 0; i < 40; i++) {
      if (mon.exitCode !== null) throw new JourneyError('E_TOOL_FAILED', `nft monitor trace exited: ${Buffer.concat(err).toString().trim()}`);
      await run(['bash', '-c', `echo journey-trace-marker > /dev/udp/${MARKER_ADDR}/9`], { netns: ns, allowFailure: true });
      for (let j = 0; j < 10; j++) {
        if (markersSeen() >= want) return;
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    throw new JourneyError('E_TIMEOUT', `nft monitor trace in ${ns} printed no marker packet in 10 s`);
  };
  let actionResult: T | undefined;
  let actionError: string | undefined;
  try {
    // the monitor has subscribed once it prints a marker: no packet of the action is missed
    await syncMarker(1);
    try {
      actionResult = await action();
    } catch (e) {
      actionError = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, opts.settleMs ?? 300));
    // and all the action's events were read once a later marker is printed
    await syncMarker(markersSeen() + 1);
  } finally {
    await run(['nft', 'delete', 'table', fam, TRACE_TABLE], { netns: ns, allowFailure: true }).catch(() => undefined);
  }
  const [ct, rs, ipt] = await Promise.all([
    run(['conntrack', '-L', '-o', 'extended,id'], { netns: ns, allowFailure: true }),
    run(['nft', '-a', '-j', 'list', 'ruleset'], { netns: ns, allowFailure: true }),
    opts.keepRaw ? run(['iptables-save'], { netns: ns, allowFailure: true }) : Promise.resolve({ code: 0, stdout: '', stderr: '' }),
  ]);
  mon.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000).unref())]);
  // the markers are the tracer's own: left out of the text and of the packets
  const text = Buffer.concat(out)
    .toString('utf8')
    .split('\n')
    .filter((l) => !isMarkerLine(l))
    .join('\n');
  const conntrack: ConntrackEntry[] = parseConntrackList(ct.stdout).entries;
  const trace = parseNftTrace(text, { ruleset: rs.stdout, traceTable: TRACE_TABLE, conntrack });
  return {
    ...trace,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    ...(actionResult !== undefined ? { actionResult } : {}),
    ...(actionError !== undefined ? { actionError } : {}),
    ...(opts.keepRaw ? { raw: { rulesetJson: rs.stdout, iptablesSave: ipt.stdout.replace(/^#.*\n/gm, ''), conntrackText: ct.stdout } } : {}),
  };
}
