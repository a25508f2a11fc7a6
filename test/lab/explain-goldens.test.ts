/**
 * Every golden of the corpus loads through the real loaders, as a user would run them as root:
 * nft text goldens through `nft -f` in a scratch namespace (named priorities made numeric), iptables
 * goldens from their files; and `journey explain` runs offline on them from the command line.
 * No lab needed, but root (scratch namespaces). Fails, never skips, without root.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNftTextFile, loadIptablesSaveFile } from '../../src/ruleset/load.js';
import { run } from '../../src/host/exec.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const GOLDEN = process.env['JOURNEY_CORPUS'] ?? join(ROOT, '..', 'shared', 'corpus', 'moby-golden');
const FIX = join(ROOT, 'test', 'fixtures', 'ruleset');

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // the built CLI (scripts/setup runs npm run build)
  const main = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  const r = await run([process.execPath, main, ...args], { allowFailure: true, timeoutMs: 60_000 });
  return r;
}

describe('golden rulesets through the real loaders (root)', () => {
  it('runs as root, with the CLI built', () => {
    expect(process.getuid?.()).toBe(0);
    expect(existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js')), 'npm run build').toBe(true);
  });

  it('loads all 182 nft goldens with nft -f in a scratch namespace, and removes it', async () => {
    const files = readdirSync(join(GOLDEN, 'nftables')).filter((f) => f.endsWith('.golden'));
    expect(files.length).toBe(182);
    let rules = 0;
    for (const f of files) {
      const rs = await loadNftTextFile(join(GOLDEN, 'nftables', f));
      expect(rs.tables.map((t) => `${t.family} ${t.name}`)).toEqual([`${f.endsWith('__ip6.golden') ? 'ip6' : 'ip'} docker-bridges`]);
      for (const t of rs.tables)
        for (const c of t.chains.values())
          for (const r of c.rules) {
            rules++;
            // texts come from `nft -a list ruleset`, by handle
            expect(r.raw).not.toMatch(/counter packets/);
          }
    }
    expect(rules).toBeGreaterThan(1500);
    const ns = await run(['ip', 'netns', 'list']);
    expect(ns.stdout).not.toMatch(/jl-b-scratch/);
  }, 240_000);

  it('loads all 192 iptables goldens from their files', async () => {
    const files = readdirSync(join(GOLDEN, 'iptables')).filter((f) => f.endsWith('.golden'));
    expect(files.length).toBe(192);
    for (const f of files) expect((await loadIptablesSaveFile(join(GOLDEN, 'iptables', f))).tables.length).toBe(3);
  });

  it('reports a malformed nft file with its name and line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jl-b-test-'));
    const bad = join(dir, 'bad.nft');
    try {
      writeFileSync(
        bad,
        'table ip t {\n  chain c {\n    type filter hook forward priority filter; policy accept;\n    ip saddr 1.2.3.4 frobnicate\n  }\n}\n',
      );
      await expect(loadNftTextFile(bad)).rejects.toMatchObject({ code: 'E_PARSE', message: expect.stringMatching(/bad\.nft:4:/) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('journey explain works offline on a golden (human and --json) and on nft text', async () => {
    const g = join(GOLDEN, 'iptables', 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden');
    const host = ['--addrs', join(FIX, 'golden-host.addrs.json'), '--routes', join(FIX, 'golden-host.routes.json')];
    const human = await cli([
      'explain',
      '--iptables-save',
      g,
      ...host,
      '--src',
      '10.0.10.5:40000',
      '--dst',
      '10.0.10.26:8080',
      '--proto',
      'tcp',
      '--in',
      'eth0',
    ]);
    expect(human.stderr).toBe('');
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/published port 8080 → the container at 192\.168\.0\.2:80/);
    expect(human.stdout).toMatch(/verdict: ACCEPT/);
    const json = await cli([
      'explain',
      '--iptables-save',
      g,
      ...host,
      '--src',
      '192.168.0.2:40000',
      '--dst',
      '10.0.10.26:8080',
      '--in',
      'br-dummy',
      '--json',
    ]);
    const ex = JSON.parse(json.stdout) as { verdict: string; nat: unknown; steps: { chain: string }[] };
    expect(ex.verdict).toBe('accept');
    expect(ex.nat).toEqual({ dnat: { from: '10.0.10.26:8080', to: '192.168.0.2:80' }, snat: { from: '192.168.0.2:40000', to: '192.168.0.1:40000' } });
    const n = join(GOLDEN, 'nftables', 'hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden');
    const direct = await cli(['explain', '--nft', n, ...host, '--src', '10.0.10.5', '--dst', '192.168.0.2:80', '--in', 'eth0', '--json']);
    const d = JSON.parse(direct.stdout) as { verdict: string; steps: { chain: string; rule: string; verdict: string }[] };
    expect(d.verdict).toBe('drop');
    expect(d.steps.at(-1)).toMatchObject({ chain: 'raw-PREROUTING', verdict: 'drop', rule: expect.stringContaining('DROP DIRECT ACCESS') });
    const usage = await cli(['explain', '--dst', '10.0.10.26:8080', '--iptables-save', g]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/E_USAGE/);
    const parse = await cli([
      'explain',
      '--iptables-save',
      join(FIX, 'golden-host.addrs.json'),
      '--src',
      '1.2.3.4',
      '--dst',
      '10.0.10.26:80',
      '--in',
      'eth0',
    ]);
    expect(parse.code).toBe(7);
    expect(parse.stderr).toMatch(/E_PARSE: .*golden-host\.addrs\.json:1:/);
  });
});
