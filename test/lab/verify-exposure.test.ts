/**
 * `journey verify exposure --active` on the lab's Docker 20.10 host (scenario default, a real
 * dockerd): every row the lab can play — the host itself, the containers (their namespaces), the
 * neighbour jl-…-ext on the uplink's subnet — is probed for real under `nft monitor trace`; its fate
 * (answered / refused / dropped) and the kernel's deciding rule must equal the simulator's. Direct
 * access from the LAN to a container address is open on 20.10 (no raw rule), and it is played too.
 */
import { describe, expect, it } from 'vitest';
import { verifyExposure } from '../../src/verify/verify-exposure.js';
import { labTestId, useLab } from './lab-helpers.js';

const ID = labTestId('x');

describe('verify exposure --active (lab default, Docker 20.10)', () => {
  const info = useLab(ID, 'default');

  it('every playable row agrees with the packet’s real fate and the kernel’s deciding rule', async () => {
    if (info.dockerHost === null) throw new Error('the default scenario has no dockerd');
    const r = await verifyExposure({
      netns: info.netns.host,
      dockerHost: info.dockerHost,
      active: true,
      families: [4],
      sourceNetns: { lan: info.netns.ext },
      timeoutMs: 1500,
    });
    const probed = r.rows.filter((x) => x.active !== null);
    console.log(
      `verify exposure --active: ${r.summary.compared} rows compared with the kernel, ${r.summary.agreed} agreed (of ${r.summary.rows} rows)`,
    );
    for (const x of probed.filter((p) => p.active?.agrees !== true)) console.log(`disagreement: ${x.id}: ${x.active?.note ?? ''}`);
    expect(r.summary.compared).toBeGreaterThanOrEqual(4);
    expect(r.summary.agreed).toBe(r.summary.compared);
    // Docker 20.10: a LAN neighbour reaches the container's own address directly
    const direct = r.rows.find((x) => x.target.kind === 'container' && x.source === 'lan');
    expect(direct?.status).toBe('reachable');
    expect(direct?.active?.fate).toBe('answered');
    const pub = r.rows.find((x) => x.target.kind === 'published' && x.source === 'lan' && x.target.addr === info.hostAddr);
    expect(pub).toMatchObject({ status: 'reachable', via: 'dnat', active: { fate: 'answered', agrees: true } });
    expect(r.ok).toBe(true);
  }, 300_000);
});

describe('verify exposure --active (lab localhost-publish: -p 127.0.0.1:8080:80, userland proxy off, Docker 20.10)', () => {
  const LID = labTestId('xl');
  const info = useLab(LID, 'localhost-publish');

  it('a neighbour routing 127.0.0.0/8 to the host gets its packet to the "localhost only" port, as the simulator says', async () => {
    if (info.dockerHost === null) throw new Error('the localhost-publish scenario has no dockerd');
    const r = await verifyExposure({
      netns: info.netns.host,
      dockerHost: info.dockerHost,
      active: true,
      families: [4],
      sourceNetns: { lan: info.netns.ext },
      loopbackNetns: info.netns.ext2,
      timeoutMs: 1500,
    });
    console.log(
      `verify exposure --active (localhost-publish): ${r.summary.compared} rows compared with the kernel, ${r.summary.agreed} agreed (of ${r.summary.rows} rows)`,
    );
    for (const x of r.rows.filter((p) => p.active !== null && !p.active.agrees)) console.log(`disagreement: ${x.id}: ${x.active?.note ?? ''}`);
    const lo = r.rows.find((x) => x.target.kind === 'published' && x.target.addr === '127.0.0.1' && x.source === 'lan');
    expect(lo).toMatchObject({ status: 'reachable', via: 'dnat', active: { agrees: true } });
    expect(lo?.active?.kernelDeciding).toMatch(/accept/);
    expect(lo?.change.join(' ')).toMatch(/raw PREROUTING/);
    // bound to 127.0.0.1 only: no row for the uplink address
    expect(r.rows.some((x) => x.target.kind === 'published' && x.target.addr === info.hostAddr)).toBe(false);
    expect(r.summary.compared).toBeGreaterThanOrEqual(3);
    expect(r.summary.agreed).toBe(r.summary.compared);
  }, 300_000);
});

describe('verify exposure --active (lab ufw: default deny incoming, 8000 denied, Docker 20.10)', () => {
  const UID = labTestId('xu');
  const info = useLab(UID, 'ufw');

  it("names the bypass: ufw denies 8000 in INPUT, the DNAT'd packet crosses FORWARD; the kernel agrees", async () => {
    if (info.dockerHost === null) throw new Error('the ufw scenario has no dockerd');
    const r = await verifyExposure({
      netns: info.netns.host,
      dockerHost: info.dockerHost,
      active: true,
      families: [4],
      sourceNetns: { lan: info.netns.ext },
      timeoutMs: 1500,
    });
    console.log(
      `verify exposure --active (ufw): ${r.summary.compared} rows compared with the kernel, ${r.summary.agreed} agreed (of ${r.summary.rows} rows)`,
    );
    for (const x of r.rows.filter((p) => p.active !== null && !p.active.agrees)) console.log(`disagreement: ${x.id}: ${x.active?.note ?? ''}`);
    const pub = r.rows.find((x) => x.target.kind === 'published' && x.target.addr === info.hostAddr && x.source === 'lan');
    expect(pub).toMatchObject({
      status: 'reachable',
      via: 'dnat',
      deciding: { chain: 'DOCKER', owner: 'docker' },
      active: { fate: 'answered', agrees: true },
    });
    expect(pub?.why.join('\n')).toMatch(
      /ufw denies 8000\/tcp in INPUT \(filter ufw-user-input rule \d+: -A ufw-user-input -p tcp -m tcp --dport 8000 -j DROP\); this packet is DNAT'd to 172\.17\.0\.2:80 and crosses FORWARD, so INPUT is never consulted/,
    );
    expect(r.summary.compared).toBeGreaterThanOrEqual(3);
    expect(r.summary.agreed).toBe(r.summary.compared);
  }, 300_000);
});

describe('verify exposure --active (lab ipv6: dockerd --ipv6 --ip6tables, userland proxy off, Docker 20.10)', () => {
  const VID = labTestId('x6');
  const info = useLab(VID, 'ipv6');

  it('IPv6 rows are played like IPv4 ones (one inet trace table): every played row agrees with the kernel', async () => {
    if (info.dockerHost === null) throw new Error('the ipv6 scenario has no dockerd');
    const r = await verifyExposure({
      netns: info.netns.host,
      dockerHost: info.dockerHost,
      active: true,
      families: [4, 6],
      sourceNetns: { lan: info.netns.ext },
      timeoutMs: 1500,
    });
    const played6 = r.rows.filter((x) => x.family === 6 && x.active !== null);
    console.log(
      `verify exposure --active (ipv6): ${r.summary.compared} rows compared with the kernel (${played6.length} IPv6), ${r.summary.agreed} agreed (of ${r.summary.rows} rows)`,
    );
    for (const x of r.rows.filter((p) => p.active !== null && !p.active.agrees)) console.log(`disagreement: ${x.id}: ${x.active?.note ?? ''}`);
    expect(played6.length).toBeGreaterThanOrEqual(6);
    expect(r.summary.agreed).toBe(r.summary.compared);
    const pub6 = played6.find((x) => x.target.kind === 'published' && x.source === 'lan' && x.target.addr === info.v6?.hostAddr);
    expect(pub6).toMatchObject({ status: 'reachable', via: 'dnat', active: { fate: 'answered', agrees: true } });
    // [::1] DNATed out of docker0 and MASQUERADEd: the container gets the SYN, its answer cannot come back to ::1
    const lo6 = played6.find((x) => x.target.kind === 'published' && x.target.addr === '::1' && x.source === 'host');
    expect(lo6?.active).toMatchObject({ fate: 'dropped', agrees: true });
    expect(r.ok).toBe(true);
  }, 300_000);
});
