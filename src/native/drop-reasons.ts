/**
 * Drop reason names from the running kernel's own `enum skb_drop_reason` (its BTF, read by the
 * addon through libbpf), never from a table compiled into journey: kernels add and renumber them.
 * Names lose the SKB_DROP_REASON_ prefix ("NETFILTER_DROP"); SKB_CONSUMED keeps its name.
 */
import type { NativeBinding } from './binding.js';

export class DropReasons {
  private readonly names = new Map<number, string>();

  constructor(entries: readonly { value: number; name: string }[]) {
    for (const e of entries) this.names.set(e.value, e.name.replace(/^SKB_DROP_REASON_/, ''));
  }

  static fromBinding(b: NativeBinding): DropReasons {
    return new DropReasons(b.dropReasons());
  }

  name(value: number): string {
    return this.names.get(value) ?? `REASON_${value}`;
  }

  value(name: string): number | undefined {
    for (const [v, n] of this.names) if (n === name || `SKB_DROP_REASON_${n}` === name) return v;
    return undefined;
  }

  get size(): number {
    return this.names.size;
  }
}
