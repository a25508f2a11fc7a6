/** Parent side of one capture worker: spawns the child (in the netns), reads its stream. */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync } from 'node:fs';
import { Socket, type SocketConstructorOpts } from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { CHILD_CAPABILITIES } from '../host/drop-privileges.js';
import { inNetns } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import type { FrameBatch } from '../model/observation.js';
import { MSG_ERROR, MSG_HELLO, MSG_STATS, MessageReader, type HelloMessage, type WorkerErrorMessage, type WorkerStatsMessage } from './protocol.js';
import type { WorkerConfig } from './worker-entry.js';
import { loadCaptureAddon } from './native-addon.js';

/**
 * The worker pipe: an AF_UNIX stream pair from journey's addon when it is there, so that this
 * side reads into one reused 1 MiB buffer (a message usually in one read, nothing allocated per
 * read); else the child_process 'pipe' (a fresh 64 KiB chunk per read).
 */
function workerPipe(): [number, number] | undefined {
  const l = loadCaptureAddon();
  if (!l.ok || typeof l.addon.socketPair !== 'function') return undefined;
  try {
    return l.addon.socketPair();
  } catch {
    return undefined;
  }
}

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
  /** When bytes last came from the worker (Date.now()). */
  private lastDataAt = Date.now();
  private readonly onEnd: Array<() => void> = [];

  constructor(
    readonly iface: string,
    cfg: WorkerConfig,
    netns: string | undefined,
    ev: WorkerEvents,
  ) {
    const script = workerScriptPath();
    const argv = [process.execPath, script, JSON.stringify(cfg)];
    const full = inNetns(argv, netns, CHILD_CAPABILITIES.capture);
    const pair = workerPipe();
    try {
      this.child = spawn(full[0] as string, full.slice(1), { stdio: ['pipe', 'ignore', 'pipe', pair ? pair[1] : 'pipe'] });
    } finally {
      if (pair) closeSync(pair[1]); // the child has its copy
    }
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
    // the end: the process exited ('close') and its stream is drained (our own pipe: its 'close')
    let streamDone = pair === undefined;
    let exit: [number | null, NodeJS.Signals | null] | undefined;
    const end = (): void => {
      if (!streamDone || exit === undefined || this.exited) return;
      this.exited = true;
      const [code, signal] = exit;
      if (code !== 0 && this.lastError === undefined) {
        const why = this.stderrTail.trim().split('\n').slice(-2).join(' | ');
        this.lastError = { phase: 'internal', message: `capture worker for ${iface} exited (${signal ?? code})${why ? `: ${why}` : ''}` };
        ev.error(this.lastError);
      }
      for (const f of this.onEnd.splice(0)) f();
      ev.exit(code, signal);
    };
    if (pair) {
      // `onread` (Node >= 12.?, documented for the constructor since 22) is missing from our @types/node
      const opts: SocketConstructorOpts & { onread: { buffer: Uint8Array; callback: (n: number, buf: Uint8Array) => boolean } } = {
        fd: pair[0],
        readable: true,
        writable: false,
        onread: {
          buffer: Buffer.allocUnsafe(1 << 20),
          callback: (n: number, buf: Uint8Array): boolean => {
            this.lastDataAt = Date.now();
            reader.push(Buffer.from(buf.buffer, buf.byteOffset, n));
            reader.detach(); // the read buffer is reused
            return true;
          },
        },
      };
      const sock = new Socket(opts);
      sock.on('error', () => {
        // the worker died: its exit is reported by 'close'
      });
      sock.on('close', () => {
        streamDone = true;
        end();
      });
    } else {
      (this.child.stdio[3] as Readable).on('data', (c: Buffer) => {
        this.lastDataAt = Date.now();
        reader.push(c);
      });
      (this.child.stdio[3] as Readable).on('error', () => {
        // the worker died: its exit is reported by 'close'
      });
    }
    this.child.stderr?.on('data', (c: Buffer) => {
      this.stderrTail = (this.stderrTail + c.toString()).slice(-2000);
    });
    this.child.stdin?.on('error', () => {
      // a worker that already exited cannot read "stop": its exit is reported by 'close'
    });
    this.child.on('error', (e) => {
      this.lastError = { phase: 'open', message: `cannot start capture worker for ${iface}: ${e.message}` };
      ev.error(this.lastError);
    });
    this.child.on('close', (code, signal) => {
      exit = [code, signal];
      end();
    });
  }

  /**
   * Asks the worker to flush and exit. What it still has queued for us is drained (its last
   * statistics come after it): the worker is killed only when nothing has come from it for
   * `graceMs` (it hangs), never while its backlog is still being read.
   */
  stop(graceMs = 2000): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setInterval(() => {
        if (Date.now() - this.lastDataAt > graceMs) this.child.kill('SIGKILL');
      }, 250);
      this.lastDataAt = Date.now();
      this.onEnd.push(() => {
        clearInterval(t);
        resolve();
      });
      this.child.stdin?.end('stop\n');
    });
  }
}
