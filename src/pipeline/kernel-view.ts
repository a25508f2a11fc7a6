/**
 * The kernel's view of a live pipeline through eBPF (src/native): drops with the kernel's reason
 * (handed to the pipeline's DropReporter) and tuples at the netfilter hooks (the in-kernel NAT
 * proof). Never fails the pipeline: what the kernel refuses is noticed.
 */
import type { JourneyError } from '../model/errors.js';
import { type HookProof, openKernelEvents, type KernelEvents } from '../native/index.js';
import { DEFAULT_QUIET_DROP_REASONS } from './drop-reporter.js';
import type { SourceContext } from './source.js';

export class KernelView {
  private kernel: KernelEvents | null = null;
  /** Whether OTHERHOST drops are left out in the kernel (counted there, never sent). */
  private otherhostInKernel = false;

  constructor(
    private readonly ctx: SourceContext,
    private readonly hookProof: HookProof,
  ) {}

  async start(): Promise<void> {
    const ctx = this.ctx;
    const o = ctx.opts;
    try {
      const user = o.ignoreDropReasons ?? [];
      // OTHERHOST drops are never a flow's fate (the host's copies of frames a promiscuous bridge
      // forwarded, one per bridged packet): when they are quiet they are left out in the kernel,
      // which counts them, instead of crossing to JavaScript one event per packet to be counted there
      // (with reasons of the user's own the kernel's one count would mix them: OTHERHOST is then counted here)
      const quiet: readonly string[] = o.quietDropReasons ?? DEFAULT_QUIET_DROP_REASONS;
      this.otherhostInKernel = quiet.includes('OTHERHOST') && user.length === 0;
      const ignore = this.otherhostInKernel ? ['OTHERHOST'] : user;
      const k = await openKernelEvents({
        ...(o.netns !== undefined ? { netns: o.netns } : {}),
        ...(ignore.length > 0 ? { ignoreReasons: ignore } : {}),
        ...(o.hookPoints !== undefined ? { hooks: o.hookPoints } : {}),
      });
      this.kernel = k;
      for (const l of k.lost) ctx.notice(`kernel: ${l}`);
      k.onHook((hooks) => this.hookProof.add(hooks));
      k.onDrop((drops) => {
        for (const d of drops) ctx.onKernelDrop(d);
      });
      k.onLost((n) => ctx.notice(`kernel: ${n} events lost in the kernel ring buffer`));
    } catch (e) {
      // a drop reason this kernel does not know is the user's mistake: said, not worked around
      if ((e as JourneyError).code === 'E_USAGE') throw e;
      ctx.notice(`kernel: no drop reasons or hook tuples (${(e as Error).message})`, (e as JourneyError).code);
    }
  }

  async stop(): Promise<void> {
    if (this.kernel !== null && this.otherhostInKernel) {
      const n = this.kernel.stats().ignoredInKernel;
      if (n > 0) this.ctx.quietInKernel(n);
    }
    await this.kernel?.stop().catch(() => {
      // the programs are detached when the process ends anyway
    });
  }
}
