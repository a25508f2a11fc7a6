/**
 * Resolves the kernel address that freed a dropped skb to "function+0xoff" with /proc/kallsyms
 * (root sees real addresses). Loaded once, asynchronously; until it is ready, or when addresses are
 * hidden (kptr_restrict), a location stays a hex address.
 */
import { readFile } from 'node:fs/promises';

export class KernelSymbols {
  private addrs: bigint[] = [];
  private names: string[] = [];
  private ready = false;

  async load(path = '/proc/kallsyms'): Promise<void> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      return;
    }
    const rows: { a: bigint; n: string }[] = [];
    for (const line of text.split('\n')) {
      const sp1 = line.indexOf(' ');
      if (sp1 <= 0) continue;
      const type = line.charAt(sp1 + 1);
      if (type !== 't' && type !== 'T') continue;
      const a = BigInt(`0x${line.slice(0, sp1)}`);
      if (a === 0n) continue;
      const rest = line.slice(sp1 + 3);
      const tab = rest.indexOf('\t');
      rows.push({ a, n: tab < 0 ? rest : rest.slice(0, tab) });
    }
    rows.sort((x, y) => (x.a < y.a ? -1 : x.a > y.a ? 1 : 0));
    this.addrs = rows.map((r) => r.a);
    this.names = rows.map((r) => r.n);
    this.ready = rows.length > 0;
  }

  resolve(addr: bigint): string {
    if (!this.ready || addr === 0n) return `0x${addr.toString(16)}`;
    let lo = 0;
    let hi = this.addrs.length - 1;
    if (addr < (this.addrs[0] ?? 0n)) return `0x${addr.toString(16)}`;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.addrs[mid] ?? 0n) <= addr) lo = mid;
      else hi = mid - 1;
    }
    const base = this.addrs[lo] ?? 0n;
    return `${this.names[lo] ?? '?'}+0x${(addr - base).toString(16)}`;
  }
}
