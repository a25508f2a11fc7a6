/**
 * `journey verify exposure` offline: moby's Docker 28 (iptables) and Docker 29 (nftables) goldens,
 * IPv4 and IPv6, on the golden host (eth0 10.0.10.26/24 + fd00:10::26/64, br-dummy 192.168.0.1/24 +
 * fd49:efd7:54aa::100/64), and the Docker 20.10 host recorded in the lab (test/fixtures/watch/default)
 * with ufw's INPUT added: every row decided by the simulator, direct access closed by the raw rule on
 * 28/29 and open on 20.10, the ufw bypass named, the policy failing the exit status naming the row.
 */
import { existsSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { registerVerify } from '../../src/cli/verify.js';
import { exitCodeFor } from '../../src/cli/exit-codes.js';
import { parseIpAddr, parseIpRoute, makeHostContext } from '../../src/ruleset/host-context.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { mergeRulesets, type Ruleset } from '../../src/ruleset/model.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import type { DockerSnapshot } from '../../src/docker/inventory.js';
import { applyPolicy, loadPolicy } from '../../src/verify/exposure-policy.js';
import type { ExposureRow } from '../../src/verify/exposure-types.js';
import { exposureRows } from '../../src/verify/verify-exposure.js';
import { exposureCheck } from '../../src/verify/check-exposure.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const FIX = join(ROOT, 'test/fixtures/ruleset');
const CORPUS = [join(ROOT, '..', 'shared', 'corpus', 'moby-golden'), '/work/shared/corpus/moby-golden'].find((p) => existsSync(p)) ?? '';
const ipt = (name: string): Ruleset => {
  if (CORPUS === '') throw new Error('the moby goldens (../shared/corpus/moby-golden) are missing');
  return parseIptablesSave(readFileSync(join(CORPUS, 'iptables', `${name}.golden`), 'utf8'), { source: name });
};
const BUNDLE = JSON.parse(gunzipSync(readFileSync(join(FIX, 'moby-nft-goldens.json.gz'))).toString('utf8')) as Record<string, unknown>;
const nft = (name: string): Ruleset => parseNftJson(BUNDLE[name], { source: name });
const goldenHost = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);
const G = 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false';
/** Docker 28 iptables goldens exist with icc=false for this combination (v4 and v6). */
const G28 = 'hairpin=true,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false';
const G_UNPROT = 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false';

function row(rows: readonly ExposureRow[], kind: string, addr: string, source: string): ExposureRow {
  const r = rows.find((x) => x.target.kind === kind && x.target.addr === addr && x.source === source);
  if (!r) throw new Error(`no row ${kind} ${addr} <- ${source}: ${rows.map((x) => x.id).join(', ')}`);
  return r;
}

describe('verify exposure on the Docker 28/29 goldens', () => {
  for (const [what, rules, family, icc] of [
    ['Docker 28 iptables (icc=false)', () => mergeRulesets(ipt(`${G28}__iptables`), ipt(`${G28}__ip6tables`)), 'ip', false],
    ['Docker 29 nftables', () => mergeRulesets(nft(`${G}__ip`), nft(`${G.replace('hairpin=true', 'hairpin=false')}__ip6`)), 'nft', true],
  ] as const) {
    it(`${what}: direct access to the container from the LAN is closed by the raw rule, the published port is open (IPv4 and IPv6)`, () => {
      const { rows, targets } = exposureRows({ rules: rules(), context: goldenHost, docker: null, netns: null });
      expect(targets.some((t) => t.family === 6)).toBe(true);
      const direct = row(rows, 'container', '192.168.0.2', 'lan');
      expect(direct.status).toBe('not-reachable');
      expect(direct.deciding?.verdict).toBe('drop');
      if (family === 'ip')
        expect(direct.deciding).toMatchObject({
          table: 'raw',
          chain: 'PREROUTING',
          ruleNumber: 1,
          rule: '-A PREROUTING -d 192.168.0.2/32 ! -i br-dummy -j DROP',
        });
      else expect(direct.deciding).toMatchObject({ table: 'docker-bridges', chain: 'raw-PREROUTING', owner: 'docker' });
      expect(direct.change.join(' ')).toMatch(/direct access protection/);
      const pub = row(rows, 'published', '10.0.10.26', 'internet');
      expect(pub).toMatchObject({ status: 'reachable', via: 'dnat', nat: { dnat: { to: '192.168.0.2:80' } } });
      expect(pub.change.join(' ')).toMatch(/bind the port to an address: -p 127\.0\.0\.1:8080:80/);
      // IPv6 rows from the ip6 goldens: the v6 container closed the same way, the v6 published port open
      const direct6 = rows.find((x) => x.family === 6 && x.target.kind === 'container' && x.source === 'lan');
      expect(direct6?.status).toBe('not-reachable');
      expect(direct6?.deciding?.verdict).toBe('drop');
      const pub6 = row(rows, 'published', 'fd00:10::26', 'internet');
      expect(pub6.status).toBe('reachable');
      expect(pub6.nat.dnat?.to).toBe('[fd49:efd7:54aa::1]:80');
      // the host reaches the container directly, a container of its bridge reaches the published port
      expect(row(rows, 'container', '192.168.0.2', 'host').status).toBe('reachable');
      expect(row(rows, 'published', '10.0.10.26', 'same-bridge').status).toBe(icc ? 'reachable' : 'not-reachable');
      for (const r of rows) expect(['reachable', 'not-reachable', 'indeterminate']).toContain(r.status);
    });
  }

  it('gateway mode nat-unprotected (Docker 28) leaves direct access open, and says what closes it', () => {
    const { rows } = exposureRows({ rules: ipt(`${G_UNPROT}__iptables`), context: goldenHost, docker: null, netns: null });
    const direct = row(rows, 'container', '192.168.0.2', 'lan');
    expect(direct).toMatchObject({ status: 'reachable', via: 'direct' });
    expect(direct.change.join(' ')).toMatch(/Docker 28's direct access protection/);
  });

  it('only the rows asked for: source classes and families', () => {
    const { rows } = exposureRows(
      { rules: mergeRulesets(ipt(`${G28}__iptables`), ipt(`${G28}__ip6tables`)), context: goldenHost, docker: null, netns: null },
      { sources: ['lan'], families: [6] },
    );
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows.map((r) => `${r.source} ${r.family}`))).toEqual(new Set(['lan 6']));
  });
});

const W = join(ROOT, 'test/fixtures/watch/default');
const labHost = makeHostContext(parseIpAddr(readFileSync(join(W, 'addrs.json'), 'utf8')), parseIpRoute(readFileSync(join(W, 'routes.json'), 'utf8')));
const labDocker = JSON.parse(readFileSync(join(W, 'docker.json'), 'utf8')) as DockerSnapshot;
const labIpt = readFileSync(join(W, 'iptables-save.txt'), 'utf8');
/** The same host with ufw enabled: default deny incoming, 22 allowed, 8000 denied. */
const withUfw = labIpt
  .replace(':INPUT ACCEPT [0:0]', ':INPUT DROP [0:0]\n:ufw-before-input - [0:0]\n:ufw-user-input - [0:0]')
  .replace(
    '-A FORWARD -j DOCKER-USER',
    '-A INPUT -j ufw-before-input\n-A INPUT -j ufw-user-input\n-A ufw-before-input -i lo -j ACCEPT\n-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n-A ufw-user-input -p tcp -m tcp --dport 8000 -j DROP\n-A FORWARD -j DOCKER-USER',
  );

describe('verify exposure on the Docker 20.10 lab host', () => {
  it('direct access to the container from the LAN is open (no raw rule before Docker 28)', () => {
    const { rows } = exposureRows({ rules: parseIptablesSave(labIpt), context: labHost, docker: labDocker, netns: null });
    const direct = row(rows, 'container', '172.17.0.2', 'lan');
    expect(direct).toMatchObject({ status: 'reachable', via: 'direct' });
    expect(direct.deciding).toMatchObject({ table: 'filter', chain: 'DOCKER', ruleNumber: 1 });
    expect(row(rows, 'published', '10.0.10.26', 'internet').target.container).toBe('web');
  });

  it('ufw default deny incoming: the published port is reachable anyway, and says ufw was never consulted', () => {
    const { rows } = exposureRows({ rules: parseIptablesSave(withUfw), context: labHost, docker: labDocker, netns: null });
    const pub = row(rows, 'published', '10.0.10.26', 'internet');
    expect(pub.status).toBe('reachable');
    expect(pub.deciding).toMatchObject({ table: 'filter', chain: 'DOCKER', owner: 'docker' });
    expect(pub.why.join('\n')).toContain(
      "ufw denies 8000/tcp in INPUT (filter ufw-user-input rule 2: -A ufw-user-input -p tcp -m tcp --dport 8000 -j DROP); this packet is DNAT'd to 172.17.0.2:80 and crosses FORWARD, so INPUT is never consulted",
    );
  });
});

describe('verify exposure --policy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'jl-v-policy-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    '# the web port may be reached from the host and its bridge only\nallow:\n  - port: 8000\n    from: [host, same-bridge, other-bridge]\n  - target: container\n    from: [host, same-bridge]\n',
  );

  it('a reachable row the policy does not allow is a violation, named', () => {
    const { rows } = exposureRows({ rules: parseIptablesSave(labIpt), context: labHost, docker: labDocker, netns: null });
    const p = applyPolicy(loadPolicy(policyFile), rows);
    const ids = p.violations.map((r) => r.id);
    expect(ids).toContain('published 10.0.10.26:8000/tcp <- internet (v4)');
    expect(ids).toContain('container 172.17.0.2:80/tcp <- lan (v4)');
    expect(p.rows.find((r) => r.source === 'host' && r.target.kind === 'published')?.policy).toMatchObject({ allowed: true });
  });

  it('refuses a malformed policy with a coded error naming the mistake', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'allow:\n  - port: 8000\n    from: [moon]\n');
    expect(() => loadPolicy(bad)).toThrow(/E_PARSE|allow\[0\]\.from: unknown source class "moon"/);
    writeFileSync(bad, '{"allow": [{"port": "http"}]}');
    expect(() => loadPolicy(bad)).toThrow(/allow\[0\]\.port must be a port number/);
    writeFileSync(bad, 'allow: [\n');
    expect(() => loadPolicy(bad)).toThrow(/not YAML/);
  });

  it('`journey verify exposure --policy` fails the exit status, naming the row (offline, no root needed)', async () => {
    const program = new Command().exitOverride();
    registerVerify(program);
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => {
      out.push(s);
      return true;
    }) as typeof process.stdout.write;
    let err: unknown = null;
    try {
      await program.parseAsync(
        [
          'verify',
          'exposure',
          '--ruleset',
          join(W, 'iptables-save.txt'),
          '--addrs',
          join(W, 'addrs.json'),
          '--routes',
          join(W, 'routes.json'),
          '--docker-snapshot',
          join(W, 'docker.json'),
          '--policy',
          policyFile,
        ],
        { from: 'user' },
      );
    } catch (e) {
      err = e;
    } finally {
      process.stdout.write = write;
    }
    expect(exposureCheck.needsRoot({ ruleset: ['x'] })).toBe(false);
    expect(exitCodeFor(err)).toBe(1);
    expect((err as Error).message).toContain('published 10.0.10.26:8000/tcp <- internet (v4): not allowed by the policy');
    expect(out.join('')).toMatch(/OPEN\s+internet\s+v4 port 10\.0\.10\.26:8000\/tcp -> web 172\.17\.0\.2:80 .*NOT ALLOWED by the policy/);
  });
});
