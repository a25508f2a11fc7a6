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
import { parseConntrackList, parseNftTrace, type KernelTrace } from '../src/netfilter/kernel-trace.js';
import { LAB_TOPOLOGY, LAB_TOPOLOGY6, labNames, labSourceDir, resolveId, type LabNames } from './names.js';
import { probeArgv, resolveProbe, listProbes, type ProbeDef, type ProbeResult } from './probes.js';
import { replayUp } from './replay.js';

export type { KernelTrace } from '../src/netfilter/kernel-trace.js';
export type { ProbeDef, ProbeResult } from './probes.js';
export { listProbes } from './probes.js';
export { labNames } from './names.js';

export interface LabBridge {
  /** Linux bridge name (docker0, docker1, br-…). */
  readonly name: string;
  readonly subnet: string;
  readonly gateway: string;
  /** Docker network name (bridge, docker1, …); in replay mode the bridge name. */
  readonly network: string;
  readonly internal: boolean;
  /** The bridge's IPv6 subnet and gateway when the engine has IPv6 (fixed-cidr-v6). */
  readonly subnet6?: string;
  readonly gateway6?: string;
}

export interface LabPublished {
  /** Host address bound ('0.0.0.0' for all). */
  readonly hostIp: string;
  readonly hostPort: number;
  readonly proto: 'tcp' | 'udp' | 'sctp';
  readonly containerPort: number;
}

export interface LabContainer {
  readonly name: string;
  /** Docker container id; in replay mode the name. */
  readonly id: string;
  /** A process in the container's network namespace (nsenter -t PID -n). */
  readonly pid: number;
  readonly ip: string;
  /** The container's global IPv6 address when the engine has IPv6. */
  readonly ip6?: string;
  readonly network: string;
  readonly bridge: string;
  readonly published: LabPublished[];
  /** TCP/UDP ports something listens on inside the container (what probes can expect to reach). */
  readonly listens?: { readonly proto: 'tcp' | 'udp'; readonly port: number }[];
}

export interface LabInfo {
  readonly id: string;
  readonly dir: string;
  readonly netns: { readonly host: string; readonly ext: string; readonly ext2: string };
  readonly uplink: 'eth0';
  readonly hostAddr: '10.0.10.26';
  readonly extAddr: string;
  readonly ext2Addr: string;
  /** An address on the external side that stands for "the internet" (on jl-ext's lo). */
  readonly outsideAddr: string;
  /** 6 when the lab replays an IPv6 ruleset: probes then use the `v6` addresses (default 4). */
  readonly family?: 4 | 6;
  /**
   * The uplink's IPv6 addresses (fd00:10::/64, 2001:db8:ff::10 outside) of an IPv6 replay or a
   * dual-stack scenario (there IPv6 probes say so with `family: 6`).
   */
  readonly v6?: { readonly hostAddr: string; readonly extAddr: string; readonly ext2Addr: string; readonly outsideAddr: string };
  /** unix socket path of the lab's dockerd, null in replay mode. */
  readonly dockerHost: string | null;
  /** Scenario name, or 'replay'. */
  readonly scenario: string;
  readonly ruleset?: string;
  /** For replay: 'iptables' (iptables-restore) or 'nft' (nft -f). */
  readonly rulesetFormat?: 'iptables' | 'nft';
  /** Replay mode: options from a moby golden's file name (hairpin, gwm, bindlh…) and what the rules showed. */
  readonly replay?: {
    readonly options: Record<string, string>;
    readonly directAccessDropped: boolean;
    readonly hairpinNat: boolean;
    readonly sourceNat: boolean;
  };
  readonly daemon: { readonly userlandProxy: boolean; readonly icc: boolean; readonly iptables: boolean };
  readonly firewalld: boolean;
  readonly bridges: LabBridge[];
  readonly containers: LabContainer[];
}

export interface LabUpOptions {
  readonly id?: string;
  readonly scenario?: string;
  /** Replay mode: an iptables-save or nft ruleset file (no dockerd). */
  readonly ruleset?: string;
}

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

/**
 * Records the kernel's trace of every IPv4 packet in the lab's host namespace while `action` runs:
 * adds `table ip jl_trace` (prerouting and output chains at priority -350 doing `meta nftrace set 1`,
 * optionally limited by `filter`), runs `nft -a monitor trace`, removes the table, and returns the
 * parsed trace (per packet, each step with table, chain, hook, rule, handle, rule number, verdict)
 * plus the conntrack table (`conntrack -L -o extended,id`) as it was right after the action.
 */
/** Marker packets (host -> 127.0.0.127, dropped by the trace table before conntrack) frame a trace. */
const MARKER_ADDR = '127.0.0.127';
const isMarkerLine = (l: string): boolean => l.includes(`ip daddr ${MARKER_ADDR}`);

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

// ------------------------------------------------------------------ describing a docker lab

interface DockerNet {
  Name: string;
  Id: string;
  Internal: boolean;
  IPAM: { Config: { Subnet?: string; Gateway?: string }[] | null };
  EnableIPv6?: boolean;
  Options: Record<string, string> | null;
}

interface DockerContainer {
  Id: string;
  Name: string;
  State: { Pid: number; Running: boolean };
  Config: { Cmd?: string[] | null; Env?: string[] | null };
  NetworkSettings: {
    Networks: Record<string, { IPAddress: string; GlobalIPv6Address?: string }>;
    Ports: Record<string, { HostIp: string; HostPort: string }[] | null> | null;
  };
}

async function dockerJson<T>(n: LabNames, args: string[]): Promise<T> {
  const docker = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
  const res = await run([docker, ...args], { env: { ...process.env, DOCKER_HOST: `unix://${n.dockerSock}` }, timeoutMs: 30_000 });
  return JSON.parse(res.stdout) as T;
}

async function describeDockerLab(n: LabNames, scenario: string): Promise<LabInfo> {
  const daemon = JSON.parse(readFileSync(join(n.dir, 'daemon.json'), 'utf8')) as Record<string, unknown>;
  const docker = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
  const env = { ...process.env, DOCKER_HOST: `unix://${n.dockerSock}` };
  const netIds = (await run([docker, 'network', 'ls', '-q', '--filter', 'driver=bridge'], { env })).stdout.split('\n').filter(Boolean);
  const nets = netIds.length ? await dockerJson<DockerNet[]>(n, ['network', 'inspect', ...netIds]) : [];
  const bridges: LabBridge[] = nets.map((net) => {
    const cfgs = net.IPAM.Config ?? [];
    const cfg = cfgs.find((c) => !(c.Subnet ?? '').includes(':')) ?? {};
    const cfg6 = cfgs.find((c) => (c.Subnet ?? '').includes(':'));
    const name = net.Options?.['com.docker.network.bridge.name'] ?? (net.Name === 'bridge' ? 'docker0' : `br-${net.Id.slice(0, 12)}`);
    return {
      name,
      subnet: cfg.Subnet ?? '',
      gateway: cfg.Gateway ?? '',
      network: net.Name,
      internal: net.Internal,
      ...(cfg6?.Subnet ? { subnet6: cfg6.Subnet } : {}),
      ...(cfg6?.Gateway ? { gateway6: cfg6.Gateway } : {}),
    };
  });
  // the default bridge reports no gateway in its IPAM config: read it from the bridge itself
  for (const [i, b] of bridges.entries()) {
    if (b.gateway !== '') continue;
    const a = await run(['ip', '-4', '-o', 'addr', 'show', 'dev', b.name], { netns: n.netns.host, allowFailure: true });
    const m = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(a.stdout);
    if (m?.[1]) bridges[i] = { ...b, gateway: m[1] };
  }
  // the same for IPv6 (fixed-cidr-v6 on docker0): the bridge's global address
  for (const [i, b] of bridges.entries()) {
    if (b.subnet6 === undefined || b.gateway6 !== undefined) continue;
    const a = await run(['ip', '-6', '-o', 'addr', 'show', 'dev', b.name, 'scope', 'global'], { netns: n.netns.host, allowFailure: true });
    const m = /inet6 ([0-9a-f:]+)\//.exec(a.stdout);
    if (m?.[1]) bridges[i] = { ...b, gateway6: m[1] };
  }
  const ids = (await run([docker, 'ps', '-q'], { env })).stdout.split('\n').filter(Boolean);
  const cs = ids.length ? await dockerJson<DockerContainer[]>(n, ['inspect', ...ids]) : [];
  const udpFile = (name: string): string => join(n.dir, 'pids', `udp-${name}.pid`);
  const containers: LabContainer[] = cs
    .map((c) => {
      const [network, net] = Object.entries(c.NetworkSettings.Networks)[0] ?? ['', { IPAddress: '' }];
      const published: LabPublished[] = [];
      for (const [key, binds] of Object.entries(c.NetworkSettings.Ports ?? {})) {
        const [port, proto] = key.split('/');
        for (const b of binds ?? []) {
          if (b.HostIp.includes(':')) continue; // IPv6 bindings ([::]) are probed by the IPv6 probes
          published.push({
            hostIp: b.HostIp || '0.0.0.0',
            hostPort: Number(b.HostPort),
            proto: (proto ?? 'tcp') as LabPublished['proto'],
            containerPort: Number(port),
          });
        }
      }
      const name = c.Name.replace(/^\//, '');
      const listens: { proto: 'tcp' | 'udp'; port: number }[] = [];
      const portEnv = (c.Config.Env ?? []).find((e) => e.startsWith('PORT='));
      if ((c.Config.Cmd ?? []).join(' ').includes('httpd')) listens.push({ proto: 'tcp', port: portEnv ? Number(portEnv.slice(5)) : 80 });
      if (existsSync(udpFile(name))) {
        for (const p of published) if (p.proto === 'udp') listens.push({ proto: 'udp', port: p.containerPort });
      }
      return {
        name,
        id: c.Id,
        pid: c.State.Pid,
        ip: net.IPAddress,
        ...(net.GlobalIPv6Address ? { ip6: net.GlobalIPv6Address } : {}),
        network,
        bridge: bridges.find((b) => b.network === network)?.name ?? '',
        published,
        listens,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  // dual-stack: lab.sh's topology6 put the uplink's IPv6 address on eth0
  const up6 = await run(['ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0'], { netns: n.netns.host, allowFailure: true });
  const dualStack = up6.stdout.includes(`inet6 ${LAB_TOPOLOGY6.hostAddr}/`);
  return {
    id: n.id,
    dir: n.dir,
    netns: n.netns,
    ...LAB_TOPOLOGY,
    ...(dualStack ? { v6: { ...LAB_TOPOLOGY6 } } : {}),
    dockerHost: n.dockerSock,
    scenario,
    daemon: { userlandProxy: daemon['userland-proxy'] === true, icc: daemon['icc'] !== false, iptables: daemon['iptables'] !== false },
    firewalld: existsSync(join(n.dir, 'pids', 'firewalld.pid')),
    bridges,
    containers,
  };
}
