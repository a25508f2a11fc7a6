import { describe, expect, it } from 'vitest';
import {
  CAPTURE_BACKEND_REGISTRY,
  CAPTURE_BACKENDS,
  DEFAULT_CAPTURE_BACKEND,
  captureBackend,
  isCaptureBackend,
  resolveCaptureBackend,
} from '../../src/capture/backends/registry.js';
import { CaptureWorker } from '../../src/capture/worker.js';
import type { WorkerErrorMessage } from '../../src/capture/protocol.js';
import { pipelineOptionsFrom } from '../../src/cli/pipeline-options.js';

/** Starts one worker with `backend` on an interface that does not exist; resolves with its first error. */
function openMissing(backend: string): Promise<WorkerErrorMessage> {
  return new Promise((resolve, reject) => {
    const cfg = {
      iface: 'jlpnone0',
      backend,
      filter: '',
      snaplen: 262144,
      bufferSize: 1 << 20,
      bufferTimeoutMs: 10,
      promiscuous: false,
      statsIntervalMs: 1000,
      maxQueueBytes: 1 << 20,
      batchFrames: 64,
      batchBytes: 1 << 16,
    };
    let first: WorkerErrorMessage | undefined;
    new CaptureWorker('jlpnone0', cfg, undefined, {
      hello: () => reject(new Error(`${backend} opened an interface that does not exist`)),
      batch: () => reject(new Error(`${backend} delivered frames from an interface that does not exist`)),
      stats: () => undefined,
      error: (e) => {
        first ??= e;
      },
      exit: () => (first ? resolve(first) : reject(new Error(`${backend}: worker exited without an error`))),
    });
  });
}

describe('the capture backend registry', () => {
  it('is one list: names unique, each declared with what it can tell, fallbacks are declared backends', () => {
    expect(CAPTURE_BACKENDS).toEqual(CAPTURE_BACKEND_REGISTRY.map((b) => b.name));
    expect(new Set(CAPTURE_BACKENDS).size).toBe(CAPTURE_BACKENDS.length);
    expect(CAPTURE_BACKENDS).toContain(DEFAULT_CAPTURE_BACKEND);
    for (const b of CAPTURE_BACKEND_REGISTRY) {
      expect(captureBackend(b.name)).toBe(b);
      expect(isCaptureBackend(b.name)).toBe(true);
      expect(b.description.length).toBeGreaterThan(10);
      expect(typeof b.kernelStats).toBe('boolean');
      if (b.fallback !== undefined) {
        expect(isCaptureBackend(b.fallback)).toBe(true);
        expect(b.fallback).not.toBe(b.name);
      }
      // what the user asks for is what runs, or a declared fallback with the reason
      const r = resolveCaptureBackend(b.name);
      if (r.backend !== b.name) {
        expect(r.backend).toBe(b.fallback);
        expect(r.fallback).toMatch(/capturing with/);
      }
    }
    expect(isCaptureBackend('tcpdump')).toBe(false);
    expect(() => captureBackend('tcpdump')).toThrow(/unknown capture backend tcpdump \(native, pcap, cap\)/);
  });

  it('--backend takes exactly the registered names', () => {
    for (const name of CAPTURE_BACKENDS) expect(pipelineOptionsFrom([], { backend: name }).backend).toBe(name);
    expect(() => pipelineOptionsFrom([], { backend: 'pf_ring' })).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
  });

  it('-B and --buffer-timeout reach the capture as MiB and ms, and refuse what is not a sensible whole number', () => {
    expect(pipelineOptionsFrom([], { bufferSize: '64', bufferTimeout: '8' } as never)).toMatchObject({ bufferSizeMiB: 64, bufferTimeoutMs: 8 });
    for (const bad of [{ bufferSize: '0' }, { bufferSize: '1.5' }, { bufferSize: '4096' }, { bufferTimeout: 'soon' }, { bufferTimeout: '0' }])
      expect(() => pipelineOptionsFrom([], bad as never)).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
  });

  it.each([...CAPTURE_BACKENDS])('the %s backend runs in a capture worker and reports a missing interface as an open error', async (name) => {
    const e = await openMissing(name);
    expect(e.phase).toBe('open');
    expect(e.message).toMatch(/cannot capture on jlpnone0/);
  });
});
