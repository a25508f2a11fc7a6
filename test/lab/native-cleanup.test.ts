/**
 * Nothing stays attached: the addon's BPF links are owned by file descriptors (no pinning, no tc
 * filters), so they vanish when journey stops them — and when journey is killed (SIGKILL). Checked
 * with the kernel's own list (`bpftool link show id N`) in a throwaway namespace jl-d-cleanup.
 * With JOURNEY_NATIVE=off (the fallback run) nothing is ever attached.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/host/exec.js';
import { addonPath, loadBinding, nativeDisabled, resetBindingCache } from '../../src/native/binding.js';
import { openKernelEvents, phaseOf } from '../../src/native/index.js';

import { labTestId } from './lab-helpers.js';

const D = labTestId('d');
const NS = `jl-${D}-cleanup`;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('this lab test needs root');
  await run(['ip', 'netns', 'del', NS], { allowFailure: true });
  await run(['ip', 'netns', 'add', NS]);
});
afterAll(async () => {
  await run(['ip', 'netns', 'del', NS], { allowFailure: true });
});

/** bpf link ids held by a process, from /proc/PID/fdinfo. */
function linkIds(pid: number | 'self'): number[] {
  const ids: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (!readlinkSync(`/proc/${pid}/fd/${fd}`).includes('bpf_link')) continue;
      const m = /link_id:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.push(Number(m[1]));
    } catch {
      // fd closed meanwhile
    }
  }
  return ids;
}

/** fdinfo link_type of each bpf link a process holds, by link id. */
function linkTypes(pid: number | 'self'): Map<number, string> {
  const out = new Map<number, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (!readlinkSync(`/proc/${pid}/fd/${fd}`).includes('bpf_link')) continue;
      const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      const id = /link_id:\s*(\d+)/.exec(info)?.[1];
      const type = /link_type:\s*(\S+)/.exec(info)?.[1];
      if (id !== undefined && type !== undefined) out.set(Number(id), type);
    } catch {
      // fd closed meanwhile
    }
  }
  return out;
}

async function linkExists(id: number): Promise<boolean> {
  return (await run(['bpftool', 'link', 'show', 'id', String(id)], { allowFailure: true })).code === 0;
}

async function gone(ids: readonly number[]): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    const left = await Promise.all(ids.map(linkExists));
    if (!left.some(Boolean)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe.each(['native', 'fallback'] as const)('links die with their owner (%s)', (mode) => {
  beforeAll(() => {
    if (mode === 'fallback') process.env['JOURNEY_NATIVE'] = 'off';
    else delete process.env['JOURNEY_NATIVE'];
    resetBindingCache();
  });
  afterAll(() => {
    delete process.env['JOURNEY_NATIVE'];
    resetBindingCache();
  });

  it('stop() detaches every link', async () => {
    const before = new Set(linkIds('self'));
    const k = await openKernelEvents({ netns: NS });
    const mine = linkIds('self').filter((id) => !before.has(id));
    try {
      if (mode === 'native') {
        expect(k.lost).toEqual([]);
        // kfree_skb + 8 netfilter links (the default plan: 4 hook points x IPv4/IPv6)
        expect(mine).toHaveLength(9);
        for (const id of mine) expect(await linkExists(id)).toBe(true);
        const types = linkTypes('self');
        expect(mine.filter((id) => types.get(id) === 'netfilter')).toHaveLength(8);
        expect(mine.filter((id) => types.get(id) === 'raw_tracepoint')).toHaveLength(1);
      } else {
        expect(mine).toEqual([]);
      }
    } finally {
      await k.stop();
    }
    expect(linkIds('self').filter((id) => !before.has(id))).toEqual([]);
    expect(await gone(mine)).toBe(true);
  });

  it('a second observer of the namespace gets neighbouring priorities, on the same side of NAT', async () => {
    const a = await openKernelEvents({ netns: NS, drops: false, families: [4], hooks: 'nat' });
    const b = await openKernelEvents({ netns: NS, drops: false, families: [4], hooks: 'nat' });
    try {
      if (mode === 'fallback') {
        expect(b.hookPoints).toEqual([]);
        return;
      }
      expect(a.lost).toEqual([]);
      expect(b.lost).toEqual([]);
      expect(a.hookPoints.map((p) => p.priority)).toEqual([-101, -99, -101, -99, 1, 101, 99, 101]);
      b.hookPoints.forEach((p, i) => {
        const q = a.hookPoints[i];
        expect(p.hook).toBe(q?.hook);
        expect(p.priority).not.toBe(q?.priority);
        expect(phaseOf(p.hook, p.priority)).toBe(phaseOf(p.hook, q?.priority ?? 0));
        expect(Math.abs(p.priority - (q?.priority ?? 0))).toBe(1);
      });
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('a refused hook point is reported per point; what was accepted still works', async () => {
    if (mode === 'fallback') return;
    const b = loadBinding().binding;
    if (b === null) throw new Error('native addon not loadable');
    const hooks = [
      { pf: 2, hook: 0, priority: -101 },
      { pf: 2, hook: 4, priority: 101 },
    ];
    const first = b.kernelOpen({ netns: `/var/run/netns/${NS}`, drops: false, hooks }, () => undefined);
    // same points, no room to move: the kernel answers EBUSY for those; a free point and drops load
    const second = b.kernelOpen(
      { netns: `/var/run/netns/${NS}`, drops: true, hooks: [...hooks.map((h) => ({ ...h, maxShift: 0 })), { pf: 2, hook: 2, priority: 1 }] },
      () => undefined,
    );
    try {
      expect(first.status.hooks.map((h) => h.ok)).toEqual([true, true]);
      expect(second.status.drops).toEqual({ ok: true });
      expect(second.status.hooks.map((h) => [h.ok, h.code ?? null])).toEqual([
        [false, 'EBUSY'],
        [false, 'EBUSY'],
        [true, null],
      ]);
    } finally {
      first.close();
      second.close();
    }
  });

  it('SIGKILL of the owning process detaches every link', async () => {
    // the child leaves when its stdin closes, so a failed test never leaves it (and its links) behind
    const js = `
      process.stdin.on('end', () => process.exit(0)); process.stdin.resume();
      const off = process.env.JOURNEY_NATIVE === 'off';
      if (off) { console.log('ready'); setInterval(() => undefined, 1000); }
      else {
        const a = require(${JSON.stringify(addonPath())});
        a.kernelOpen({ netns: '/var/run/netns/${NS}', drops: true, hooks: [
          { pf: 2, hook: 0, priority: -101 }, { pf: 2, hook: 0, priority: -99 }, { pf: 2, hook: 4, priority: 101 } ] }, () => undefined);
        console.log('ready');
        setInterval(() => undefined, 1000);
      }`;
    const child = spawn(process.execPath, ['-e', js], { stdio: ['pipe', 'pipe', 'inherit'], env: process.env });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('child did not start')), 10_000);
      child.stdout.on('data', (b: Buffer) => {
        if (b.toString().includes('ready')) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const pid = child.pid ?? 0;
    const closed = new Promise((r) => child.on('close', r));
    let ids: number[] = [];
    try {
      ids = linkIds(pid);
      expect(ids).toHaveLength(nativeDisabled() ? 0 : 4);
    } finally {
      child.kill('SIGKILL');
      await closed;
    }
    expect(await gone(ids)).toBe(true);
  });
});
