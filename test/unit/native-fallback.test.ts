/**
 * When the addon is missing, unloadable or turned off, journey says what it lost and carries on:
 * openKernelEvents never throws for an unavailable kernel, the netlink conntrack source refuses with
 * E_NATIVE (so src/conntrack/select.ts falls back), and nothing is delivered.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createNetlinkConntrackSource } from '../../src/conntrack/netlink-source.js';
import { isJourneyError } from '../../src/model/errors.js';
import { resetBindingCache } from '../../src/native/binding.js';
import { nativeAvailability, openKernelEvents } from '../../src/native/index.js';

const saved = { native: process.env['JOURNEY_NATIVE'], addon: process.env['JOURNEY_NATIVE_ADDON'] };
afterEach(() => {
  for (const [k, v] of [
    ['JOURNEY_NATIVE', saved.native],
    ['JOURNEY_NATIVE_ADDON', saved.addon],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  resetBindingCache();
});

const cases: [string, () => void, RegExp][] = [
  [
    'JOURNEY_NATIVE=off',
    () => {
      process.env['JOURNEY_NATIVE'] = 'off';
    },
    /turned off/,
  ],
  [
    'addon missing',
    () => {
      delete process.env['JOURNEY_NATIVE'];
      process.env['JOURNEY_NATIVE_ADDON'] = '/nonexistent/journey_native.node';
    },
    /not built/,
  ],
  [
    'addon unloadable (garbage file)',
    () => {
      const f = join(mkdtempSync(join(tmpdir(), 'jn-bad-')), 'journey_native.node');
      writeFileSync(f, 'not an ELF object');
      delete process.env['JOURNEY_NATIVE'];
      process.env['JOURNEY_NATIVE_ADDON'] = f;
    },
    /failed to load/,
  ],
];

describe.each(cases)('fallback: %s', (_name, arrange, why) => {
  it('nativeAvailability says why', () => {
    arrange();
    resetBindingCache();
    const a = nativeAvailability();
    expect(a.available).toBe(false);
    expect(a.reason).toMatch(why);
  });
  it('openKernelEvents: lost names what is missing, no throw, no events', async () => {
    arrange();
    resetBindingCache();
    const k = await openKernelEvents({ filter: { proto: 'tcp', port: 8000 } });
    expect(k.available).toEqual({ drops: false, hooks: false });
    expect(k.lost).toHaveLength(2);
    expect(k.lost[0]).toMatch(/^no drop reasons: eBPF unavailable: /);
    expect(k.lost[1]).toMatch(/^no NAT proof at the netfilter hooks: eBPF unavailable: /);
    expect(k.lost.join('\n')).toMatch(why);
    let got = 0;
    k.onDrop((d) => (got += d.length));
    k.onHook((h) => (got += h.length));
    await k.stop();
    expect(got).toBe(0);
    expect(k.stats().delivered).toBe(0);
  });
  it('drops only: one notice', async () => {
    arrange();
    resetBindingCache();
    const k = await openKernelEvents({ hooks: 'none' });
    expect(k.lost).toEqual([expect.stringMatching(/^no drop reasons: eBPF unavailable: /)]);
  });
  it('the netlink conntrack source refuses with E_NATIVE', () => {
    arrange();
    resetBindingCache();
    let err: unknown = null;
    try {
      createNetlinkConntrackSource({});
    } catch (e) {
      err = e;
    }
    expect(isJourneyError(err) && err.code).toBe('E_NATIVE');
  });
});

describe('bad options fail before the kernel is asked', () => {
  it('a missing namespace is E_NO_NETNS, a bad filter E_USAGE', async () => {
    await expect(openKernelEvents({ netns: 'jl-d-does-not-exist' })).rejects.toMatchObject({ code: 'E_NO_NETNS' });
    await expect(openKernelEvents({ filter: { port: 0 } })).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(openKernelEvents({ hooks: [{ family: 4, hook: 'prerouting', priority: 2147483647 }] })).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(openKernelEvents({ hooks: 'before-nat' as never })).rejects.toMatchObject({ code: 'E_USAGE' });
  });
  it('watch --hook-points with an unknown plan: a usage error naming the plans, exit 2', () => {
    const root = new URL('../..', import.meta.url).pathname;
    const r = spawnSync(
      process.execPath,
      [join(root, 'dist/src/cli/main.js'), 'watch', '--hook-points', 'both', '-r', join(root, 'test/fixtures/pcap/c1b-eth.pcap')],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(r.stderr).toMatch(/--hook-points: unknown plan "both" \(after-nat, nat\)/);
    expect(r.status).toBe(2);
  });
});
