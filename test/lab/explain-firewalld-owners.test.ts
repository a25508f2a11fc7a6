/**
 * explain on Debian's firewalld beside Docker 20.10 (scenario firewalld, id "ow"), the lab set up
 * once: each probe's path, verdict and NAT equal the kernel's trace (nft monitor trace) and
 * conntrack; the meanings printed on firewalld's chains are firewalld's (its base chains, zones and
 * their allow/deny parts), never Docker's; and a published port is said outright to bypass
 * firewalld's INPUT, naming the rule that would have refused it — decided by the simulator.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ProbeDef } from '../../lab/probes.js';
import { compileRuleset, explainPacket } from '../../src/explain/explain.js';
import { run } from '../../src/host/exec.js';
import type { KernelTrace } from '../../src/netfilter/kernel-trace.js';
import { hostFromDumps, readHostDumps, readRulesetDumps, rulesetFromDumps } from '../../src/ruleset/load.js';
import { chainOwner, dockerGeneration, ruleOwner, rulesetOwners } from '../../src/ruleset/owners.js';
import { compareProbesWithKernel } from './ipv6-helpers.js';
import { labTestId, useLab } from './lab-helpers.js';

const ID = labTestId('ow');
const MAIN = join(import.meta.dirname, '../../dist/src/cli/main.js');

const probe = (name: string, from: string, to: string, port: number, expect: ProbeDef['expect'], description: string): ProbeDef => ({
  name,
  from,
  proto: 'tcp',
  to,
  port,
  expect,
  description,
});
const PROBES: readonly ProbeDef[] = [
  probe('ext-to-published', 'ext', 'host', 8000, 'answer', "external -> published 8000: DNAT'd, FORWARD through firewalld's zones and Docker"),
  probe('container-to-outside', 'client', 'outside', 80, 'answer', "client -> 198.51.100.10:80 through firewalld's docker zone, masqueraded"),
  probe('ext-to-unpublished', 'ext', 'host', 8081, 'no-answer', "external -> 10.0.10.26:8081: firewalld's public zone rejects it in INPUT"),
];

describe("explain on Debian's firewalld with Docker: firewalld's words on its chains, the kernel's paths", () => {
  const info = useLab(ID, 'firewalld');

  it("paths, verdicts and NAT equal the kernel's; meanings on firewalld's chains are firewalld's; the INPUT bypass is said", async () => {
    const cmp = await compareProbesWithKernel(ID, info, PROBES, new Map<string, KernelTrace>());
    console.log(
      `explain-firewalld-owners: ${cmp.first} first packets and ${cmp.later} later packets compared with nft monitor trace, ${cmp.nat} NATs with conntrack (firewalld + Docker 20.10); differences: ${cmp.bad.length}`,
    );
    expect(cmp.bad).toEqual([]);
    expect(cmp.first).toBe(PROBES.length);

    const ns = info.netns.host;
    const ruleset = rulesetFromDumps(await readRulesetDumps({ netns: ns }), ns);
    expect(dockerGeneration(ruleset)).toBe('20.10');
    expect(rulesetOwners(ruleset)).toEqual(['docker', 'firewalld']);
    const compiled = compileRuleset(ruleset, hostFromDumps(await readHostDumps({ netns: ns }), ns));
    const steps = [
      { tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', sport: 40000, dst: '10.0.10.26', dport: 8000 }, iif: 'eth0' },
      { tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '172.17.0.3', sport: 40000, dst: '198.51.100.10', dport: 80 }, iif: 'docker0' },
      { tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', sport: 40000, dst: '10.0.10.26', dport: 8081 }, iif: 'eth0' },
    ].flatMap((spec) => explainPacket(compiled, spec as Parameters<typeof explainPacket>[1]).steps);
    const fw = steps.filter((s) => chainOwner(s.family, s.table, s.chain) === 'firewalld');
    expect(fw.length).toBeGreaterThan(PROBES.length);
    // a jump inside firewalld's table names firewalld's chain as firewalld's; its verdicts are said to be firewalld's
    for (const s of fw.filter((x) => x.target !== undefined)) expect(s.meaning, `${s.chain} → ${s.target}`).toMatch(/^to firewalld/);
    const reject = fw.find((s) => s.verdict === 'reject' || s.verdict === 'drop');
    expect(reject?.meaning).toMatch(/^(rejected|dropped) by firewalld/);
    const dockerOnForeign = steps.filter(
      (s) =>
        /Docker|published port|the container/.test(s.meaning ?? '') &&
        ruleOwner(s.family, s.table, s.chain, s.rule ?? undefined) !== 'docker' &&
        (s.target === undefined || chainOwner(s.family, s.table, s.target) !== 'docker'),
    );
    expect(dockerOnForeign.map((s) => `${s.table} ${s.chain}: ${s.meaning}`)).toEqual([]);

    // the human output: firewalld's chains headed by firewalld's words, and the bypass said outright
    const cli = await run([process.execPath, MAIN, 'explain', '--netns', ns, '--src', '10.0.10.5:40000', '--dst', '10.0.10.26:8000', '--in', 'eth0']);
    expect(cli.stdout).toMatch(/\[inet firewalld filter_FORWARD\] base chain, .*firewalld: its filter FORWARD base chain/);
    expect(cli.stdout).toMatch(/\[inet firewalld \w+_public\] firewalld zone public: /);
    expect(cli.stdout).toMatch(
      /firewalld denies 8000\/tcp in INPUT \(inet firewalld filter_\S+ .*\); this packet is DNAT'd to 172\.17\.0\.2:80 and crosses FORWARD, so INPUT is never consulted/,
    );
    console.log(
      cli.stdout
        .split('\n')
        .filter((l) => /firewalld|INPUT is never/.test(l))
        .slice(0, 12)
        .join('\n'),
    );
  }, 180_000);
});
