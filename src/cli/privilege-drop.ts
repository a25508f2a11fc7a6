/**
 * `-Z USER` / `--no-drop-privileges` for live watch and serve: a root journey gives up root once
 * its options are checked (src/host/drop-privileges.ts): it starts itself again as USER (default
 * `nobody`) with the capabilities this run needs, and waits for it.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { resolveDockerHost } from '../docker/client.js';
import { droppedState, planDrop, runDropped, userFromPasswd } from '../host/drop-privileges.js';
import { JourneyError } from '../model/errors.js';
import type { PipelineCliOptions } from './pipeline-options.js';

/** The user a root journey runs as when -Z is not given. */
export const DEFAULT_DROP_USER = 'nobody';

export interface DropCliOptions {
  user?: string;
  dropPrivileges: boolean;
}

export function addDropOptions(cmd: Command): Command {
  return cmd
    .option(
      '-Z, --user <name>',
      `live, as root: once started, run as this user (name or uid; default ${DEFAULT_DROP_USER}) keeping only the capabilities this run needs (docs/watch.md#privileges)`,
    )
    .option('--no-drop-privileges', 'stay root with every capability (not recommended)');
}

/**
 * Drops privileges when this is a live run by root that has not dropped yet: resolves with the
 * exit status of the dropped journey (this process only waited), or null when this process goes on.
 */
export async function dropPrivilegesIfRoot(
  o: PipelineCliOptions & DropCliOptions,
  extra: { readonly listenPort?: number } = {},
): Promise<number | null> {
  if (droppedState() !== null) {
    stopWithParent();
    return null;
  }
  if (o.read !== undefined || process.geteuid?.() !== 0) return null;
  if (o.dropPrivileges === false) {
    if (o.user !== undefined) throw new JourneyError('E_USAGE', '-Z and --no-drop-privileges contradict each other');
    return null;
  }
  const user = userFromPasswd(readFileSync('/etc/passwd', 'utf8'), o.user ?? DEFAULT_DROP_USER);
  if (user.uid === 0) return null; // -Z root: nothing to drop
  const endpoint = o.docker === false ? null : resolveDockerHost(o.dockerHost);
  const plan = planDrop(user, {
    netns: o.netns !== undefined,
    netnsByPid: o.netns !== undefined && /^\d+$/.test(o.netns),
    docker: o.docker !== false,
    ...(endpoint?.socketPath !== undefined ? { dockerSocket: endpoint.socketPath } : {}),
    ebpf: (o as { kernel?: boolean }).kernel !== false,
    lowPort: extra.listenPort !== undefined && extra.listenPort < 1024,
  });
  process.stderr.write(`journey: running as ${user.name} (uid ${user.uid}) with ${plan.caps.map((c) => `CAP_${c.toUpperCase()}`).join(', ')}\n`);
  return runDropped(plan);
}

/**
 * The dropped journey stops (normally: its trace table and capture workers go) when the process
 * that started it, and that passes Ctrl-C on, is gone: killed, it could not pass anything on.
 */
function stopWithParent(): void {
  const parent = process.ppid;
  const t = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(t);
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  t.unref();
}
