/**
 * `journey verify exposure --active` on Docker 28/29 hosts: moby's golden rulesets replayed in the
 * lab (iptables and nftables, gateway modes nat / nat-unprotected / routed, bindlh, icc off,
 * IPv4 and IPv6 — no Docker API, so containers and published ports are found on the host).
 * Every row the lab can play is probed for real under `nft monitor trace`; its fate and the kernel's
 * deciding rule must equal the simulator's (an indeterminate row is settled by the probe and says
 * so). One lab id, brought up and down per golden.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLabCanRun, labDown, labUp } from '../../lab/driver.js';
import { verifyExposure } from '../../src/verify/verify-exposure.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('xg');
const GOLDEN = ['/work/shared/corpus/moby-golden', join(process.cwd(), '..', 'shared', 'corpus', 'moby-golden')].find((p) => existsSync(p)) ?? '';
const GOLDENS = [
  'iptables/hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden',
  'iptables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=true__iptables.golden',
  'iptables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=routed,bindlh=true__iptables.golden',
  'iptables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=true__iptables.golden',
  'iptables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip6tables.golden',
  'nftables/hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden',
  'nftables/hairpin=false,internal=false,icc=false,masq=false,snat=true,gwm=routed,bindlh=false__ip.golden',
  'nftables/hairpin=false,internal=false,icc=false,masq=false,snat=false,gwm=routed,bindlh=false__ip6.golden',
] as const;

describe('verify exposure --active on Docker 28/29 goldens replayed in the lab', () => {
  beforeAll(async () => {
    await assertLabCanRun();
    if (GOLDEN === '') throw new Error('the moby goldens are missing (../shared/corpus/moby-golden)');
  });
  afterAll(async () => {
    await labDown(ID).catch(() => undefined);
  }, 60_000);

  it('every played row agrees with the packet’s real fate and the kernel’s deciding rule', async () => {
    let compared = 0;
    let agreed = 0;
    let v6 = 0;
    let directClosed = 0;
    const bad: string[] = [];
    for (const g of GOLDENS) {
      await labDown(ID).catch(() => undefined);
      const info = await labUp({ id: ID, ruleset: join(GOLDEN, g) });
      try {
        const r = await verifyExposure({
          netns: info.netns.host,
          noDocker: true,
          active: true,
          sourceNetns: { lan: info.netns.ext },
          timeoutMs: 1500,
        });
        compared += r.summary.compared;
        agreed += r.summary.agreed;
        v6 += r.rows.filter((x) => x.family === 6 && x.active !== null).length;
        for (const x of r.rows) if (x.active !== null && !x.active.agrees) bad.push(`${g}: ${x.id}: ${x.active.note ?? ''}`);
        expect(r.summary.compared, `${g}: rows played`).toBeGreaterThanOrEqual(2);
        // Docker 28+ with gateway mode nat: direct access from the LAN to a container address is closed by the raw rule
        if (g.includes('gwm=nat,') && g.endsWith('__iptables.golden')) {
          const direct = r.rows.find((x) => x.target.kind === 'container' && x.source === 'lan');
          expect(direct?.deciding, `${g}: ${JSON.stringify(direct)}`).toMatchObject({ table: 'raw', chain: 'PREROUTING', verdict: 'drop' });
          expect(direct?.active, g).toMatchObject({ fate: 'dropped', agrees: true });
          directClosed++;
        }
      } finally {
        await labDown(ID);
      }
    }
    console.log(
      `verify exposure --active on ${GOLDENS.length} goldens: ${compared} rows compared with the kernel (${v6} IPv6), ${agreed} agreed${bad.length ? `\n${bad.join('\n')}` : ''}`,
    );
    expect(bad).toEqual([]);
    expect(agreed).toBe(compared);
    expect(v6).toBeGreaterThanOrEqual(4);
    expect(directClosed).toBeGreaterThanOrEqual(1);
  }, 420_000);
});
