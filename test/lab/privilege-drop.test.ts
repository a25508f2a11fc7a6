/**
 * The privilege drop of live watch and serve (id "pd"), as root on a real lab: after start-up every
 * journey process is the unprivileged user and holds exactly its capabilities (read from
 * /proc/PID/status), and the dropped journey still does its job: both legs of a published-port
 * flow, a bridge created after the drop captured by a new worker, a -w file written 0600 by the
 * user, serve answering /healthz.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labUp, runProbe, runProbeDef, type LabInfo } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('pd');
const MAIN = join(import.meta.dirname, '../../dist/src/cli/main.js');
const NOBODY = 65534;
const CAP = { net_admin: 12, net_raw: 13, sys_admin: 21, sys_ptrace: 19, dac_read_search: 2, bpf: 39, perfmon: 38, syslog: 34 } as const;
const mask = (...caps: (keyof typeof CAP)[]): bigint => caps.reduce((m, c) => m | (1n << BigInt(CAP[c])), 0n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Proc {
  readonly pid: number;
  readonly argv: string;
  readonly uid: number;
  readonly eff: bigint;
  readonly prm: bigint;
  readonly bnd: bigint;
  readonly nnp: boolean;
}

function proc(pid: number): Proc | null {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (n: string) => new RegExp(`^${n}:\\s*(.*)$`, 'm').exec(st)?.[1] ?? '';
    if (field('State').startsWith('Z')) return null; // ended, not yet reaped: it holds nothing any more
    return {
      pid,
      argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim(),
      uid: Number(field('Uid').split(/\s+/)[1]), // the effective uid
      eff: BigInt(`0x${field('CapEff')}`),
      prm: BigInt(`0x${field('CapPrm')}`),
      bnd: BigInt(`0x${field('CapBnd')}`),
      nnp: field('NoNewPrivs') === '1',
    };
  } catch {
    return null; // ended meanwhile
  }
}

/** The process and all its descendants (through every thread's children). */
function tree(pid: number): Proc[] {
  const me = proc(pid);
  if (me === null) return [];
  const kids: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`))
      for (const k of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(/\s+/)) if (k !== '') kids.push(Number(k));
  } catch {
    /* ended meanwhile */
  }
  return [me, ...kids.flatMap(tree)];
}

interface Journey {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly stderr: string[];
  exited(): Promise<number | null>;
}

function startJourney(args: readonly string[]): Journey {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const done = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, lines, stderr, exited: () => done };
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (cond()) return true;
  return cond();
}

const isWorker = (p: Proc) => p.argv.startsWith(process.execPath) && p.argv.includes('worker-entry.js');
/**
 * nsenter and setpriv exec what they start: seen only while a process is being started. An empty
 * command line is a process inside execve (its old memory gone, the new arguments not yet set) or
 * past its memory on the way out: it still holds its parent's capabilities for that moment.
 */
const isLauncher = (p: Proc) => p.argv === '' || /^(nsenter|setpriv) /.test(p.argv);

/** The tree once no process in it is still being started (a launcher holds its parent's capabilities until it execs). */
async function settledTree(pid: number): Promise<Proc[]> {
  let procs = tree(pid);
  for (const end = Date.now() + 10_000; procs.some(isLauncher) && Date.now() < end; procs = tree(pid)) await sleep(50);
  return procs;
}
const isTool = (p: Proc) => /^(nft|ip|conntrack|iptables-save|ip6tables-save) /.test(p.argv);
const isMain = (p: Proc) => p.argv.includes('main.js') && !isWorker(p);

describe('journey drops root: watch and serve run unprivileged with the capabilities they need', () => {
  let info: LabInfo;
  let dir: string;
  beforeAll(async () => {
    await labDown(ID);
    info = await labUp({ id: ID, scenario: 'default' });
    dir = mkdtempSync(join(tmpdir(), 'journey-pd-'));
    chmodSync(dir, 0o1777); // like /tmp: the dropped user may create its -w file here
  }, 300_000);
  afterAll(async () => {
    await labDown(ID);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('watch: every process is uid 65534 with exactly its capabilities, and the flows, a new bridge and -w still work', async () => {
    const out = join(dir, 'flows.pcap');
    const j = startJourney(['watch', '--json', '--netns', info.netns.host, '--docker-host', info.dockerHost!, '--rule-counters', '-w', out]);
    try {
      expect(await waitFor(() => j.lines.some((l) => l.includes('capturing on')), 60_000)).toBe(true);
      const started = j.stderr.find((l) => l.startsWith('journey: running as nobody'));
      expect(started, j.stderr.join('\n')).toBeDefined();
      const procs = await settledTree(j.child.pid!);
      const report = procs.map((p) => `${p.pid} uid ${p.uid} eff ${p.eff.toString(16)} prm ${p.prm.toString(16)} ${p.argv.slice(0, 90)}`).join('\n');
      console.log(`privilege-drop: watch's processes after start-up:\n${report}`);
      expect(
        procs.every((p) => p.uid === NOBODY),
        report,
      ).toBe(true);
      const [waiting, ...rest] = procs;
      // the process that was started as root only waits: no capability left
      expect([waiting?.eff, waiting?.prm]).toEqual([0n, 0n]);
      const main = rest.find(isMain);
      // the lab's docker socket is in a 0700 directory: CAP_DAC_READ_SEARCH to reach it (the group is kept)
      const mainCaps = mask('net_raw', 'net_admin', 'sys_admin', 'sys_ptrace', 'dac_read_search', 'bpf', 'perfmon', 'syslog');
      expect([main?.eff, main?.prm, main?.bnd, main?.nnp], report).toEqual([mainCaps, mainCaps, mainCaps, true]);
      // below the waiting process: no_new_privs everywhere (a setuid binary gains nothing), and no
      // bounding set wider than the dropped journey's
      for (const p of rest) expect([p.argv, p.nnp, p.bnd & ~mainCaps], report).toEqual([p.argv, true, 0n]);
      const workers = rest.filter(isWorker);
      expect(workers.length, report).toBeGreaterThanOrEqual(2);
      for (const w of workers) expect([w.eff, w.prm], report).toEqual([mask('net_raw'), mask('net_raw')]);
      const tools = rest.filter(isTool);
      expect(tools.length, report).toBeGreaterThanOrEqual(1);
      for (const t of tools) expect([t.eff, t.prm], report).toEqual([mask('net_admin'), mask('net_admin')]);
      for (const p of rest) expect(isMain(p) || isWorker(p) || isTool(p) || /^(nsenter|setpriv|sleep) /.test(p.argv), report).toBe(true);

      // the job: a published port's flow with both legs, joined through conntrack
      const r = await runProbe(ID, 'ext-to-published');
      expect(r.asExpected, `${r.outcome} ${r.output}`).toBe(true);
      const events = () =>
        j.lines
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { type: string; flow?: { orig: { dport: number }; legs: { iface: string }[] } });
      const bothLegs = () =>
        events().some(
          (e) =>
            e.type.startsWith('flow.') && e.flow?.orig.dport === 8000 && ['eth0', 'docker0'].every((i) => e.flow?.legs.some((l) => l.iface === i)),
        );
      expect(await waitFor(bothLegs, 15_000), j.lines.slice(-20).join('\n')).toBe(true);

      // a bridge created after the drop: a new worker, narrowed like the others
      const env = { ...process.env, DOCKER_HOST: `unix://${info.dockerHost!.replace(/^unix:\/\//, '')}` };
      await run(['docker', 'network', 'create', '--subnet', '172.25.0.0/24', '-o', 'com.docker.network.bridge.name=br-pd', 'pdnet'], {
        env,
        timeoutMs: 60_000,
      });
      await run(
        ['docker', 'run', '-d', '--name', 'pdweb', '--network', 'pdnet', '-p', '8081:80', 'lab/busybox:1', 'httpd', '-f', '-p', '80', '-h', '/'],
        {
          env,
          timeoutMs: 60_000,
        },
      );
      const more = await waitFor(() => tree(j.child.pid!).filter(isWorker).length > workers.length, 30_000);
      expect(more, j.lines.filter((l) => l.includes('notice')).join('\n')).toBe(true);
      const later = (await settledTree(j.child.pid!)).filter(isWorker);
      for (const w of later) expect([w.uid, w.eff, w.prm, w.nnp]).toEqual([NOBODY, mask('net_raw'), mask('net_raw'), true]);
      // and it captures: a flow to the new container's published port, with its uplink and bridge legs
      const def = {
        name: 'pd-new-bridge',
        description: 'external -> 10.0.10.26:8081 (DNAT to pdweb:80 on br-pd)',
        from: 'ext',
        proto: 'tcp',
        to: 'host',
        port: 8081,
        expect: 'answer',
      } as const;
      const legsOn = (port: number, ifaces: readonly string[]) => () =>
        events().some(
          (e) => e.type.startsWith('flow.') && e.flow?.orig.dport === port && ifaces.every((i) => e.flow?.legs.some((l) => l.iface === i)),
        );
      let answered = false;
      for (let i = 0; i < 5 && !(answered && legsOn(8081, ['eth0', 'br-pd'])()); i++) {
        const r2 = await runProbeDef(info, def); // the first may come before the worker's socket is bound
        answered ||= r2.asExpected;
        await waitFor(legsOn(8081, ['eth0', 'br-pd']), 15_000);
      }
      expect(answered).toBe(true);
      expect(legsOn(8081, ['eth0', 'br-pd'])(), j.lines.slice(-20).join('\n')).toBe(true);
    } finally {
      j.child.kill('SIGINT');
      expect(await j.exited()).toBe(0);
    }
    const st = statSync(out);
    expect([st.uid, st.mode & 0o777, st.size > 24]).toEqual([NOBODY, 0o600, true]);
  }, 180_000);

  it('watch -w into a directory the user cannot write: a coded error and a non-zero exit, like tcpdump -Z', async () => {
    const closed = mkdtempSync(join(tmpdir(), 'journey-pd-closed-')); // 0700, root's
    try {
      const j = startJourney(['watch', '--json', '--netns', info.netns.host, '--no-docker', '-w', join(closed, 'x.pcap'), '--duration', '5']);
      const code = await j.exited();
      expect(code).not.toBe(0);
      expect(j.stderr.join('\n')).toMatch(/E_[A-Z_]+|EACCES|permission/i);
    } finally {
      rmSync(closed, { recursive: true, force: true });
    }
  }, 60_000);

  it('serve: unprivileged too, and serving', async () => {
    const port = 19_000 + (process.pid % 1000);
    const j = startJourney(['serve', '--netns', info.netns.host, '--docker-host', info.dockerHost!, '--port', String(port), '--listen', '127.0.0.1']);
    try {
      const healthy = async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
        } catch {
          return false;
        }
      };
      let ok = false;
      for (let i = 0; i < 300 && !ok; i++) {
        ok = await healthy();
        if (!ok) await sleep(100);
      }
      expect(ok, j.stderr.join('\n')).toBe(true);
      // serve answers before its capture workers are up: wait for them
      await waitFor(() => tree(j.child.pid!).filter(isWorker).length >= 2, 30_000);
      const procs = await settledTree(j.child.pid!);
      const report = procs.map((p) => `${p.pid} uid ${p.uid} eff ${p.eff.toString(16)} ${p.argv.slice(0, 90)}`).join('\n');
      console.log(`privilege-drop: serve's processes:\n${report}`);
      expect(
        procs.every((p) => p.uid === NOBODY),
        report,
      ).toBe(true);
      expect(procs[0]?.eff).toBe(0n);
      for (const w of procs.filter(isWorker)) expect([w.eff, w.prm, w.nnp]).toEqual([mask('net_raw'), mask('net_raw'), true]);
      for (const t of procs.filter(isTool)) expect([t.eff, t.prm, t.nnp]).toEqual([mask('net_admin'), mask('net_admin'), true]);
      expect(procs.filter(isWorker).length).toBeGreaterThanOrEqual(2);
    } finally {
      j.child.kill('SIGINT');
      await j.exited();
    }
  }, 120_000);

  it('--no-drop-privileges keeps root (said in --help), -Z and it together are a usage error', async () => {
    const j = startJourney(['watch', '--json', '--netns', info.netns.host, '--no-docker', '-Z', 'nobody', '--no-drop-privileges', '--duration', '1']);
    expect(await j.exited()).toBe(2);
    const help = startJourney(['watch', '--help']);
    await help.exited();
    expect(help.lines.join('\n')).toMatch(/-Z, --user <name>/);
  }, 60_000);
});
