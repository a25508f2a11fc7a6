/**
 * The owner recogniser (src/ruleset/owners.ts) and the meanings it gives: Docker recognised by
 * generation (20.10 recorded in the lab, moby's Docker 28 iptables and Docker 29 nftables goldens),
 * ufw's and firewalld's chains described as theirs (firewalld as recorded in the lab, a ufw ruleset
 * as Debian's ufw writes it), and no Docker meaning on a chain Docker did not make, across all of them.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { explainPacket, type PacketSpec } from '../../src/explain/explain.js';
import { formatExplanation } from '../../src/explain/format.js';
import type { ExplainStep } from '../../src/model/explanation.js';
import type { Tuple } from '../../src/model/tuple.js';
import { type CompiledRuleset, compileRuleset } from '../../src/netfilter/compile.js';
import { makeHostContext, parseIpAddr, parseIpRoute } from '../../src/ruleset/host-context.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { hostFromDumps, type HostDumps, type RulesetDumps, rulesetFromDumps } from '../../src/ruleset/load.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { chainOwner, dockerGeneration, ruleOwner, rulesetOwners } from '../../src/ruleset/owners.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const FIX = join(ROOT, 'test', 'fixtures', 'ruleset');
const GOLDEN = process.env['JOURNEY_CORPUS'] ?? join(ROOT, '..', 'shared', 'corpus', 'moby-golden');
const goldenHost = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);
const BUNDLE = JSON.parse(gunzipSync(readFileSync(join(FIX, 'moby-nft-goldens.json.gz'))).toString('utf8')) as Record<string, unknown>;
interface Recording {
  dumps: RulesetDumps;
  hostDumps: HostDumps;
  cases: { name: string; tuple: Tuple; iif: string | null }[];
}
const recording = (s: string): Recording => JSON.parse(readFileSync(join(FIX, 'lab', `${s}.json`), 'utf8')) as Recording;
const tcp = (src: string, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport: 40000, dport });
/** Docker's words (capitalised: firewalld's own zone is named "docker"). */
const DOCKER_WORDS = /Docker|published port|the container/;

/** Steps whose meaning speaks of Docker although neither the rule nor the chain it enters is Docker's. */
function foreignDockerWords(steps: readonly ExplainStep[]): string[] {
  return steps
    .filter((s) => DOCKER_WORDS.test(s.meaning ?? ''))
    .filter((s) => ruleOwner(s.family, s.table, s.chain, s.rule ?? undefined) !== 'docker')
    .filter((s) => s.target === undefined || chainOwner(s.family, s.table, s.target) !== 'docker')
    .map((s) => `${s.family} ${s.table} ${s.chain}: ${s.meaning}`);
}

/** Every step of every spec, explained, plus the chain headers the human output prints. */
function explainAll(c: CompiledRuleset, specs: readonly PacketSpec[]): { steps: ExplainStep[]; text: string } {
  const steps: ExplainStep[] = [];
  let text = '';
  for (const spec of specs) {
    const ex = explainPacket(c, spec);
    steps.push(...ex.steps);
    text += formatExplanation(ex, { all: true });
  }
  return { steps, text };
}

const UFW = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-before-input - [0:0]
:ufw-before-logging-input - [0:0]
:ufw-user-input - [0:0]
:ufw-after-input - [0:0]
:ufw-after-logging-input - [0:0]
:ufw-reject-input - [0:0]
:ufw-not-local - [0:0]
-A INPUT -j ufw-before-logging-input
-A INPUT -j ufw-before-input
-A INPUT -j ufw-after-input
-A INPUT -j ufw-after-logging-input
-A INPUT -j ufw-reject-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m addrtype --dst-type LOCAL -j ufw-not-local
-A ufw-before-input -j ufw-user-input
-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN
-A ufw-not-local -j DROP
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 8000 -j DROP
COMMIT
`;

describe('the owner recogniser', () => {
  it("recognises Docker's generation: 20.10 (lab), 28 (iptables goldens), 29 (nftables goldens), none on a ufw-only host", () => {
    const d2010 = recording('default');
    expect(dockerGeneration(rulesetFromDumps(d2010.dumps, 'default'))).toBe('20.10');
    const g28 = readdirSync(join(GOLDEN, 'iptables')).filter((f) => f.endsWith('__iptables.golden'));
    expect(g28.length).toBeGreaterThan(10);
    for (const f of g28) expect(dockerGeneration(parseIptablesSave(readFileSync(join(GOLDEN, 'iptables', f), 'utf8'), { source: f })), f).toBe('28');
    const g29 = Object.keys(BUNDLE);
    expect(g29.length).toBeGreaterThan(100);
    for (const k of g29) expect(dockerGeneration(parseNftJson(BUNDLE[k], { source: k })), k).toBe('29-nft');
    const ufw = parseIptablesSave(UFW, { source: 'ufw' });
    expect(dockerGeneration(ufw)).toBeNull();
    expect(rulesetOwners(ufw)).toEqual(['ufw']);
    expect(rulesetOwners(rulesetFromDumps(recording('firewalld').dumps, 'firewalld'))).toEqual(['docker', 'firewalld']);
  });

  it("Docker 20.10's filter DOCKER is not described as Docker 28's (it drops nothing)", () => {
    const rec = recording('default');
    const c = compileRuleset(rulesetFromDumps(rec.dumps, 'default'), hostFromDumps(rec.hostDumps, 'default'));
    const ex = explainPacket(c, { tuple: tcp('10.0.10.5', '10.0.10.26', 8000), iif: 'eth0' });
    const jump = ex.steps.find((s) => s.table === 'filter' && s.target === 'DOCKER');
    expect(jump?.meaning).toMatch(/Docker 20\.10/);
    expect(jump?.meaning).not.toMatch(/drops/);
  });

  it("firewalld (recorded in the lab with Docker 20.10): its chains carry firewalld's words, never Docker's", () => {
    const rec = recording('firewalld');
    const c = compileRuleset(rulesetFromDumps(rec.dumps, 'firewalld'), hostFromDumps(rec.hostDumps, 'firewalld'));
    const { steps, text } = explainAll(
      c,
      rec.cases.map((k) => (k.iif === null ? { tuple: k.tuple, local: true } : { tuple: k.tuple, iif: k.iif })),
    );
    const fw = steps.filter((s) => s.table === 'firewalld');
    expect(fw.length).toBeGreaterThan(rec.cases.length);
    expect(foreignDockerWords(steps)).toEqual([]);
    for (const s of fw.filter((x) => x.target !== undefined)) expect(s.meaning, `${s.chain} → ${s.target}`).toMatch(/^to firewalld/);
    expect(text).toMatch(/\[inet firewalld filter_FORWARD\] base chain, .*firewalld: its filter FORWARD base chain/);
    expect(text).toMatch(/firewalld zone (public|docker): forwarded traffic/);
  });

  it("ufw as Debian's ufw writes it: ufw's words on its chains, its deny said to be ufw's", () => {
    const c = compileRuleset(parseIptablesSave(UFW, { source: 'ufw' }), goldenHost);
    const { steps, text } = explainAll(c, [
      { tuple: tcp('10.0.10.5', '10.0.10.26', 8000), iif: 'eth0' },
      { tuple: tcp('10.0.10.5', '10.0.10.26', 22), iif: 'eth0' },
    ]);
    expect(foreignDockerWords(steps)).toEqual([]);
    expect(steps.filter((s) => DOCKER_WORDS.test(s.meaning ?? ''))).toEqual([]);
    expect(text).toMatch(/ufw: ufw-before-input \(before\.rules/);
    expect(text).toMatch(/ufw: ufw-user-input \(the user's rules \(ufw allow\/deny\/limit\)\)/);
    expect(steps.find((s) => s.chain === 'ufw-user-input' && s.verdict === 'drop')?.meaning).toMatch(/^dropped by ufw/);
    expect(steps.find((s) => s.chain === 'ufw-user-input' && s.verdict === 'accept')?.meaning).toMatch(/^accepted by ufw/);
  });

  it('no Docker meaning on a chain Docker did not make, across every Docker 28 and 29 golden', () => {
    const specs: PacketSpec[] = [
      { tuple: tcp('10.0.10.5', '10.0.10.26', 8080), iif: 'eth0' },
      { tuple: tcp('10.0.10.5', '192.168.0.2', 80), iif: 'eth0' },
      { tuple: tcp('192.168.0.2', '198.51.100.10', 80), iif: 'br-dummy' },
    ];
    let docker = 0;
    let rulesets = 0;
    const bad: string[] = [];
    const all = [
      ...readdirSync(join(GOLDEN, 'iptables'))
        .filter((f) => f.endsWith('__iptables.golden'))
        .map((f) => parseIptablesSave(readFileSync(join(GOLDEN, 'iptables', f), 'utf8'), { source: f })),
      ...Object.keys(BUNDLE)
        .filter((k) => k.endsWith('__ip'))
        .map((k) => parseNftJson(BUNDLE[k], { source: k })),
    ];
    for (const rs of all) {
      const { steps } = explainAll(compileRuleset(rs, goldenHost), specs);
      rulesets++;
      docker += steps.filter((s) => DOCKER_WORDS.test(s.meaning ?? '')).length;
      bad.push(...foreignDockerWords(steps).map((x) => `${rs.tables[0]?.source}: ${x}`));
    }
    console.log(`owners: ${rulesets} Docker 28/29 rulesets explained, ${docker} steps with Docker's words, all on Docker's chains or rules`);
    expect(bad).toEqual([]);
    expect(docker).toBeGreaterThan(rulesets);
  });
});
