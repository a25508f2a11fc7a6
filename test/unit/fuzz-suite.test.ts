/**
 * The fuzz suite of every CI run: scripts/fuzz.mjs with 100,000 mutated frames and 5,000 mutated
 * rulesets (a new seed each run, printed so a failure can be replayed with --seed): 0 crashes,
 * 0 hangs (no item over 2 s), RSS under 768 MiB. The longer run is `node scripts/fuzz.mjs`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../..', import.meta.url).pathname;

describe('fuzz suite', () => {
  it('100,000 mutated frames and 5,000 mutated rulesets: 0 crashes, 0 hangs, bounded RSS', () => {
    expect(existsSync(join(ROOT, 'dist/src/decode/index.js')), 'the build (npm run build) is there').toBe(true);
    const out = join(mkdtempSync(join(tmpdir(), 'journey-fuzz-')), 'fuzz.json');
    const seed = String(Math.floor(Math.random() * 2 ** 31));
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'scripts/fuzz.mjs'), '--frames', '100000', '--rulesets', '5000', '--seed', seed, '--rss-mib', '768', '--json', out],
      {
        encoding: 'utf8',
        timeout: 600_000,
      },
    );
    console.log(r.stdout.trim());
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const res = JSON.parse(readFileSync(out, 'utf8')) as { frames: number; rulesets: number; crashes: number; hangs: number; maxRssMiB: number };
    expect(res.frames).toBe(100_000);
    expect(res.rulesets).toBe(5_000);
    expect(res.crashes).toBe(0);
    expect(res.hangs).toBe(0);
    expect(res.maxRssMiB).toBeLessThanOrEqual(768);
  }, 620_000);
});
