/**
 * Live capture on the lab's real interfaces (namespace jl-c3-host, a real dockerd): what the
 * capture workers deliver equals what tcpdump sees on the same interfaces, for every backend
 * (native = journey's addon, the default; pcap = node-pcap; cap); the decoder finds both NAT
 * legs; Docker networks and containers appearing and vanishing mid-capture are followed without a
 * crash (default backend); back-pressure; the fallback to pcap when the native addon is turned off.
 * Budget: well under 5 minutes.
 */
import { labTestId, useLab } from './lab-helpers.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { runProbe } from '../../lab/driver.js';
import { CAPTURE_BACKENDS, startCapture, readCaptureFiles, type CaptureHandle } from '../../src/capture/index.js';
import { loadCaptureAddon } from '../../src/capture/native-addon.js';
import { run } from '../../src/host/exec.js';
import { PacketView, decodeFrame, observationFromView } from '../../src/decode/index.js';
import type { CaptureStats, FrameBatch, Observation } from '../../src/model/observation.js';

const ID = labTestId('c3');
const lab = useLab(ID, 'default');
const tmp = mkdtempSync(join(tmpdir(), 'journey-c3-lab-'));

/** tcpdump on one interface of the lab host, writing a file; resolves once it listens. */
async function tcpdump(iface: string, file: string, filter: string, promisc: boolean): Promise<ChildProcess> {
  const args = [`--net=/var/run/netns/${lab.netns.host}`, '--', 'tcpdump', '-i', iface, '-n', '-U', '--immediate-mode', '-s', '262144', '-w', file];
  if (!promisc) args.push('-p');
  args.push(filter);
  const child = spawn('nsenter', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tcpdump on ${iface} did not start`)), 10_000);
    createInterface({ input: child.stderr! }).on('line', (l) => {
      if (/listening on/.test(l)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (c) => reject(new Error(`tcpdump on ${iface} exited ${c}`)));
  });
  return child;
}

function stopTcpdump(c: ChildProcess): Promise<void> {
  return new Promise((r) => {
    c.once('exit', () => r());
    c.kill('SIGINT');
  });
}

type Frame = { t: number; hex: string };
function framesOf(bs: FrameBatch[], iface: string): Frame[] {
  const out: Frame[] = [];
  for (const b of bs) {
    if (b.iface !== iface) continue;
    for (let i = 0; i < b.count; i++) {
      const o = b.offsets[i] as number;
      out.push({ t: b.timesUs[i] as number, hex: Buffer.from(b.data.subarray(o, o + (b.lengths[i] as number))).toString('hex') });
    }
  }
  return out;
}
const inWindow = (fs: Frame[], t0: number, t1: number): string[] =>
  fs
    .filter((f) => f.t >= t0 && f.t <= t1)
    .map((f) => f.hex)
    .sort();

function observations(bs: FrameBatch[]): Observation[] {
  const v = new PacketView();
  const out: Observation[] = [];
  for (const b of bs)
    for (let i = 0; i < b.count; i++)
      if (decodeFrame(b, i, v)) {
        const o = observationFromView(v, b.iface);
        if (o) out.push(o);
      }
  return out;
}

describe.each([...CAPTURE_BACKENDS])('live capture with the %s backend', (backend) => {
  it('delivers exactly the frames tcpdump sees on docker0 and eth0, with both NAT legs', async () => {
    const filter = 'ip';
    const batches: FrameBatch[] = [];
    const errors: Error[] = [];
    const written = join(tmp, `${backend}-written.pcapng`);
    const h = await startCapture({ netns: lab.netns.host, interfaces: ['docker0', 'eth0'], filter, backend, statsIntervalMs: 300, write: written });
    h.on('batch', (b) => batches.push(b));
    h.on('error', (e) => errors.push(e));
    expect(h.backend).toBe(backend); // never a silent fallback
    expect(h.interfaces().sort()).toEqual(['docker0', 'eth0']);
    // cap is always promiscuous: compare with a promiscuous tcpdump then (docker0, a bridge, is
    // promiscuous with every backend by default: a device property, so tcpdump -p sees the same there)
    const promisc = backend === 'cap';
    const td = {
      docker0: await tcpdump('docker0', join(tmp, `${backend}-docker0.pcap`), filter, promisc),
      eth0: await tcpdump('eth0', join(tmp, `${backend}-eth0.pcap`), filter, promisc),
    };
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now() * 1000;
    const probes = ['ext-to-published', 'ext2-to-published', 'container-ping-outside', 'container-udp-outside', 'ext-to-published'];
    for (const p of probes) expect((await runProbe(ID, p)).answered, p).toBe(true);
    const t1 = Date.now() * 1000;
    await new Promise((r) => setTimeout(r, 500));
    await Promise.all([stopTcpdump(td.docker0), stopTcpdump(td.eth0)]);
    const final: CaptureStats[] = await h.stop();
    expect(errors).toEqual([]);

    for (const iface of ['docker0', 'eth0']) {
      const ref: FrameBatch[] = [];
      for await (const b of readCaptureFiles([{ path: join(tmp, `${backend}-${iface}.pcap`), iface }])) ref.push(b);
      const theirs = inWindow(framesOf(ref, iface), t0 - 100_000, t1 + 100_000);
      const ours = inWindow(framesOf(batches, iface), t0 - 100_000, t1 + 100_000);
      expect(theirs.length, `tcpdump saw packets on ${iface}`).toBeGreaterThan(10);
      expect(ours.length, `frames on ${iface}`).toBe(theirs.length);
      expect(ours).toEqual(theirs);
    }
    const st = Object.fromEntries(final.map((s) => [s.iface, s]));
    for (const iface of ['docker0', 'eth0']) {
      expect(st[iface]?.received).toBe(framesOf(batches, iface).length);
      expect(st[iface]?.ownDropped).toBe(0);
      expect(st[iface]?.kernelDropped).toBe(0);
      expect(st[iface]?.kernelStatsUnavailable).toBe(backend === 'cap' ? true : undefined);
      expect(st[iface]?.backend).toBe(backend);
      expect(st[iface]?.cpuUs).toBeGreaterThan(0);
    }

    // --write kept every frame, with the interface names, readable by tcpdump too
    const back: FrameBatch[] = [];
    for await (const b of readCaptureFiles([written])) back.push(b);
    for (const iface of ['docker0', 'eth0']) {
      expect(framesOf(back, iface).map((f) => f.hex)).toEqual(framesOf(batches, iface).map((f) => f.hex));
    }
    const td2 = await run(['tcpdump', '-r', written, '-n'], { allowFailure: true });
    expect(td2.stdout.trim().split('\n').length).toBe(framesOf(batches, 'docker0').length + framesOf(batches, 'eth0').length);

    // the decoder sees both legs of the published-port flow: uplink before DNAT, bridge after
    const obs = observations(batches);
    const web = lab.containers.find((c) => c.name === 'web')!;
    const syn = (o: Observation): boolean => o.tuple.proto === 'tcp' && o.tcpFlags === 2;
    const up = obs.filter(
      (o) => o.iface === 'eth0' && syn(o) && o.tuple.src === lab.extAddr && o.tuple.dst === '10.0.10.26' && o.tuple.dport === 8000,
    );
    const br = obs.filter((o) => o.iface === 'docker0' && syn(o) && o.tuple.src === lab.extAddr && o.tuple.dst === web.ip && o.tuple.dport === 80);
    expect(up.length).toBe(2);
    expect(br.length).toBe(2);
    expect(br.map((o) => o.tuple.sport).sort()).toEqual(up.map((o) => o.tuple.sport).sort());
    expect(br.map((o) => o.tcpSeq).sort()).toEqual(up.map((o) => o.tcpSeq).sort());
    // the MASQUERADEd ping: the container's address on docker0, the host's on eth0
    const client = lab.containers.find((c) => c.name === 'client')!;
    expect(obs.some((o) => o.iface === 'docker0' && o.tuple.proto === 'icmp' && o.tuple.src === client.ip && o.tuple.icmpType === 8)).toBe(true);
    expect(
      obs.some(
        (o) =>
          o.iface === 'eth0' && o.tuple.proto === 'icmp' && o.tuple.src === '10.0.10.26' && o.tuple.dst === lab.outsideAddr && o.tuple.icmpType === 8,
      ),
    ).toBe(true);
  });
});

describe('interfaces appearing and vanishing mid-capture', () => {
  it('follows a new Docker network and a restarted container without a crash, and keeps capturing', async () => {
    const docker = (...a: string[]): Promise<unknown> => run(['docker', '-H', `unix://${lab.dockerHost}`, ...a], { timeoutMs: 60_000 });
    const ups: string[] = [];
    const downs: string[] = [];
    const errors: Error[] = [];
    const batches: FrameBatch[] = [];
    // auto mode (docker0, br-*, the uplink) plus the containers' veths
    const h: CaptureHandle = await startCapture({ netns: lab.netns.host, extraInterfaces: ['veth*'], statsIntervalMs: 300 });
    expect(h.backend).toBe('native'); // the default
    h.on('iface-up', (e) => ups.push(e.iface));
    h.on('iface-down', (e) => downs.push(e.iface));
    h.on('error', (e) => errors.push(e));
    h.on('batch', (b) => batches.push(b));
    const initial = h.interfaces();
    expect(initial).toEqual(expect.arrayContaining(['docker0', 'eth0']));
    const veths0 = initial.filter((i) => i.startsWith('veth'));
    expect(veths0.length).toBe(lab.containers.length);
    await new Promise((r) => setTimeout(r, 300));
    ups.length = 0;

    const waitFor = async (cond: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(cond(), what).toBe(true);
    };
    await docker('network', 'create', '--subnet', '172.29.0.0/24', 'c3net');
    await waitFor(() => ups.some((i) => i.startsWith('br-')), 'a br-* interface came up');
    const br = ups.find((i) => i.startsWith('br-'))!;
    await docker('network', 'rm', 'c3net');
    await waitFor(() => downs.includes(br), `${br} went down`);

    await docker('kill', 'client');
    await waitFor(() => downs.filter((d) => d.startsWith('veth')).length === 1, "the client's veth went down");
    await docker('start', 'client');
    await waitFor(() => ups.filter((d) => d.startsWith('veth')).length === 1, "the client's new veth came up");
    expect(h.interfaces().filter((i) => i.startsWith('veth')).length).toBe(lab.containers.length);

    // still capturing: a probe after all that is seen on the uplink
    const before = framesOf(batches, 'eth0').length;
    expect((await runProbe(ID, 'ext-to-published')).answered).toBe(true);
    await waitFor(() => framesOf(batches, 'eth0').length > before, 'frames on eth0 after the changes');
    const final = await h.stop();
    expect(errors).toEqual([]);
    expect(final.map((s) => s.iface)).toEqual(expect.arrayContaining([br, 'docker0', 'eth0']));
  });
});

describe('back-pressure', () => {
  it('a stalled main process makes the worker drop whole batches and count them; nothing is lost unreported', async () => {
    const N = 20000;
    // the default backend (native); its pipe holds 1 MiB: 20000 frames of 60 bytes (+16 per frame) overflow it
    const h = await startCapture({
      netns: lab.netns.host,
      interfaces: ['eth0'],
      filter: 'udp dst port 9',
      maxQueueBytes: 64 * 1024,
      statsIntervalMs: 200,
      watch: false,
    });
    expect(h.backend).toBe('native');
    let frames = 0;
    h.on('batch', (b) => (frames += b.count));
    await new Promise((r) => setTimeout(r, 300));
    const sender = spawn(
      'nsenter',
      [
        `--net=/var/run/netns/${lab.netns.ext}`,
        '--',
        process.execPath,
        '-e',
        `const s=require('dgram').createSocket('udp4');const b=Buffer.alloc(18);let n=0;` +
          `function go(){for(let i=0;i<200&&n<${N};i++,n++)s.send(b,9,'10.0.10.26');if(n<${N})setImmediate(go);else setTimeout(()=>s.close(),200);}go();`,
      ],
      { stdio: 'ignore' },
    );
    // stall the main thread while the flood runs: the worker cannot hand its batches over
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      /* busy */
    }
    await new Promise((r) => sender.once('exit', r));
    await new Promise((r) => setTimeout(r, 500));
    const [st] = await h.stop();
    expect(st?.ownDropped).toBeGreaterThan(0);
    expect(st?.kernelDropped).toBe(0);
    expect(frames + (st?.ownDropped ?? 0)).toBe(st?.received);
    expect(st?.received).toBe(N);
  });
});

describe('start errors are clear and stable', () => {
  it('missing namespace, bad filter (every backend), missing interface, interface down', async () => {
    const code = (p: Promise<CaptureHandle>): Promise<[string, string]> =>
      p.then(
        async (h) => {
          await h.stop();
          return ['started', ''];
        },
        (e: { code: string; message: string }) => [e.code, e.message],
      );
    expect(await code(startCapture({ netns: 'jl-c3-nope', interfaces: ['eth0'] }))).toEqual([
      'E_NO_NETNS',
      expect.stringMatching(/jl-c3-nope does not exist/),
    ]);
    for (const backend of ['native', 'pcap', 'cap'] as const) {
      expect(await code(startCapture({ netns: lab.netns.host, interfaces: ['eth0'], filter: 'udp port', backend }))).toEqual([
        'E_USAGE',
        expect.stringMatching(/bad capture filter "udp port": .*syntax error/),
      ]);
    }
    expect(await code(startCapture({ netns: lab.netns.host, interfaces: ['eth0', 'nope0'] }))).toEqual([
      'E_CAPTURE',
      expect.stringMatching(/no such interface: nope0/),
    ]);
    // an interface that exists but is down: refused at start, as tcpdump does
    await run(['ip', '-n', lab.netns.host, 'link', 'add', 'jl-c3-down', 'type', 'veth', 'peer', 'name', 'jl-c3-downp']);
    try {
      const [c, m] = await code(startCapture({ netns: lab.netns.host, interfaces: ['jl-c3-down'], backend: 'native' }));
      expect(c).toBe('E_CAPTURE');
      expect(m).toMatch(/jl-c3-down.*(not up|down)/i);
    } finally {
      await run(['ip', '-n', lab.netns.host, 'link', 'del', 'jl-c3-down'], { allowFailure: true });
    }
  });
});

describe('a namespace deleted under a capture', () => {
  it('is reported once (E_NO_NETNS), its workers stop and release it; no crash', async () => {
    const ns = 'jl-c3-gone';
    await run(['ip', 'netns', 'del', ns], { allowFailure: true });
    await run(['ip', 'netns', 'add', ns]);
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    const h = await startCapture({ netns: ns, interfaces: ['lo'] });
    const errors: string[] = [];
    const downs: string[] = [];
    h.on('error', (e) => errors.push(e.code));
    h.on('iface-down', (e) => downs.push(e.iface));
    const pid = await new Promise<number>((r) => h.once('iface-up', (e) => r(e.pid)));
    await run(['ip', 'netns', 'del', ns]);
    for (let i = 0; i < 100 && downs.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(errors).toEqual(['E_NO_NETNS']);
    expect(downs).toEqual(['lo']);
    await new Promise((r) => setTimeout(r, 300));
    expect(() => process.kill(pid, 0)).toThrow(); // the worker is gone
    await h.stop();
  });
});

describe('the native addon turned off (JOURNEY_CAPTURE_NATIVE=off)', () => {
  it('falls back to pcap, says so once (E_NATIVE notice), and captures', async () => {
    const saved = process.env['JOURNEY_CAPTURE_NATIVE'];
    process.env['JOURNEY_CAPTURE_NATIVE'] = 'off';
    loadCaptureAddon(true);
    try {
      const h = await startCapture({ netns: lab.netns.host, interfaces: ['eth0'], filter: 'tcp port 8000', watch: false });
      const notices: Array<{ code: string; message: string }> = [];
      const errors: Error[] = [];
      h.on('notice', (e) => notices.push({ code: e.code, message: e.message }));
      h.on('error', (e) => errors.push(e));
      let frames = 0;
      h.on('batch', (b) => (frames += b.count));
      expect(h.backend).toBe('pcap');
      expect(h.fallback).toMatch(/turned off by JOURNEY_CAPTURE_NATIVE=off/);
      await new Promise((r) => setTimeout(r, 200));
      expect((await runProbe(ID, 'ext-to-published')).answered).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
      const [st] = await h.stop();
      expect(notices).toEqual([{ code: 'E_NATIVE', message: expect.stringMatching(/native capture addon unavailable .*capturing with node-pcap/) }]);
      expect(errors).toEqual([]);
      expect(frames).toBeGreaterThan(3);
      expect(st).toMatchObject({ iface: 'eth0', backend: 'pcap', received: frames, kernelDropped: 0 });
    } finally {
      if (saved === undefined) delete process.env['JOURNEY_CAPTURE_NATIVE'];
      else process.env['JOURNEY_CAPTURE_NATIVE'] = saved;
      loadCaptureAddon(true);
    }
  });
});
