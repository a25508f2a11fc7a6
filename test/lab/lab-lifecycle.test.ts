/**
 * The lab's life cycle: it refuses loudly without root, two labs coexist under different ids,
 * `lab down` is idempotent and cleans up after a crash (processes killed, pid files stale), the
 * CLI speaks JSON, and nothing is ever made in the default network namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { assertLabCanRun, labDown, labNames, labStatus, labUp, leftovers, listProbes, runProbe } from '../../lab/driver.js';

import { labTestId } from './lab-helpers.js';

const A = labTestId('a');
const A1 = labTestId('a1');
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = `${ROOT}dist/src/cli/main.js`;
const G = process.env['JOURNEY_CORPUS'] ?? fileURLToPath(new URL('../../../shared/corpus/moby-golden', import.meta.url));
const GOLDEN = `${G}/nftables/hairpin=false,internal=false,icc=true,masq=true,snat=true,gwm=nat,bindlh=false__ip.golden`;

const defaultNsLinks = (): string =>
  execFileSync('ip', ['-o', 'link', 'show'])
    .toString()
    .split('\n')
    .map((l) => l.split(':')[1]?.trim() ?? '')
    .sort()
    .join(' ');

function cli(args: string[], uid?: number): { status: number; stdout: string; stderr: string } {
  const argv =
    uid === undefined ? [CLI, ...args] : ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', process.execPath, CLI, ...args];
  const r = spawnSync(uid === undefined ? process.execPath : 'setpriv', argv, { encoding: 'utf8', timeout: 240_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('lab life cycle', () => {
  let linksBefore = '';
  beforeAll(async () => {
    await assertLabCanRun();
    expect(existsSync(CLI), 'the CLI is built (npm run build)').toBe(true);
    await labDown(A);
    await labDown(A1);
    linksBefore = defaultNsLinks();
  });
  afterAll(async () => {
    await labDown(A);
    await labDown(A1);
  });

  it('refuses loudly without root (E_NOT_ROOT, exit 3)', () => {
    const r = cli(['lab', 'up', '--id', A], 65534);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/E_NOT_ROOT: .*root/);
  });

  it('two labs coexist (a scenario with dockerd and a replay), each answering on its own', async () => {
    const a = await labUp({ id: A, scenario: 'default' });
    const a1 = await labUp({ id: A1, ruleset: GOLDEN });
    expect(a.netns.host).toBe(`jl-${A}-host`);
    expect(a1.netns.host).toBe(`jl-${A1}-host`);
    expect((await runProbe(A, 'ext-to-published')).answered).toBe(true);
    expect((await runProbe(A1, 'ext-to-tcp-8080')).answered).toBe(true);
    // a second `up` for an id that is up is refused, and leaves the running lab alone
    await expect(labUp({ id: A1, scenario: 'default' })).rejects.toMatchObject({ code: 'E_LAB' });
    expect((await runProbe(A1, 'ext-to-tcp-8080')).answered).toBe(true);
    await labDown(A1);
    expect(await leftovers(labNames(A1))).toEqual([]);
    // the other lab is untouched
    expect((await runProbe(A, 'ext-to-published')).answered).toBe(true);
  });

  it('status --json and traffic --json through the CLI', () => {
    const s = cli(['lab', 'status', '--id', A, '--json']);
    expect(s.status).toBe(0);
    const info = JSON.parse(s.stdout) as { scenario: string; containers: { name: string; published: { hostPort: number }[] }[] };
    expect(info.scenario).toBe('default');
    expect(info.containers.find((c) => c.name === 'web')?.published[0]?.hostPort).toBe(8000);
    const t = cli(['lab', 'traffic', '--id', A, '--json', 'ext-to-published', 'unpublished-port']);
    expect(t.status, t.stderr).toBe(0);
    const res = JSON.parse(t.stdout) as { name: string; answered: boolean; outcome: string }[];
    expect(res.map((r) => [r.name, r.answered, r.outcome])).toEqual([
      ['ext-to-published', true, 'answered'],
      ['unpublished-port', false, 'refused'],
    ]);
    expect(cli(['lab', 'status', '--id', 'zz9', '--json']).stdout.trim()).toBe('null');
    // exec in a container: its network namespace, and with --mnt its own busybox too
    const ip = cli(['lab', 'exec', '--id', A, 'client', 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(ip.stdout).toContain('inet 172.17.0.3/16');
    // `WHERE -- CMD`: the separator is journey's, not passed on to nsenter
    const sep = cli(['lab', 'exec', '--id', A, 'client', '--', 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(sep.status, sep.stderr).toBe(0);
    expect(sep.stdout).toContain('inet 172.17.0.3/16');
    const wget = cli(['lab', 'exec', '--id', A, '--mnt', 'client', 'wget', '-q', '-O-', 'http://10.0.10.26:8000/']);
    expect(wget.status, wget.stderr).toBe(0);
    expect(wget.stdout.trim()).toBe('web');
  });

  it('trace --json -- CMD returns the kernel path of a command run inside the lab', () => {
    const r = cli([
      'lab',
      'trace',
      '--id',
      A,
      '--json',
      '--in',
      'ext2',
      '--',
      process.execPath,
      `${ROOT}lab/probe-tool.mjs`,
      'tcp',
      '10.0.10.26',
      '8000',
      '2000',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const t = JSON.parse(r.stdout) as {
      packets: {
        first: { saddr: string; dport: number; tcpFlags?: string };
        steps: { table: string; chain: string; verdict: string; ruleNumber: number | null }[];
      }[];
    };
    const syn = t.packets.find((p) => p.first.saddr === '10.0.10.6' && p.first.dport === 8000 && p.first.tcpFlags === 'syn');
    expect(syn?.steps.find((s) => s.table === 'nat' && s.chain === 'DOCKER' && s.verdict === 'accept')?.ruleNumber).toBe(2);
  });

  it('lab down cleans up after a crash: daemons killed, stale pid files, mounts left', async () => {
    const n = labNames(A);
    // simulate a crash: kill dockerd and containerd hard, leave everything else
    for (const name of ['dockerd', 'containerd']) {
      const pid = Number(readFileSync(`${n.dir}/pids/${name}.pid`, 'utf8'));
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    expect(await labStatus(A)).not.toBeNull();
    await labDown(A);
    expect(await leftovers(n)).toEqual([]);
    expect(await labStatus(A)).toBeNull();
    // idempotent
    await labDown(A);
    const again = cli(['lab', 'down', '--id', A]);
    expect(again.status).toBe(0);
  });

  it('a malformed ruleset fails with E_LAB or E_PARSE and leaves nothing behind', async () => {
    const dir = mkdtempSync(`${tmpdir()}/journey-a-`);
    try {
      writeFileSync(`${dir}/bad.rules`, '*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i br-x -j NO-SUCH-CHAIN\nCOMMIT\n');
      writeFileSync(`${dir}/junk.txt`, 'not a ruleset at all\n');
      await expect(labUp({ id: A1, ruleset: `${dir}/bad.rules` })).rejects.toMatchObject({
        code: 'E_LAB',
        message: expect.stringContaining('bad.rules'),
      });
      expect(await leftovers(labNames(A1))).toEqual([]);
      await expect(labUp({ id: A1, ruleset: `${dir}/junk.txt` })).rejects.toMatchObject({ code: 'E_PARSE' });
      expect(await leftovers(labNames(A1))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs a recipe of your own (--scenario PATH), with probes derived from what it publishes', async () => {
    const dir = mkdtempSync(`${tmpdir()}/journey-a-`);
    try {
      const recipe = `${dir}/mine.sh`;
      writeFileSync(
        recipe,
        '# mine: one published web server on a user bridge, proxy off\nUSERLAND_PROXY=false\nscenario_up() {\n  bridge_net mynet 172.30.0.0/24 br-mine\n  web site --network mynet --ip 172.30.0.2 -p 9090:80\n}\n',
      );
      const info = await labUp({ id: A1, scenario: recipe });
      expect(info.bridges.find((b) => b.name === 'br-mine')?.subnet).toBe('172.30.0.0/24');
      const probes = listProbes(info.scenario, info).map((p) => p.name);
      expect(probes).toEqual(['ext-to-tcp-9090', 'ext-direct-site-tcp-80', 'site-hairpin-tcp-9090', 'site-to-outside']);
      for (const p of probes) expect((await runProbe(A1, p)).asExpected, p).toBe(true);
    } finally {
      await labDown(A1);
      rmSync(dir, { recursive: true, force: true });
    }
    expect(await leftovers(labNames(A1))).toEqual([]);
  });

  it('never changed the default namespace', () => {
    expect(defaultNsLinks()).toBe(linksBefore);
  });
});
