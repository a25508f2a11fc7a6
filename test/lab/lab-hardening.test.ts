/**
 * The lab directory as a hostile local user would prepare it: a directory made beforehand by
 * another user (mode 777), a symbolic link to another directory, pid files naming processes the
 * lab never started. `lab up` refuses the first two, `lab down` kills only what the lab started,
 * and the list `lab down --all` works from holds only labs this user made. Replay labs (no
 * dockerd) keep it quick.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labNames, labUp, leftovers } from '../../lab/driver.js';
import { labTestId } from './lab-helpers.js';

const H = labTestId('hd');
const H2 = labTestId('hd2');
const G = process.env['JOURNEY_CORPUS'] ?? fileURLToPath(new URL('../../../shared/corpus/moby-golden', import.meta.url));
const GOLDEN = `${G}/nftables/hairpin=false,internal=false,icc=true,masq=true,snat=true,gwm=nat,bindlh=false__ip.golden`;
const LAB_SH = fileURLToPath(new URL('../../lab/lab.sh', import.meta.url));
const NOBODY = 65534;

/** A root process the lab did not start (the test's victim). */
function rootSleep(): number {
  const c = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
  c.unref();
  return c.pid as number;
}
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const clear = (p: string): void => rmSync(p, { recursive: true, force: true });

describe('lab directory and pid files', () => {
  const victims: number[] = [];
  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this lab test needs root');
    await assertLabCanRun();
    await labDown(H);
    await labDown(H2);
  });
  afterAll(async () => {
    for (const p of victims) if (alive(p)) process.kill(p, 'SIGKILL');
    clear(labNames(H).dir);
    clear(labNames(H2).dir);
    await labDown(H);
    await labDown(H2);
  });

  it('a directory another user made first (mode 777, empty) is refused by lab up', async () => {
    const dir = labNames(H).dir;
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    chownSync(dir, NOBODY, NOBODY);
    await expect(labUp({ id: H, ruleset: GOLDEN })).rejects.toMatchObject({
      code: 'E_LAB',
      message: expect.stringMatching(/was not made by this lab \(owner uid 65534, mode 777/),
    });
    // nothing was written into it, and the user's directory is left to them
    expect(readdirSync(dir)).toEqual([]);
    expect(statSync(dir).uid).toBe(NOBODY);
    clear(dir);
  });

  it('a symbolic link to another directory is refused by lab up; the directory it points to stays empty', async () => {
    const dir = labNames(H).dir;
    const elsewhere = mkdtempSync(`${tmpdir()}/jl-hd-elsewhere-`);
    symlinkSync(elsewhere, dir);
    await expect(labUp({ id: H, ruleset: GOLDEN })).rejects.toMatchObject({ code: 'E_LAB', message: expect.stringMatching(/is a symbolic link/) });
    expect(readdirSync(elsewhere)).toEqual([]);
    clear(dir);
    clear(elsewhere);
  });

  it('lab up makes its directory 0700, owned by root; lab down kills only the processes the lab started', async () => {
    const n = labNames(H);
    await labUp({ id: H, ruleset: GOLDEN });
    const st = statSync(n.dir);
    expect(st.isDirectory()).toBe(true);
    expect(st.uid).toBe(0);
    expect(st.mode & 0o777).toBe(0o700);
    // pid files that name a process the lab did not start: a root sleep (as a reused pid would be)
    const v1 = rootSleep();
    const v2 = rootSleep();
    victims.push(v1, v2);
    writeFileSync(`${n.dir}/pids/planted.pid`, `${v1}\n`);
    // the pid of a process the lab started, re-used by another: its recorded start time differs
    const started = readdirSync(`${n.dir}/pids`).find((f) => f.endsWith('.start')) as string;
    writeFileSync(`${n.dir}/pids/${started.replace(/\.start$/, '.pid')}`, `${v2}\n`);
    const down = spawnSync('bash', [LAB_SH, 'down', '--id', H], { encoding: 'utf8', timeout: 120_000 });
    expect(down.status, down.stderr).toBe(0);
    expect(down.stderr).toMatch(new RegExp(`not killing pid ${v1} from .*planted\\.pid: not a process of this lab`));
    expect(down.stderr).toMatch(new RegExp(`not killing pid ${v2} from .*: not the process the lab started \\(start time differs\\)`));
    expect(alive(v1)).toBe(true);
    expect(alive(v2)).toBe(true);
    expect(await leftovers(n)).toEqual([]);
  });

  it("a directory another user prepared with pid files: lab down leaves its processes and files alone; lab down --all's list skips it", async () => {
    const n = labNames(H2);
    const v = rootSleep();
    victims.push(v);
    mkdirSync(`${n.dir}/pids`, { recursive: true });
    writeFileSync(`${n.dir}/pids/dockerd.pid`, `${v}\n`);
    writeFileSync(`${n.dir}/.journey-lab`, '0\n');
    for (const p of [n.dir, `${n.dir}/pids`, `${n.dir}/pids/dockerd.pid`, `${n.dir}/.journey-lab`]) chownSync(p, NOBODY, NOBODY);
    chmodSync(n.dir, 0o777);
    // the list `down --all` works from
    const ids = spawnSync('bash', [LAB_SH, 'ids'], { encoding: 'utf8' });
    expect(ids.stdout.split('\n')).not.toContain(H2);
    const down = spawnSync('bash', [LAB_SH, 'down', '--id', H2], { encoding: 'utf8', timeout: 120_000 });
    expect(down.status, down.stderr).toBe(0);
    expect(down.stderr).toMatch(/was not made by this lab .*left alone/);
    expect(alive(v)).toBe(true);
    expect(existsSync(`${n.dir}/pids/dockerd.pid`)).toBe(true);
    console.log('lab hardening: 2 planted directories refused, 3 planted pids left alive, 1 foreign lab skipped by the --all list');
  });
});
