/**
 * Files journey writes as root: `-w` never follows a link someone else planted, creates 0600,
 * and a file that cannot be written is an error with a non-zero exit status.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lchownSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openOutputFile } from '../../src/capture/output-file.js';
import { closeSync } from 'node:fs';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/src/cli/main.js');
const PCAP = join(ROOT, 'test/fixtures/pcap/c1b-eth.pcap');
const isRoot = process.geteuid?.() === 0;
const tmp = mkdtempSync(join(tmpdir(), 'journey-files-'));
/** A sticky world-writable directory, like /tmp. */
const sticky = join(tmp, 'sticky');
mkdirSync(sticky);
chmodSync(sticky, 0o1777);

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
};

describe('-w FILE', () => {
  it('creates a new file 0600', () => {
    const p = join(sticky, 'new.pcapng');
    closeSync(openOutputFile(p));
    expect(statSync(p).mode & 0o777).toBe(0o600);
  });

  it("refuses a link another user planted (the root-only file it points to stays as it was); follows the user's own link", () => {
    const victim = join(tmp, 'root-only');
    writeFileSync(victim, 'secret\n', { mode: 0o600 });
    const planted = join(sticky, 'planted.pcapng');
    symlinkSync(victim, planted);
    if (!isRoot) throw new Error('this test needs root to give the link to another user (CI runs as root)');
    lchownSync(planted, 65534, 65534);
    expect(code(() => openOutputFile(planted))).toBe('E_CAPTURE');
    expect(() => openOutputFile(planted)).toThrow(/symbolic link owned by uid 65534.*refusing to follow/);
    expect(readFileSync(victim, 'utf8')).toBe('secret\n');
    // the CLI: exit status of E_CAPTURE (9), nothing written through the link
    const r = spawnSync(process.execPath, [CLI, 'watch', '-r', PCAP, '-w', planted, '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toMatch(/E_CAPTURE: --write .*planted\.pcapng: is a symbolic link/);
    expect(r.status).toBe(9);
    expect(readFileSync(victim, 'utf8')).toBe('secret\n');
    // a link the user made is the user's choice
    const own = join(sticky, 'own.pcapng');
    const target = join(tmp, 'own-target.pcapng');
    symlinkSync(target, own);
    closeSync(openOutputFile(own));
    expect(existsSync(target)).toBe(true);
  });

  it('a file that cannot be written: E_CAPTURE and a non-zero exit, not a notice', () => {
    const r = spawnSync(process.execPath, [CLI, 'watch', '-r', PCAP, '-w', join(tmp, 'no/such/dir/x.pcapng'), '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.stderr).toMatch(/E_CAPTURE: --write .*x\.pcapng: cannot write \(ENOENT\)/);
    expect(r.status).toBe(9);
    // a write that fails after the open (a full device): the run's exit status says so
    if (existsSync('/dev/full')) {
      const full = join(tmp, 'full');
      symlinkSync('/dev/full', full);
      const r2 = spawnSync(process.execPath, [CLI, 'watch', '-r', PCAP, '-w', full, '--json'], { encoding: 'utf8', timeout: 60_000 });
      expect(r2.stderr).toMatch(/E_CAPTURE: --write .*full: ENOSPC/);
      expect(r2.status).toBe(9);
    }
  });
});
