/**
 * The addon's own argument checks (they fail before the kernel is asked, so no root is needed) and
 * the drop-reason table it reads from the running kernel's BTF. Runs when the addon is enabled;
 * with JOURNEY_NATIVE=off the addon is not under test (the fallback suite covers that path).
 */
import { describe, expect, it } from 'vitest';
import { loadBinding, nativeDisabled, type NativeBinding } from '../../src/native/binding.js';

function binding(): NativeBinding {
  const { binding: b, error } = loadBinding();
  if (b === null) throw new Error(`native addon not loadable: ${error}`);
  return b;
}

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
};

describe.runIf(!nativeDisabled())('native addon', () => {
  it('reads enum skb_drop_reason from the kernel BTF', () => {
    const reasons = binding().dropReasons();
    const names = new Map(reasons.map((r) => [r.name, r.value]));
    expect(names.get('SKB_NOT_DROPPED_YET')).toBe(0);
    expect(names.has('SKB_CONSUMED')).toBe(true);
    expect(names.has('SKB_DROP_REASON_NETFILTER_DROP')).toBe(true);
    expect(names.has('SKB_DROP_REASON_NO_SOCKET')).toBe(true);
    expect(reasons.length).toBeGreaterThan(20);
  });
  it('refuses bad arguments with EINVAL/E2BIG/ENOENT, before loading anything', () => {
    const b = binding();
    const noop = (): void => undefined;
    expect(code(() => (b.kernelOpen as unknown as (a: unknown, c: unknown) => unknown)({}, 42))).toBe('EINVAL');
    expect(code(() => (b.kernelOpen as unknown as (a: unknown) => unknown)('x'))).toBe('EINVAL');
    expect(code(() => b.kernelOpen({ hooks: [{ pf: 3, hook: 0, priority: 1 }] }, noop))).toBe('EINVAL');
    expect(code(() => b.kernelOpen({ hooks: [{ pf: 2, hook: 9, priority: 1 }] }, noop))).toBe('EINVAL');
    const five = [1, 2, 3, 4, 5].map((p) => ({ pf: 2, hook: 0, priority: p }));
    expect(code(() => b.kernelOpen({ hooks: five }, noop))).toBe('E2BIG');
    const many = Array.from({ length: 33 }, (_, i) => ({ pf: 2, hook: i % 5, priority: i }));
    expect(code(() => b.kernelOpen({ hooks: many }, noop))).toBe('E2BIG');
    expect(code(() => b.kernelOpen({ filter: { addr: Buffer.alloc(5) } }, noop))).toBe('EINVAL');
    expect(code(() => b.kernelOpen({ netns: '/nonexistent/ns', hooks: [] }, noop))).toBe('ENOENT');
    expect(code(() => (b.conntrackOpen as unknown as (a: unknown, c: unknown) => unknown)({}, null))).toBe('EINVAL');
    expect(code(() => b.conntrackDump({ netns: '/nonexistent/ns' }))).toBe('ENOENT');
  });
  it('exports a realtime-monotonic clock offset', () => {
    const off = binding().clockOffsetNs();
    const up = Number(process.hrtime.bigint()); // monotonic, like bpf_ktime_get_ns
    expect(Math.abs((off + up) / 1e6 - Date.now())).toBeLessThan(1000);
  });
});
