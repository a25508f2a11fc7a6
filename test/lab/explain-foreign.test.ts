/**
 * explain on a host that is not only Docker (id "fo"): a kube-proxy-style NodePort (KUBE-SERVICES →
 * KUBE-NODEPORTS → KUBE-SVC → KUBE-SEP DNAT, KUBE-MARK-MASQ, KUBE-POSTROUTING `MASQUERADE
 * --random-fully`) and a libvirt-style NAT (LIBVIRT_PRT `MASQUERADE --to-ports 1024-65535`) added
 * to the lab's Docker host. Each probe's explained path equals the kernel's trace, its NAT equals
 * conntrack's entry (the port where the kernel chose it), no Docker meaning appears on the other
 * tools' chains, and the kernel-chosen ports are said to be the kernel's. A ufw-style deny of the
 * published port on INPUT is said to be bypassed (`journey explain` names the rule).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labUp, type LabInfo } from '../../lab/driver.js';
import type { ProbeDef } from '../../lab/probes.js';
import { compileRuleset, explainPacket } from '../../src/explain/explain.js';
import { run } from '../../src/host/exec.js';
import type { KernelTrace } from '../../src/netfilter/kernel-trace.js';
import { hostFromDumps, readHostDumps, readRulesetDumps, rulesetFromDumps } from '../../src/ruleset/load.js';
import { ruleOwner } from '../../src/ruleset/owners.js';
import { compareProbesWithKernel } from './ipv6-helpers.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('fo');
const MAIN = join(import.meta.dirname, '../../dist/src/cli/main.js');

/** kube-proxy's and libvirt's chains, put before Docker's (iptables-restore --noflush). */
const FOREIGN = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:LIBVIRT_PRT - [0:0]
-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-I POSTROUTING 2 -j LIBVIRT_PRT
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m tcp --dport 31455 -j KUBE-EXT-WEB
-A KUBE-EXT-WEB -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-SVC-WEB -j KUBE-SEP-WEB1
-A KUBE-SEP-WEB1 -p tcp -m tcp -j DNAT --to-destination 172.17.0.2:80
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A LIBVIRT_PRT -s 172.17.0.0/16 ! -d 172.17.0.0/16 -p tcp -j MASQUERADE --to-ports 1024-65535
COMMIT
*filter
:ufw-user-input - [0:0]
-I INPUT 1 -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 8000 -j DROP
COMMIT
`;

const probe = (name: string, from: string, to: string, port: number, description: string): ProbeDef => ({
  name,
  from,
  proto: 'tcp',
  to,
  port,
  expect: 'answer',
  description,
});
const PROBES: readonly ProbeDef[] = [
  probe('ext-to-nodeport', 'ext', 'host', 31455, 'external client -> NodePort 31455 (kube-proxy DNAT to web:80, masqueraded --random-fully)'),
  probe('container-to-outside', 'client', 'outside', 80, 'client -> 198.51.100.10:80 (libvirt-style MASQUERADE --to-ports 1024-65535)'),
  probe(
    'ext-to-published',
    'ext',
    'host',
    8000,
    "external client -> Docker's published port 8000 (kube-proxy's chains passed; ufw's deny of 8000 on INPUT never met)",
  ),
];

describe('explain on a host that is not only Docker: kube-proxy and libvirt rules beside Docker', () => {
  let info: LabInfo;
  beforeAll(async () => {
    await labDown(ID);
    info = await labUp({ id: ID, scenario: 'default' });
    await run(['iptables-restore', '--noflush'], { netns: info.netns.host, input: FOREIGN });
  }, 300_000);
  afterAll(() => labDown(ID), 120_000);

  it("every probe's path and NAT equal the kernel's trace and conntrack; the kernel's ports are said to be its own", async () => {
    const traces = new Map<string, KernelTrace>();
    const cmp = await compareProbesWithKernel(ID, info, PROBES, traces);
    console.log(
      `explain-foreign: ${cmp.first} first packets and ${cmp.later} later packets compared with nft monitor trace, ${cmp.nat} NATs with conntrack (kube-proxy + libvirt rules beside Docker's); differences: ${cmp.bad.length}`,
    );
    expect(cmp.bad).toEqual([]);
    expect(cmp.first).toBe(PROBES.length);
    expect(cmp.nat).toBe(PROBES.length);

    const ns = info.netns.host;
    const compiled = compileRuleset(
      rulesetFromDumps(await readRulesetDumps({ netns: ns }), ns),
      hostFromDumps(await readHostDumps({ netns: ns }), ns),
    );
    const node = explainPacket(compiled, {
      tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', sport: 40000, dst: '10.0.10.26', dport: 31455 },
      iif: 'eth0',
    });
    expect(node.nat.snat?.portChoice?.how).toBe('kernel'); // --random-fully: the kernel picks
    const out = explainPacket(compiled, {
      tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '172.17.0.3', sport: 40000, dst: '198.51.100.10', dport: 80 },
      iif: 'docker0',
    });
    expect(out.nat.snat?.portChoice).toMatchObject({ how: 'kept-if-unique', range: '1024-65535' });
    const dockerWords = [...node.steps, ...out.steps].filter(
      (s) =>
        ruleOwner(s.family, s.table, s.chain, s.rule ?? undefined) !== 'docker' &&
        /docker|published port|the container/i.test(s.meaning ?? '') &&
        !/^DOCKER/.test(s.target ?? ''),
    );
    expect(dockerWords.map((s) => `${s.table} ${s.chain}: ${s.meaning}`)).toEqual([]);

    // `ufw deny 8000` did nothing: the command says why, naming the rule
    const cli = await run([process.execPath, MAIN, 'explain', '--netns', ns, '--src', '10.0.10.5:40000', '--dst', '10.0.10.26:8000', '--in', 'eth0']);
    expect(cli.stdout).toMatch(
      /ufw denies 8000\/tcp in INPUT \(filter ufw-user-input rule 1: .*--dport 8000 -j DROP\); this packet is DNAT'd to 172\.17\.0\.2:80 and crosses FORWARD, so INPUT is never consulted/,
    );
  }, 180_000);
});

describe("explain on Debian's ufw with Docker (scenario ufw): paths through ufw's own chains equal the kernel's", () => {
  const UFW_ID = labTestId('fu');
  let info: LabInfo;
  beforeAll(async () => {
    await labDown(UFW_ID);
    info = await labUp({ id: UFW_ID, scenario: 'ufw' });
  }, 300_000);
  afterAll(() => labDown(UFW_ID), 120_000);

  it("published port (ufw's deny never met), a host port ufw denies (its LOG rule under -m limit), a container going out", async () => {
    const probes: ProbeDef[] = [
      probe('ext-to-published', 'ext', 'host', 8000, "external -> published 8000: DNAT'd, FORWARD, ufw's INPUT deny never met"),
      probe('container-to-outside', 'client', 'outside', 80, 'client -> 198.51.100.10:80 through ufw-before-forward and Docker'),
      { ...probe('ext-to-denied-host-port', 'ext', 'host', 9999, "external -> 10.0.10.26:9999: ufw's default deny on INPUT"), expect: 'no-answer' },
    ];
    const cmp = await compareProbesWithKernel(UFW_ID, info, probes, new Map());
    console.log(
      `explain-foreign (ufw): ${cmp.first} first packets and ${cmp.later} later packets compared with nft monitor trace, ${cmp.nat} NATs with conntrack; differences: ${cmp.bad.length}`,
    );
    expect(cmp.bad).toEqual([]);
    expect(cmp.first).toBe(probes.length);
    const ns = info.netns.host;
    const cli = await run([process.execPath, MAIN, 'explain', '--netns', ns, '--src', '10.0.10.5:40000', '--dst', '10.0.10.26:8000', '--in', 'eth0']);
    expect(cli.stdout).toMatch(/ufw denies 8000\/tcp in INPUT .*so INPUT is never consulted/);
  }, 180_000);
});
