/**
 * Offline replay of what test/lab/explain-kernel.test.ts compared live: for each lab scenario (a real
 * Docker 20.10 in namespaces, firewalld included), the rulesets and host as the tools dumped them
 * and the kernel's trace of each probe's first packet (recorded with JOURNEY_RECORD_DIR). The
 * explanation computed from the dumps must still equal the kernel's steps and conntrack's NAT.
 * Also the seeds' journeys, and the human output.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { rulesetFromDumps, hostFromDumps, type RulesetDumps, type HostDumps } from '../../src/ruleset/load.js';
import { compileRuleset, explainPacket } from '../../src/explain/explain.js';
import { compareSteps, natEqual, type KernelCase, type KernelFollowUp } from '../../src/explain/kernel-compare.js';
import { formatExplanation } from '../../src/explain/format.js';
import type { Explanation } from '../../src/model/explanation.js';

const DIR = new URL('../fixtures/ruleset/lab', import.meta.url).pathname;

interface Recording {
  scenario: string;
  dumps: RulesetDumps;
  hostDumps: HostDumps;
  cases: (KernelCase & { followUps?: KernelFollowUp[] })[];
}

const recordings: Recording[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Recording);

function load(scenario: string): { rec: Recording; explain: (name: string) => Explanation } {
  const rec = recordings.find((r) => r.scenario === scenario);
  if (!rec) throw new Error(`no recording for ${scenario}`);
  const c = compileRuleset(rulesetFromDumps(rec.dumps, scenario), hostFromDumps(rec.hostDumps, scenario));
  return {
    rec,
    explain: (name) => {
      const k = rec.cases.find((x) => x.name === name);
      if (!k) throw new Error(`no case ${name}`);
      return explainPacket(c, k.iif === null ? { tuple: k.tuple, local: true } : { tuple: k.tuple, iif: k.iif });
    },
  };
}

describe('explanations equal recorded kernel traces (8 lab scenarios)', () => {
  it('has recordings of every scenario', () => {
    expect(recordings.map((r) => r.scenario).sort()).toEqual(['default', 'docker1', 'firewalld', 'hostip', 'internal', 'multi', 'noicc', 'noproxy']);
  });

  for (const rec of recordings) {
    it(`${rec.scenario}: steps and NAT of every probe's first packet`, () => {
      const ruleset = rulesetFromDumps(rec.dumps, rec.scenario);
      const c = compileRuleset(ruleset, hostFromDumps(rec.hostDumps, rec.scenario));
      const bad: string[] = [];
      let later = 0;
      for (const k of rec.cases) {
        const ex = explainPacket(c, k.iif === null ? { tuple: k.tuple, local: true } : { tuple: k.tuple, iif: k.iif });
        const cmp = compareSteps(ex, k.steps, ruleset);
        if (!cmp.equal) bad.push(`${k.name}: simulated ${cmp.simulated.join(' | ')} ≠ kernel ${cmp.kernel.join(' | ')}`);
        if (k.conntrackNat && !natEqual(ex.nat, k.conntrackNat))
          bad.push(`${k.name}: nat ${JSON.stringify(ex.nat)} ≠ ${JSON.stringify(k.conntrackNat)}`);
        expect(ex.indeterminate).toEqual([]);
        for (const f of k.followUps ?? []) {
          const fx = explainPacket(c, {
            tuple: f.tuple,
            ...(f.iif === null ? { local: true } : { iif: f.iif }),
            ctState: 'established',
            direction: f.direction,
            conntrack: f.conntrack,
          });
          const fc = compareSteps(fx, f.steps, ruleset);
          if (!fc.equal) bad.push(`${f.name}: simulated ${fc.simulated.join(' | ')} ≠ kernel ${fc.kernel.join(' | ')}`);
          later++;
        }
      }
      expect(rec.cases.length).toBeGreaterThan(5);
      expect(later).toBeGreaterThan(5);
      expect(bad).toEqual([]);
    });
  }

  it('a wrong simulator would be caught: the comparison sees a changed verdict or rule', () => {
    const { rec, explain } = load('default');
    const k = rec.cases.find((x) => x.name === 'ext-to-published')!;
    const ex = explain('ext-to-published');
    const ruleset = rulesetFromDumps(rec.dumps, 'default');
    expect(compareSteps(ex, k.steps, ruleset).equal).toBe(true);
    const tampered: Explanation = { ...ex, steps: ex.steps.map((s, i) => (i === 1 ? { ...s, ruleNumber: (s.ruleNumber ?? 0) + 1 } : s)) };
    expect(compareSteps(tampered, k.steps, ruleset).equal).toBe(false);
    expect(natEqual(ex.nat, { dnat: null, snat: null })).toBe(false);
  });
});

describe("the seeds' journeys, computed", () => {
  it('seed 000/001: external client → 10.0.10.26:8000 on the default bridge (Docker 20.10, iptables)', () => {
    const ex = load('default').explain('ext-to-published');
    const chains = ex.steps.filter((s) => s.rule !== null).map((s) => `${s.table} ${s.chain} ${s.verdict}`);
    // (1) PREROUTING → DOCKER (2) DNAT (3) FORWARD → DOCKER-USER (4) back (5) DOCKER-ISOLATION-STAGE-1 (6) back (7) → DOCKER (8) ACCEPT
    expect(chains).toEqual([
      'nat PREROUTING jump',
      'nat DOCKER dnat',
      'filter FORWARD jump',
      'filter DOCKER-USER return',
      'filter FORWARD jump',
      'filter DOCKER-ISOLATION-STAGE-1 return',
      'filter FORWARD jump',
      'filter DOCKER accept',
    ]);
    expect(ex.nat.dnat).toEqual({ from: '10.0.10.26:8000', to: '172.17.0.2:80' });
    expect(ex.steps.find((s) => s.verdict === 'dnat')?.rule).toBe(
      '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80',
    );
    expect(ex.packet_out).toMatchObject({ dst: '172.17.0.2', dport: 80, oif: 'docker0' });
  });

  it('two packets on one path share their steps (readonly), except the NAT step that says their own addresses', () => {
    const rec = recordings.find((r) => r.scenario === 'default')!;
    const c = compileRuleset(rulesetFromDumps(rec.dumps, 'default'), hostFromDumps(rec.hostDumps, 'default'));
    const k = rec.cases.find((x) => x.name === 'ext-to-published')!;
    const a = explainPacket(c, { tuple: k.tuple, iif: k.iif! });
    const b = explainPacket(c, { tuple: { ...k.tuple, sport: k.tuple.sport + 1 }, iif: k.iif! });
    expect(b.steps.length).toBe(a.steps.length);
    const nat = a.steps.findIndex((s) => s.verdict === 'dnat');
    expect(nat).toBeGreaterThanOrEqual(0);
    a.steps.forEach((s, i) => {
      expect(b.steps[i]).toEqual(s);
      if (i !== nat) expect(b.steps[i]).toBe(s);
    });
    // the same packet on another compiled ruleset: its own steps
    const c2 = compileRuleset(rulesetFromDumps(rec.dumps, 'default'), hostFromDumps(rec.hostDumps, 'default'));
    expect(explainPacket(c2, { tuple: k.tuple, iif: k.iif! }).steps[0]).not.toBe(a.steps[0]);
  });

  it('seed 000 §2 / seed 004: a container reaching out is MASQUERADEd to the uplink address', () => {
    const ex = load('default').explain('container-to-outside');
    expect(ex.steps.at(-1)).toMatchObject({
      table: 'nat',
      chain: 'POSTROUTING',
      verdict: 'masquerade',
      rule: '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
    });
    expect(ex.nat.snat?.to).toMatch(/^10\.0\.10\.26:/);
  });

  it('seed 003: firewalld beside Docker: both forward base chains run, in priority order', () => {
    const ex = load('firewalld').explain('ext-to-published');
    const forward = ex.steps.filter((s) => s.hook === 'forward');
    const firstFirewalld = forward.findIndex((s) => s.table === 'firewalld');
    const lastDocker = forward.map((s) => s.table).lastIndexOf('filter');
    expect(lastDocker).toBeGreaterThanOrEqual(0);
    expect(firstFirewalld).toBeGreaterThan(lastDocker); // filter FORWARD (0) accepts, then firewalld (filter + 10) sees it
    expect(forward[lastDocker]?.verdict).toBe('accept');
    expect(ex.verdict).toBe('accept');
    expect(ex.steps.some((s) => s.family === 'inet' && s.table === 'firewalld' && s.hook === 'prerouting')).toBe(true);
  });

  it('seed 000 §2 / lab recipe: with the userland proxy, a container calling the published port is answered by docker-proxy', () => {
    const ex = load('default').explain('hairpin');
    expect(ex.nat.dnat).toBeNull();
    expect(ex.packet_out?.delivery).toBe('local');
    expect(ex.steps.find((s) => s.chain === 'DOCKER' && s.table === 'nat')?.rule).toBe('-A DOCKER -i docker0 -j RETURN');
    expect(ex.notes?.join('\n')).toMatch(/port 8000\/tcp is published \(DNAT to 172\.17\.0\.2:80\).*docker-proxy/);
    // without the proxy the same call is hairpin-NATed and no such note is given
    const np = load('noproxy').explain('hairpin');
    expect(np.nat.dnat?.to).toBe('172.17.0.2:80');
    expect(np.notes?.join('\n')).not.toMatch(/docker-proxy/);
  });

  it('prints numbered steps with Docker meanings', () => {
    const ex = load('default').explain('ext-to-published');
    const text = formatExplanation(ex, 'tcp 10.0.10.5:40000 → 10.0.10.26:8000 in on eth0 (new)');
    expect(text).toMatch(/^\(1\) prerouting +ip nat PREROUTING #1/m);
    expect(text).toMatch(/DOCKER-USER: where the user's own rules go/);
    expect(text).toMatch(/published port 8000 → the container at 172\.17\.0\.2:80/);
    expect(text).toMatch(/DNAT: 10\.0\.10\.26:8000 → 172\.17\.0\.2:80/);
    expect(text).toMatch(/verdict: ACCEPT\n$/);
  });
});
