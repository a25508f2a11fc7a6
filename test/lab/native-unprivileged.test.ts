/**
 * When the kernel refuses (here: journey run as an unprivileged user, bpf() and the conntrack
 * multicast groups answer EPERM), journey says what it lost — "no drop reasons: eBPF unavailable:
 * EPERM (...)" — and carries on: the kernel session is empty, the netlink conntrack source refuses
 * at construction with E_NATIVE so src/conntrack/select.ts can fall back. Runs the built tree (dist/,
 * made by scripts/setup / npm run build) as user nobody; native and fallback runs.
 */
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/native/binding.js';

const root = projectRoot();
const dist = join(root, 'dist', 'src', 'native', 'index.js');

function assertBuilt(): void {
  if (!existsSync(dist)) throw new Error(`${dist} missing: run npm run build`);
  for (const f of ['index', 'kernel-events', 'binding']) {
    const src = statSync(join(root, 'src', 'native', `${f}.ts`)).mtimeMs;
    const out = statSync(join(root, 'dist', 'src', 'native', `${f}.js`)).mtimeMs;
    if (out < src) throw new Error(`dist/src/native/${f}.js is older than its source: run npm run build`);
  }
}

const script = `
  const m = await import(${JSON.stringify(dist)});
  const k = await m.openKernelEvents({});
  const out = { lost: k.lost, available: k.available };
  await k.stop();
  const { createNetlinkConntrackSource } = await import(${JSON.stringify(join(root, 'dist', 'src', 'conntrack', 'netlink-source.js'))});
  try { createNetlinkConntrackSource({}); out.ct = 'ok'; } catch (e) { out.ct = e.code + ': ' + e.message; }
  console.log(JSON.stringify(out));`;

describe.each(['native', 'fallback'] as const)('unprivileged (%s)', (mode) => {
  it('says what it lost and carries on', async () => {
    if (process.getuid?.() !== 0) throw new Error('this lab test needs root (to drop to nobody)');
    assertBuilt();
    const env = { ...process.env, ...(mode === 'fallback' ? { JOURNEY_NATIVE: 'off' } : { JOURNEY_NATIVE: '' }) };
    const { stdout } = await promisify(execFile)(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script],
      { env, timeout: 30_000 },
    );
    const out = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { lost: string[]; available: { drops: boolean; hooks: boolean }; ct: string };
    expect(out.available).toEqual({ drops: false, hooks: false });
    expect(out.lost).toHaveLength(2);
    expect(out.ct).toMatch(/^E_NATIVE: netlink conntrack unavailable: /);
    if (mode === 'native') {
      expect(out.lost[0]).toBe('no drop reasons: eBPF unavailable: EPERM (needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN)');
      expect(out.lost[1]).toMatch(/^no NAT proof at the netfilter hooks: eBPF unavailable: EPERM/);
      expect(out.ct).toMatch(/EPERM/);
    } else {
      expect(out.lost[0]).toMatch(/turned off/);
    }
  });
});
