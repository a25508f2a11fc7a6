/**
 * What the capture benchmarks share (capture.mjs, watch-rate.mjs): two throwaway namespaces
 * joined by a veth (tx: txv 10.77.0.1/24, rx: rxv 10.77.0.2/24) and capture-flood.c, the paced
 * sender of 60-byte UDP frames, compiled here.
 */
import { execFile, execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export const sh = (cmd, a, o = {}) => execFileSync(cmd, a, { encoding: 'utf8', ...o });

/** Deletes the namespaces (those that exist). */
export function teardownNetns(names) {
  for (const ns of names) {
    try {
      sh('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* not there */
    }
  }
}

/** Namespaces tx and rx (after deleting leftovers), joined by the veth txv <-> rxv, addressed, still down. */
export function createVethPair(tx, rx) {
  teardownNetns([tx, rx]);
  sh('ip', ['netns', 'add', tx]);
  sh('ip', ['netns', 'add', rx]);
  sh('ip', ['-n', tx, 'link', 'add', 'txv', 'type', 'veth', 'peer', 'name', 'rxv', 'netns', rx]);
  sh('ip', ['-n', tx, 'addr', 'add', '10.77.0.1/24', 'dev', 'txv']);
  sh('ip', ['-n', rx, 'addr', 'add', '10.77.0.2/24', 'dev', 'rxv']);
}

/** Compiles capture-flood.c into dir; returns the binary's path. */
export function buildFlood(dir) {
  const bin = join(dir, 'capture-flood');
  sh('gcc', ['-O2', '-o', bin, join(here, 'capture-flood.c')]);
  return bin;
}

/**
 * Runs the sender in namespace tx: `rate` frames a second for `seconds` to dst:port. The event loop
 * stays free while it runs (a capture in this process keeps decoding). `cpu` pins it (taskset) to one
 * CPU. Resolves with what it sent.
 */
export function flood(bin, { netns, dst, port = 9, rate, seconds, flows = 1, spread = 1, newPerSecond = 0, cpu }) {
  const pin = cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
  return new Promise((resolve, reject) =>
    execFile(
      'nsenter',
      [
        `--net=/var/run/netns/${netns}`,
        '--',
        ...pin,
        bin,
        dst,
        String(port),
        String(rate),
        String(seconds),
        '18',
        String(flows),
        String(spread),
        String(newPerSecond),
      ],
      { encoding: 'utf8' },
      (err, out) => {
        if (err) return reject(err);
        const [sent, elapsed] = out.trim().split(/\s+/).map(Number);
        resolve({ sent, elapsed });
      },
    ),
  );
}
