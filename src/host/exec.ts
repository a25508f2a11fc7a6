import { spawn } from 'node:child_process';
import { JourneyError } from '../model/errors.js';
import { CHILD_CAPABILITIES, type KeptCapability, narrowArgv } from './drop-privileges.js';

export interface RunOptions {
  /** Network namespace to run in: a name under /var/run/netns, a path, or a pid (uses /proc/PID/ns/net). */
  readonly netns?: string | number;
  readonly input?: string | Buffer;
  readonly timeoutMs?: number;
  /** Do not throw on a non-zero exit status. */
  readonly allowFailure?: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The path of a network namespace given by name, path or pid. */
export function netnsPath(ns: string | number): string {
  if (typeof ns === 'number' || /^\d+$/.test(ns)) return `/proc/${ns}/ns/net`;
  return ns.includes('/') ? ns : `/var/run/netns/${ns}`;
}

/**
 * argv prefixed so that it runs inside `netns` (nsenter keeps the mount namespace, unlike `ip netns
 * exec`); when journey runs with dropped privileges, the command keeps only `caps` (a system tool's
 * CAP_NET_ADMIN by default) while nsenter uses journey's CAP_SYS_ADMIN to enter the namespace.
 */
export function inNetns(argv: readonly string[], netns?: string | number, caps: readonly KeptCapability[] = CHILD_CAPABILITIES.tool): string[] {
  const narrowed = narrowArgv(argv, caps);
  return netns === undefined ? narrowed : ['nsenter', `--net=${netnsPath(netns)}`, '--', ...narrowed];
}

/**
 * Runs a system tool and collects its output. Errors: E_TOOL_MISSING when the binary is absent,
 * E_TIMEOUT after `timeoutMs` (default 30 s), E_TOOL_FAILED on a non-zero status unless allowed.
 */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = inNetns(argv, opts.netns);
  const [cmd, ...args] = full;
  if (cmd === undefined) throw new JourneyError('E_USAGE', 'run: empty command');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        e.code === 'ENOENT'
          ? new JourneyError('E_TOOL_MISSING', `${cmd} is not installed (run scripts/setup)`, { cmd })
          : new JourneyError('E_TOOL_FAILED', `${cmd}: ${e.message}`, { cmd }, { cause: e }),
      );
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res = { code: code ?? 128, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (timedOut) {
        reject(new JourneyError('E_TIMEOUT', `${full.join(' ')} did not finish in ${opts.timeoutMs ?? 30_000} ms`, { argv: full }));
      } else if (res.code !== 0 && !opts.allowFailure) {
        const why = res.stderr.trim().split('\n').slice(-3).join(' | ') || `signal ${signal ?? 'none'}`;
        reject(new JourneyError('E_TOOL_FAILED', `${full.join(' ')} exited ${res.code}: ${why}`, { argv: full, ...res }));
      } else {
        resolve(res);
      }
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
