/**
 * A full garbage collection on demand. Start-up (modules, the ruleset, the Docker inventory, the
 * eBPF objects) leaves tens of megabytes of garbage; left alone, V8 collects it when the first
 * traffic fills the young generation, a 10–30 ms pause in the middle of the first connections'
 * events. Collected before the capture starts, the pause falls where no packet waits for it.
 * Without `--expose-gc`, the flag is set at run time and `gc` taken from a new context (only
 * contexts made after the flag see it).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | undefined;

/** Collects all garbage now; the milliseconds it took. */
export function collectGarbageNow(): number {
  if (collect === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (typeof exposed === 'function') collect = exposed;
    else {
      setFlagsFromString('--expose-gc');
      collect = runInNewContext('gc') as () => void;
    }
  }
  const t0 = performance.now();
  collect();
  return performance.now() - t0;
}
