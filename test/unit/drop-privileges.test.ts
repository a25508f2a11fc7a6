import { mkdtempSync, rmSync, chmodSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHILD_CAPABILITIES, DROPPED_ENV, droppedState, narrowArgv, planDrop, setprivArgv, userFromPasswd } from '../../src/host/drop-privileges.js';
import { inNetns } from '../../src/host/exec.js';
import { JourneyError } from '../../src/model/errors.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
const nobody = userFromPasswd(PASSWD, 'nobody');
const state = { user: 'nobody', uid: 65534, gid: 65534, caps: ['net_raw', 'net_admin'] as const };
const none = { netns: false, netnsByPid: false, docker: false, ebpf: false, lowPort: false };

describe('privilege drop: the plan and the commands', () => {
  it('finds the user by name or uid, and refuses an unknown one with E_USAGE', () => {
    expect(nobody).toEqual({ name: 'nobody', uid: 65534, gid: 65534 });
    expect(userFromPasswd(PASSWD, '65534').name).toBe('nobody');
    expect(() => userFromPasswd(PASSWD, 'nosuchuser')).toThrow(JourneyError);
  });

  it('keeps only what the run needs', () => {
    expect(planDrop(nobody, none).caps).toEqual(['net_raw', 'net_admin']);
    expect(planDrop(nobody, { ...none, netns: true }).caps).toEqual(['net_raw', 'net_admin', 'sys_admin']);
    expect(planDrop(nobody, { ...none, docker: true }).caps).toEqual(['net_raw', 'net_admin', 'sys_ptrace']);
    expect(planDrop(nobody, { ...none, ebpf: true }).caps).toEqual(['net_raw', 'net_admin', 'sys_admin', 'bpf', 'perfmon', 'syslog']);
    expect(planDrop(nobody, { ...none, lowPort: true }).caps).toContain('net_bind_service');
  });

  it("keeps the Docker socket's group, and CAP_DAC_READ_SEARCH only when a directory above it is closed to the user", () => {
    const dir = mkdtempSync(join(tmpdir(), 'journey-drop-'));
    try {
      const open = join(dir, 'open');
      const closed = join(dir, 'closed');
      mkdirSync(open);
      mkdirSync(closed);
      chmodSync(dir, 0o755);
      chmodSync(open, 0o755);
      chmodSync(closed, 0o700);
      writeFileSync(join(open, 'docker.sock'), '');
      writeFileSync(join(closed, 'docker.sock'), '');
      const a = planDrop(nobody, { ...none, dockerSocket: join(open, 'docker.sock') });
      expect(a.caps).not.toContain('dac_read_search');
      expect(a.groups).toEqual([65534, process.getgid?.() ?? 0]);
      expect(planDrop(nobody, { ...none, dockerSocket: join(closed, 'docker.sock') }).caps).toContain('dac_read_search');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('setpriv sets uid, gid, groups, the same inheritable, ambient and bounding sets, and no_new_privs', () => {
    const argv = setprivArgv({ user: nobody, groups: [65534, 106], caps: ['net_raw', 'sys_admin'] }, ['node', 'main.js']);
    expect(argv).toEqual([
      'setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--groups=65534,106',
      '--inh-caps=-all,+net_raw,+sys_admin',
      '--ambient-caps=-all,+net_raw,+sys_admin',
      '--bounding-set=-all,+net_raw,+sys_admin',
      '--no-new-privs',
      '--',
      'node',
      'main.js',
    ]);
  });

  it('narrows each started process only when journey runs dropped', () => {
    expect(droppedState({})).toBeNull();
    expect(droppedState({ [DROPPED_ENV]: JSON.stringify(state) })).toEqual(state);
    expect(narrowArgv(['nft', 'list', 'ruleset'], CHILD_CAPABILITIES.tool, null)).toEqual(['nft', 'list', 'ruleset']);
    expect(narrowArgv(['node', 'worker.js'], CHILD_CAPABILITIES.capture, state)).toEqual([
      'setpriv',
      '--inh-caps=-all,+net_raw',
      '--ambient-caps=-all,+net_raw',
      '--',
      'node',
      'worker.js',
    ]);
    expect(narrowArgv(['sleep', 'infinity'], CHILD_CAPABILITIES.none, state).slice(0, 3)).toEqual([
      'setpriv',
      '--inh-caps=-all',
      '--ambient-caps=-all',
    ]);
    // not dropped (this test process): inNetns is nsenter and the command itself
    expect(inNetns(['nft', 'list', 'ruleset'], 'jl-x-host')).toEqual(['nsenter', '--net=/var/run/netns/jl-x-host', '--', 'nft', 'list', 'ruleset']);
  });
});
