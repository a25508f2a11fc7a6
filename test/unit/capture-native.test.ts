/**
 * journey's native capture addon (native-bindings/capture), without root: its batches are the
 * worker pipe's BATCH messages (checked frame by frame against our own pcap reader, through the
 * same MessageReader the main process uses), its argument checks, the fallback to `pcap` when
 * the addon is missing or turned off, and the backend names the CLI accepts.
 * scripts/setup builds the addon: when it is not built, these tests fail (never skip).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { startCapture } from '../../src/capture/capture.js';
import { CAPTURE_BACKENDS, DEFAULT_CAPTURE_BACKEND, resolveCaptureBackend } from '../../src/capture/backends/registry.js';
import { captureAddonPath, loadCaptureAddon, type CaptureAddon, type NativeBatch } from '../../src/capture/native-addon.js';
import { MSG_BATCH, MessageReader } from '../../src/capture/protocol.js';
import { readCaptureFiles } from '../../src/capture/pcap-file.js';
import type { FrameBatch } from '../../src/model/observation.js';

const fixtures = join(new URL('..', import.meta.url).pathname, 'fixtures');
const ETH = join(fixtures, 'watch/default/eth0.pcap');
const SLL2 = join(fixtures, 'pcap/any-sll2.pcap');

function addon(): CaptureAddon {
  const l = loadCaptureAddon();
  if (!l.ok) throw new Error(`the native capture addon must be built (scripts/setup): ${l.reason}`);
  return l.addon;
}

type Frame = { hex: string; t: number; wire: number };
const framesOf = (bs: FrameBatch[]): Frame[] =>
  bs.flatMap((b) =>
    Array.from({ length: b.count }, (_, i) => {
      const o = b.offsets[i] as number;
      return {
        hex: Buffer.from(b.data.subarray(o, o + (b.lengths[i] as number))).toString('hex'),
        t: b.timesUs[i] as number,
        wire: b.wireLengths[i] as number,
      };
    }),
  );

async function reference(path: string): Promise<Frame[]> {
  const bs: FrameBatch[] = [];
  for await (const b of readCaptureFiles([{ path, iface: 'x' }])) bs.push(b);
  return framesOf(bs);
}

/** Reads a whole file with the addon, in batches of at most maxFrames, through the pipe's reader. */
async function viaAddon(
  path: string,
  maxFrames: number,
  opts: { filter?: string; sync?: boolean; out?: boolean; info?: boolean; maxBytes?: number } = {},
): Promise<{ frames: Frame[]; batches: number; linkType: number }> {
  const a = addon();
  const o = a.openOffline(path, { msgType: MSG_BATCH, ...(opts.filter !== undefined ? { filter: opts.filter } : {}) });
  const got: FrameBatch[] = [];
  const reader = new MessageReader(
    () => 'x',
    () => o.linkType,
    () => undefined,
    (b) => got.push(b),
  );
  const maxBytes = opts.maxBytes ?? 1 << 20;
  const out = opts.out ? Buffer.alloc(13 + 16 * maxFrames + maxBytes + 65536) : undefined;
  let batches = 0;
  for (;;) {
    let r: NativeBatch;
    if (opts.info) {
      // the worker's hot path: no result object, figures in a Float64Array
      const info = new Float64Array(8).fill(NaN);
      const data = a.nextBatchSync(o.handle, maxFrames, maxBytes, 0, out as Buffer, null, info);
      expect(Array.from(info.subarray(2, 6))).toEqual([0, -1, -1, -1]); // no fd, no kernel stats for a file
      expect(info[7]).toBe(0);
      r = {
        data,
        count: info[0] as number,
        length: info[1] as number,
        written: 0,
        bytes: info[6] as number,
        psRecv: -1,
        psDrop: -1,
        psIfdrop: -1,
        error: a.lastError(o.handle),
      };
    } else r = opts.sync ? a.nextBatchSync(o.handle, maxFrames, maxBytes, 0, out) : await a.nextBatch(o.handle, maxFrames, maxBytes, 0, out);
    expect(r.error).toBeNull();
    if (r.count === 0) break;
    expect(r.count).toBeLessThanOrEqual(maxFrames);
    const msg = r.data ?? (out as Buffer).subarray(0, r.length);
    expect(r.data === null).toBe(out !== undefined); // with `out`, nothing is allocated
    expect(msg.length).toBe(r.length);
    expect(msg.readUInt32LE(0)).toBe(msg.length - 4);
    expect(msg[4]).toBe(MSG_BATCH);
    // cut in odd pieces: the reader reassembles as it does from the pipe
    for (let at = 0; at < msg.length; at += 37) reader.push(Buffer.from(msg.subarray(at, Math.min(msg.length, at + 37))));
    batches++;
  }
  a.close(o.handle);
  return { frames: framesOf(got), batches, linkType: o.linkType };
}

describe('native capture addon: batches in the pipe framing', () => {
  it('frames, capture and wire lengths and times equal our pcap reader, whatever the batch size', async () => {
    for (const file of [ETH, SLL2]) {
      const ref = await reference(file);
      expect(ref.length).toBeGreaterThan(30);
      const one = await viaAddon(file, 4096);
      expect(one.frames).toEqual(ref);
      expect(one.batches).toBe(1);
      const small = await viaAddon(file, 7, { sync: true, out: true });
      expect(small.frames).toEqual(ref);
      expect(small.batches).toBe(Math.ceil(ref.length / 7));
      const async = await viaAddon(file, 5, { out: true });
      expect(async.frames).toEqual(ref);
      const hot = await viaAddon(file, 9, { sync: true, out: true, info: true });
      expect(hot.frames).toEqual(ref);
    }
    expect((await viaAddon(ETH, 10)).linkType).toBe(1);
    expect((await viaAddon(SLL2, 10)).linkType).toBe(276); // LINKTYPE_LINUX_SLL2
  });

  it('stops a batch at maxBytes (between frames, never inside one)', async () => {
    const ref = await reference(ETH);
    const total = ref.reduce((n, f) => n + f.hex.length / 2, 0);
    const r = await viaAddon(ETH, 4096, { maxBytes: 1024, sync: true, out: true });
    expect(r.frames).toEqual(ref);
    expect(r.batches).toBeGreaterThanOrEqual(Math.floor(total / (1024 + 1600)));
    expect(r.batches).toBeGreaterThan(1);
  });

  it('applies a capture filter compiled by libpcap', async () => {
    const ref = await reference(ETH);
    const tcp = await viaAddon(ETH, 4096, { filter: 'tcp' });
    expect(tcp.frames.length).toBeGreaterThan(0);
    expect(tcp.frames.length).toBeLessThan(ref.length);
    // IPv4 protocol 6 at offset 23 of an Ethernet frame (no VLAN in this capture)
    for (const f of tcp.frames) expect(f.hex.slice(46, 48)).toBe('06');
    expect(() => addon().openOffline(ETH, { msgType: MSG_BATCH, filter: 'udp port' })).toThrow(/syntax error/);
  });
});

describe('native capture addon: argument checks and errors', () => {
  it('refuses bad arguments with a code, never crashes', async () => {
    const a = addon();
    const code = (f: () => unknown): string => {
      try {
        f();
        return 'none';
      } catch (e) {
        return (e as { code?: string }).code ?? 'no code';
      }
    };
    expect(code(() => a.open('', { snaplen: 100, bufferSize: 1 << 20, timeoutMs: 10, promisc: false, filter: '', msgType: 2 }))).toBe('EINVAL');
    expect(code(() => a.open('eth0', { snaplen: 0, bufferSize: 1 << 20, timeoutMs: 10, promisc: false, filter: '', msgType: 2 }))).toBe('EINVAL');
    expect(code(() => a.open('eth0', 42 as never))).toBe('EINVAL');
    expect(code(() => a.open('jl-c3-none0', { snaplen: 100, bufferSize: 1 << 20, timeoutMs: 10, promisc: false, filter: '', msgType: 2 }))).toBe(
      'EPCAP',
    );
    expect(code(() => a.openOffline('/nonexistent/x.pcap', { msgType: 2 }))).toBe('EPCAP');
    const garbage = join(mkdtempSync(join(tmpdir(), 'journey-c3-')), 'garbage.pcap');
    writeFileSync(garbage, Buffer.from('this is not a capture file at all'));
    expect(code(() => a.openOffline(garbage, { msgType: 2 }))).toBe('EPCAP');
    expect(code(() => a.nextBatchSync({} as never, 1, 1 << 20, 0))).toBe('EINVAL');
    const o = a.openOffline(ETH, { msgType: 2 });
    expect(code(() => a.nextBatchSync(o.handle, 0, 1 << 20, 0))).toBe('EINVAL');
    expect(code(() => a.nextBatchSync(o.handle, 10, 10, 0))).toBe('EINVAL');
    expect(code(() => a.nextBatchSync(o.handle, 10, 1 << 20, -1))).toBe('EINVAL');
    expect(code(() => a.nextBatchSync(o.handle, 10, 1 << 20, 0, 'x' as never))).toBe('EINVAL');
    // one call at a time per handle
    const p = a.nextBatch(o.handle, 10, 1 << 20, 0);
    expect(code(() => a.nextBatchSync(o.handle, 10, 1 << 20, 0))).toBe('EBUSY');
    expect((await p).count).toBe(10);
    a.close(o.handle);
    a.close(o.handle); // twice is fine
    expect(code(() => a.nextBatchSync(o.handle, 10, 1 << 20, 0))).toBe('ECLOSED');
    expect(a.libVersion()).toMatch(/libpcap/);
  });

  it('is context-aware: several worker_threads load it at once', async () => {
    const l = loadCaptureAddon();
    expect(l.ok).toBe(true);
    const path = (l as { path: string }).path;
    const src = `const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.path);
      const o = a.openOffline(workerData.file, { msgType: 2 });
      a.nextBatch(o.handle, 4096, 1 << 20, 0).then((r) => { a.close(o.handle); parentPort.postMessage(r.count); });`;
    const counts = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<number>((resolve, reject) => {
            const w = new Worker(src, { eval: true, workerData: { path, file: ETH } });
            w.once('message', (n: number) => {
              resolve(n);
              void w.terminate();
            });
            w.once('error', reject);
          }),
      ),
    );
    const n = (await reference(ETH)).length;
    expect(counts).toEqual([n, n, n]);
  });
});

describe('backend choice and the fallback to pcap', () => {
  const saved = process.env['JOURNEY_CAPTURE_NATIVE'];
  afterEach(() => {
    if (saved === undefined) delete process.env['JOURNEY_CAPTURE_NATIVE'];
    else process.env['JOURNEY_CAPTURE_NATIVE'] = saved;
    loadCaptureAddon(true);
  });

  it('native is the default when the addon is built; pcap and cap stay selectable', () => {
    expect(CAPTURE_BACKENDS).toEqual(['native', 'pcap', 'cap']);
    expect(DEFAULT_CAPTURE_BACKEND).toBe('native');
    expect(loadCaptureAddon(true).ok).toBe(true);
    expect(resolveCaptureBackend(undefined)).toEqual({ backend: 'native' });
    expect(resolveCaptureBackend('native')).toEqual({ backend: 'native' });
    expect(resolveCaptureBackend('pcap')).toEqual({ backend: 'pcap' });
    expect(resolveCaptureBackend('cap')).toEqual({ backend: 'cap' });
  });

  it('JOURNEY_CAPTURE_NATIVE=off or a missing addon: pcap, and the reason is said', () => {
    process.env['JOURNEY_CAPTURE_NATIVE'] = 'off';
    expect(captureAddonPath()).toEqual({ off: expect.stringMatching(/JOURNEY_CAPTURE_NATIVE=off/) });
    expect(loadCaptureAddon(true)).toEqual({ ok: false, reason: expect.stringMatching(/turned off/) });
    expect(resolveCaptureBackend(undefined)).toEqual({
      backend: 'pcap',
      fallback: expect.stringMatching(/native capture addon unavailable \(turned off.*capturing with node-pcap/),
    });
    expect(resolveCaptureBackend('native').backend).toBe('pcap');
    expect(resolveCaptureBackend('cap')).toEqual({ backend: 'cap' });

    process.env['JOURNEY_CAPTURE_NATIVE'] = '/nonexistent/journey_capture.node';
    expect(loadCaptureAddon(true)).toEqual({ ok: false, reason: expect.stringMatching(/\/nonexistent\/journey_capture.node is not built/) });
    expect(resolveCaptureBackend(undefined)).toMatchObject({ backend: 'pcap', fallback: expect.stringMatching(/is not built/) });

    // a file that is not our addon
    process.env['JOURNEY_CAPTURE_NATIVE'] = ETH;
    expect(loadCaptureAddon(true)).toEqual({ ok: false, reason: expect.stringMatching(/does not load/) });
  });

  it('an unknown backend is a usage error', async () => {
    await expect(startCapture({ backend: 'pf_ring' as never })).rejects.toMatchObject({
      code: 'E_USAGE',
      message: expect.stringMatching(/native, pcap, cap/),
    });
  });
});
