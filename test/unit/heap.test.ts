import { describe, expect, it } from 'vitest';
import { collectGarbageNow } from '../../src/host/heap.js';

describe('collectGarbageNow', () => {
  it('collects an object nothing refers to, without --expose-gc', async () => {
    const ref = (() => new WeakRef({ rows: new Array(100_000).fill(1) }))();
    // a WeakRef keeps its target for the job that made it: the check runs in a later one
    await new Promise((r) => setImmediate(r));
    const ms = collectGarbageNow();
    expect(ms).toBeGreaterThanOrEqual(0);
    expect(ref.deref()).toBeUndefined();
    // again: the collector found the first time is reused
    const again = (() => new WeakRef({ rows: new Array(100_000).fill(2) }))();
    await new Promise((r) => setImmediate(r));
    collectGarbageNow();
    expect(again.deref()).toBeUndefined();
  });
});
