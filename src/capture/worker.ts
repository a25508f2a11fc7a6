/** Parent side of one capture worker: spawns the child (in the netns), reads its stream. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { netnsPath } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import type { FrameBatch } from '../model/observation.js';
import {
  MSG_ERROR,
  MSG_HELLO,
  MSG_STATS,
  MessageReader,
  type HelloMessage,
  type WorkerErrorMessage,
  type WorkerStatsMessage,
} from './protocol.js';
import type { WorkerConfig } from './worker-entry.js';

/** The compiled worker script (next to this module in dist, or dist/ when running from sources). */
export function workerScriptPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'worker-entry.js'), join(here, '../../dist/src/capture/worker-entry.js')];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new JourneyError('E_INTERNAL', `capture worker script not found (looked at ${candidates.join(', ')}): run npm run build`);
}

export interface WorkerEvents {
  hello(h: HelloMessage): void;
  batch(b: FrameBatch): void;
  stats(s: WorkerStatsMessage): void;
  error(e: WorkerErrorMessage): void;
  exit(code: number | null, signal: NodeJS.Signals | null): void;
}

export class CaptureWorker {
  readonly child: ChildProcess;
  linkType = -1;
  hello: HelloMessage | undefined;
  lastStats: WorkerStatsMessage | undefined;
  lastError: WorkerErrorMessage | undefined;
  exited = false;
  private stderrTail = '';

  constructor(
    readonly iface: string,
    cfg: WorkerConfig,
    netns: string | undefined,
    ev: WorkerEvents,
  ) {
    const script = workerScriptPath();
    const argv = [process.execPath, script, JSON.stringify(cfg)];
    const full = netns === undefined ? argv : ['nsenter', `--net=${netnsPath(netns)}`, '--', ...argv];
    this.child = spawn(full[0] as string, full.slice(1), { stdio: ['pipe', 'ignore', 'pipe', 'pipe'] });
    const reader = new MessageReader(
      () => this.iface,
      () => this.linkType,
      (type, v) => {
        if (type === MSG_HELLO) {
          this.hello = v as HelloMessage;
          this.linkType = this.hello.linkType;
          ev.hello(this.hello);
        } else if (type === MSG_STATS) {
          this.lastStats = v as WorkerStatsMessage;
          ev.stats(this.lastStats);
        } else if (type === MSG_ERROR) {
          this.lastError = v as WorkerErrorMessage;
          ev.error(this.lastError);
        }
      },
      (b) => ev.batch(b),
    );
    (this.child.stdio[3] as Readable).on('data', (c: Buffer) => reader.push(c));
    (this.child.stdio[3] as Readable).on('error', () => {});
    this.child.stderr?.on('data', (c: Buffer) => {
      this.stderrTail = (this.stderrTail + c.toString()).slice(-2000);
    });
    this.child.stdin?.on('error', () => {});
    this.child.on('error', (e) => {
      this.lastError = { phase: 'open', message: `cannot start capture worker for ${iface}: ${e.message}` };
      ev.error(this.lastError);
    });
    // 'close': the process exited and fd 3 is drained
    this.child.on('close', (code, signal) => {
      this.exited = true;
      if (code !== 0 && this.lastError === undefined) {
        const why = this.stderrTail.trim().split('\n').slice(-2).join(' | ');
        this.lastError = { phase: 'internal', message: `capture worker for ${iface} exited (${signal ?? code})${why ? `: ${why}` : ''}` };
        ev.error(this.lastError);
      }
      ev.exit(code, signal);
    });
  }

  /** Asks the worker to flush and exit; kills it after `graceMs`. */
  stop(graceMs = 2000): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.child.kill('SIGKILL');
      }, graceMs);
      this.child.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.child.stdin?.end('stop\n');
    });
  }
}
