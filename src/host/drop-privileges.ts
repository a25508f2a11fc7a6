/**
 * journey's privilege drop for live watch/serve (`-Z USER`, like tcpdump's): a root journey starts
 * itself again under `setpriv` as USER (default `nobody`) with only the capabilities this run needs,
 * raised as ambient capabilities so that the processes it starts can be given theirs; then the root
 * process gives up its own (it becomes USER with none) and only waits, passing signals on.
 *
 * Node cannot change capabilities in place (and a setuid there would change one thread's), so the
 * drop happens at an exec: every thread of the new process starts with the reduced sets. Each
 * process journey starts later is narrowed again (narrowArgv): a capture worker keeps CAP_NET_RAW,
 * a system tool (nft, iptables-save, conntrack, ip) CAP_NET_ADMIN, an anchor process none.
 * The dropped journey and everything it starts run with no_new_privs: a setuid-root or
 * file-capability binary executed by any of them gains nothing (the bounding set of a child cannot
 * be narrowed further without CAP_SETPCAP, so this is what keeps a child to its ambient set).
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname } from 'node:path';
import { JourneyError } from '../model/errors.js';

/** The capabilities a dropped journey may keep (names as setpriv spells them). */
export const KEPT_CAPABILITIES = [
  'net_raw',
  'net_admin',
  'sys_admin',
  'sys_ptrace',
  'dac_read_search',
  'bpf',
  'perfmon',
  'syslog',
  'net_bind_service',
] as const;
export type KeptCapability = (typeof KEPT_CAPABILITIES)[number];

/** What each kind of process started after the drop keeps. */
export const CHILD_CAPABILITIES = {
  /** a capture worker: its packet socket */
  capture: ['net_raw'],
  /** nft, iptables-save, conntrack, ip: netlink requests on the namespace's tables */
  tool: ['net_admin'],
  /** a process that only holds a namespace open */
  none: [],
} as const satisfies Record<string, readonly KeptCapability[]>;

/** The environment variable that tells the restarted journey it runs dropped (JSON DroppedState). */
export const DROPPED_ENV = 'JOURNEY_DROPPED';

export interface DroppedState {
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
  readonly caps: readonly KeptCapability[];
}

/** The drop this process runs under, or null when it was not dropped. */
export function droppedState(env: NodeJS.ProcessEnv = process.env): DroppedState | null {
  const v = env[DROPPED_ENV];
  if (v === undefined) return null;
  try {
    return JSON.parse(v) as DroppedState;
  } catch {
    return null; // not ours: nothing to narrow
  }
}

/** argv to start with only `caps` (as ambient capabilities) when journey runs dropped; argv itself otherwise. */
export function narrowArgv(argv: readonly string[], caps: readonly KeptCapability[], state = droppedState()): string[] {
  if (state === null) return [...argv];
  const set = `-all${caps.map((c) => `,+${c}`).join('')}`;
  return ['setpriv', `--inh-caps=${set}`, `--ambient-caps=${set}`, '--', ...argv];
}

export interface UserEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** A user from the passwd database text (name or number), or E_USAGE. */
export function userFromPasswd(passwd: string, who: string): UserEntry {
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === who || uid === who) return { name, uid: Number(uid), gid: Number(gid) };
  }
  throw new JourneyError('E_USAGE', `-Z ${who}: no such user`);
}

export interface DropNeeds {
  /** Entering another network namespace (nsenter, the netlink socket): CAP_SYS_ADMIN. */
  readonly netns: boolean;
  /** A namespace given by pid: its /proc/PID/ns/net is another user's (CAP_SYS_PTRACE). */
  readonly netnsByPid: boolean;
  /** docker-proxy's sockets and namespace are read from its /proc/PID (CAP_SYS_PTRACE). */
  readonly docker: boolean;
  /** The Docker API socket path (its group is kept; a directory USER cannot search needs CAP_DAC_READ_SEARCH). */
  readonly dockerSocket?: string;
  /** eBPF drop reasons and NAT at the hooks: CAP_BPF, CAP_PERFMON, CAP_SYSLOG (kallsyms). */
  readonly ebpf: boolean;
  /** A listening port below 1024: CAP_NET_BIND_SERVICE. */
  readonly lowPort: boolean;
}

export interface DropPlan {
  readonly user: UserEntry;
  readonly groups: readonly number[];
  readonly caps: readonly KeptCapability[];
}

/** Whether `user` with `groups` may search (x) every directory above `path`. */
function canSearchTo(path: string, user: UserEntry, groups: readonly number[]): boolean {
  for (let d = dirname(path); ; d = dirname(d)) {
    const st = statSync(d, { throwIfNoEntry: false });
    if (st === undefined) return true; // nothing there to refuse: the connection will say what is wrong
    const ok = st.uid === user.uid ? (st.mode & 0o100) !== 0 : groups.includes(st.gid) ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0;
    if (!ok) return false;
    if (d === '/') return true;
  }
}

/** The capabilities and groups the dropped process keeps for this run. */
export function planDrop(user: UserEntry, needs: DropNeeds): DropPlan {
  const caps = new Set<KeptCapability>(['net_raw', 'net_admin']);
  const groups: number[] = [user.gid];
  if (needs.netns) caps.add('sys_admin');
  if (needs.netnsByPid || needs.docker) caps.add('sys_ptrace');
  if (needs.ebpf) for (const c of ['bpf', 'perfmon', 'syslog', 'sys_admin'] as const) caps.add(c);
  if (needs.lowPort) caps.add('net_bind_service');
  if (needs.dockerSocket !== undefined) {
    const st = statSync(needs.dockerSocket, { throwIfNoEntry: false });
    if (st !== undefined && !groups.includes(st.gid)) groups.push(st.gid);
    if (!canSearchTo(needs.dockerSocket, user, groups)) caps.add('dac_read_search');
  }
  return { user, groups, caps: KEPT_CAPABILITIES.filter((c) => caps.has(c)) };
}

/** setpriv's arguments that start argv as the plan says. */
export function setprivArgv(plan: DropPlan, argv: readonly string[]): string[] {
  const set = `-all${plan.caps.map((c) => `,+${c}`).join('')}`;
  return [
    'setpriv',
    `--reuid=${plan.user.uid}`,
    `--regid=${plan.user.gid}`,
    `--groups=${plan.groups.join(',')}`,
    `--inh-caps=${set}`,
    `--ambient-caps=${set}`,
    `--bounding-set=${set}`,
    // no process below may gain a capability or uid again through a setuid or file-capability binary
    '--no-new-privs',
    '--',
    ...argv,
  ];
}

/**
 * Starts this same command again under the plan and waits for it: resolves with its exit status
 * (128 + signal number when a signal ended it). Right after the start this process becomes the user
 * too (its capabilities go with uid 0) and passes SIGINT/SIGTERM/SIGHUP on.
 */
export function runDropped(plan: DropPlan): Promise<number> {
  const state: DroppedState = { user: plan.user.name, uid: plan.user.uid, gid: plan.user.gid, caps: plan.caps };
  const [cmd, ...args] = setprivArgv(plan, [process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  // a process group of its own: a terminal's Ctrl-C (sent to the whole foreground group) reaches it
  // once, passed on by this process, not twice (a second Ctrl-C means "leave now")
  const child = spawn(cmd as string, args, { stdio: 'inherit', detached: true, env: { ...process.env, [DROPPED_ENV]: JSON.stringify(state) } });
  const pass = (sig: NodeJS.Signals) => () => {
    child.kill(sig);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, pass(sig));
  return new Promise((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new JourneyError(
          e.code === 'ENOENT' ? 'E_TOOL_MISSING' : 'E_TOOL_FAILED',
          `-Z ${plan.user.name}: cannot start setpriv (${e.message}); run scripts/setup, or --no-drop-privileges`,
        ),
      ),
    );
    child.once('spawn', () => {
      // the waiting process keeps nothing: setgroups/setgid/setuid from 0 clear every capability
      process.setgroups?.([plan.user.gid]);
      process.setgid?.(plan.user.gid);
      process.setuid?.(plan.user.uid);
    });
    child.once('exit', (code, signal) => {
      resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal]));
    });
  });
}
