/**
 * Run without privilege, journey names the real cause (E_NOT_ROOT, the missing capabilities, exit
 * status 3) instead of a symptom: E_NO_NETNS for a namespace it may not enter, E_CONNTRACK EACCES,
 * nsenter's raw EPERM from `lab exec`. A replay needs no privilege and still works.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { effectiveCapabilities, missingCapabilities } from '../../src/host/privilege.js';

const CLI = new URL('../../dist/src/cli/main.js', import.meta.url).pathname;
const PCAP = new URL('../fixtures/pcap/c1b-eth.pcap', import.meta.url).pathname;

function asNobody(args: string[]): { status: number | null; stderr: string } {
  if (process.geteuid?.() !== 0) throw new Error('this test needs root to drop to nobody (CI runs as root)');
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stderr: r.stderr };
}

describe('capabilities from /proc/self/status', () => {
  it('reads CapEff and names what is missing', () => {
    const none = effectiveCapabilities('Name:\tx\nCapEff:\t0000000000000000\n');
    expect(missingCapabilities(['CAP_NET_RAW', 'CAP_NET_ADMIN'], none)).toEqual(['CAP_NET_RAW', 'CAP_NET_ADMIN']);
    const raw = effectiveCapabilities('CapEff:\t0000000000002000\n');
    expect(missingCapabilities(['CAP_NET_RAW', 'CAP_NET_ADMIN'], raw)).toEqual(['CAP_NET_ADMIN']);
    expect(missingCapabilities(['CAP_SYS_ADMIN'], effectiveCapabilities('CapEff:\t000001ffffffffff\n'))).toEqual([]);
  });
});

describe('as an unprivileged user', () => {
  it('live watch and serve: E_NOT_ROOT naming the capabilities, exit 3', () => {
    for (const args of [['watch'], ['watch', '--netns', 'jl-host'], ['serve', '--port', '0']]) {
      const r = asNobody(args);
      expect(r.stderr, args.join(' ')).toMatch(
        /E_NOT_ROOT: a live capture needs root \(or CAP_NET_RAW, CAP_NET_ADMIN.*\); this process \(uid 65534\) lacks CAP_NET_RAW/,
      );
      expect(r.status, args.join(' ')).toBe(3);
    }
  });
  it('lab exec: E_NOT_ROOT, exit 3, not a raw nsenter error', () => {
    const r = asNobody(['lab', 'exec', 'host', 'ip', 'addr']);
    expect(r.stderr).toMatch(/^journey: E_NOT_ROOT: lab exec enters the lab's network namespaces/);
    expect(r.status).toBe(3);
  });
  it('a replay needs no privilege', () => {
    const r = asNobody(['watch', '-r', PCAP, '--json']);
    expect(r.status, r.stderr).toBe(0);
  });
});
