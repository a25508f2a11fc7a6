/**
 * `journey verify exposure --active` on every other lab scenario (real dockerd 20.10: proxy off,
 * a custom-named bridge, a host-address publish, an internal network, icc off, two networks,
 * firewalld beside Docker, docker-proxy carrying IPv6 to an IPv4 container): every row the lab can
 * play agrees with the packet's real fate and the kernel's deciding rule. One lab id, brought up and
 * down per scenario. (default, localhost-publish, ufw and ipv6 are in verify-exposure.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labUp } from '../../lab/driver.js';
import { verifyExposure } from '../../src/verify/verify-exposure.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('xs');
const SCENARIOS = ['noproxy', 'docker1', 'hostip', 'internal', 'noicc', 'multi', 'firewalld', 'ipv6proxy'] as const;

describe('verify exposure --active on every other lab scenario', () => {
  beforeAll(async () => {
    await assertLabCanRun();
  });
  afterAll(async () => {
    await labDown(ID).catch(() => undefined);
  }, 60_000);

  it('every played row agrees with the packet’s real fate and the kernel’s deciding rule', async () => {
    const lines: string[] = [];
    const bad: string[] = [];
    let compared = 0;
    let agreed = 0;
    for (const sc of SCENARIOS) {
      await labDown(ID).catch(() => undefined);
      const info = await labUp({ id: ID, scenario: sc });
      try {
        if (info.dockerHost === null) throw new Error(`scenario ${sc} has no dockerd`);
        const r = await verifyExposure({
          netns: info.netns.host,
          dockerHost: info.dockerHost,
          active: true,
          sourceNetns: { lan: info.netns.ext },
          timeoutMs: 1500,
        });
        compared += r.summary.compared;
        agreed += r.summary.agreed;
        lines.push(`${sc}: ${r.summary.compared} compared, ${r.summary.agreed} agreed (of ${r.summary.rows} rows)`);
        for (const x of r.rows) if (x.active !== null && !x.active.agrees) bad.push(`${sc}: ${x.id}: ${x.active.note ?? ''}`);
        expect(r.summary.compared, `${sc}: rows played`).toBeGreaterThanOrEqual(3);
      } finally {
        await labDown(ID);
      }
    }
    console.log(
      `verify exposure --active on ${SCENARIOS.length} scenarios: ${compared} rows compared with the kernel, ${agreed} agreed\n${lines.join('\n')}`,
    );
    expect(bad).toEqual([]);
    expect(agreed).toBe(compared);
  }, 600_000);
});
