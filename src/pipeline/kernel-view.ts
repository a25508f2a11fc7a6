/**
 * The kernel's view of a live pipeline through eBPF (src/native): drops with the kernel's reason
 * (handed to the pipeline's DropReporter) and tuples at the netfilter hooks (the in-kernel NAT
 * proof). Never fails the pipeline: what the kernel refuses is noticed.
 */
import type { JourneyError } from '../model/errors.js';
import { type HookProof, openKernelEvents, type KernelEvents } from '../native/index.js';
import type { SourceContext } from './source.js';

export class KernelView {
  private kernel: KernelEvents | null = null;

  constructor(
    private readonly ctx: SourceContext,
    private readonly hookProof: HookProof,
  ) {}

  async start(): Promise<void> {
    const ctx = this.ctx;
    const o = ctx.opts;
    try {
      const ignore = o.ignoreDropReasons ?? [];
      const k = await openKernelEvents({
        ...(o.netns !== undefined ? { netns: o.netns } : {}),
        ...(ignore.length > 0 ? { ignoreReasons: ignore } : {}),
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
    await this.kernel?.stop().catch(() => {
      // the programs are detached when the process ends anyway
    });
  }
}
