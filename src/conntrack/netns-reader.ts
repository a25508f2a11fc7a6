/**
 * Reads a /proc/net file as seen from another network namespace without a process per read:
 * an anchor process (`nsenter --net=NS sleep infinity`) lives in the namespace and the file is
 * read through /proc/<anchor>/net/. Without a namespace the file is read directly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, readlink, stat } from 'node:fs/promises';
import { CHILD_CAPABILITIES } from '../host/drop-privileges.js';
import { inNetns, netnsPath } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';

export class NetnsFileReader {
  private anchor: ChildProcess | null = null;
  private readonly netns: string | undefined;

  constructor(netns?: string) {
    this.netns = netns;
  }

  /** Starts the anchor and waits until it is inside the namespace. */
  async open(): Promise<void> {
    if (this.netns === undefined || this.anchor) return;
    const path = netnsPath(this.netns);
    let want: string;
    try {
      want = `net:[${(await stat(path)).ino}]`;
    } catch {
      throw new JourneyError('E_NO_NETNS', `network namespace ${this.netns} not found (${path})`);
    }
    const [cmd, ...args] = inNetns(['sleep', 'infinity'], this.netns, CHILD_CAPABILITIES.none);
    const child = spawn(cmd as string, args, { stdio: 'ignore' });
    this.anchor = child;
    child.on('error', () => undefined); // a failed spawn shows as exitCode/pid below
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null || child.pid === undefined) break;
      try {
        if ((await readlink(`/proc/${child.pid}/ns/net`)) === want) return;
      } catch {
        /* not started yet */
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    this.close();
    throw new JourneyError('E_NO_NETNS', `cannot enter network namespace ${this.netns}`);
  }

  /** Reads /proc/net/<name> in the namespace. */
  async read(name: string): Promise<string> {
    if (this.netns === undefined) return readFile(`/proc/net/${name}`, 'utf8');
    if (!this.anchor || this.anchor.exitCode !== null || this.anchor.pid === undefined) {
      this.anchor = null;
      await this.open();
    }
    return readFile(`/proc/${this.anchor?.pid ?? 'self'}/net/${name}`, 'utf8');
  }

  close(): void {
    if (this.anchor && this.anchor.exitCode === null) this.anchor.kill('SIGKILL');
    this.anchor = null;
  }
}
