/**
 * "Why did `ufw deny 8000` do nothing?": for a packet DNAT'd to a container, explain says that the
 * firewall on INPUT (named, with its rule) would have judged the packet before DNAT but is never
 * consulted — decided by the simulator on the ruleset without DNAT.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explainPacket } from '../../src/explain/explain.js';
import { inputNeverConsulted, withoutDnat } from '../../src/explain/input-bypass.js';
import type { Tuple } from '../../src/model/tuple.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { makeHostContext, parseIpAddr, parseIpRoute } from '../../src/ruleset/host-context.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';

const FIX = join(new URL('../..', import.meta.url).pathname, 'test', 'fixtures', 'ruleset');
const host = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);
const DOCKER_NAT = `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -p tcp -m tcp --dport 8000 -j DNAT --to-destination 192.168.0.2:80
COMMIT
`;
const filter = (input: string) => `*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-user-input
${input}
COMMIT
`;
const tuple: Tuple = { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', sport: 40000, dst: '10.0.10.26', dport: 8000 };

function check(input: string) {
  const rs = parseIptablesSave(DOCKER_NAT + filter(input), { source: 't' });
  const spec = { tuple, iif: 'eth0' };
  const ex = explainPacket(compileRuleset(rs, host), spec);
  return inputNeverConsulted(ex, spec, compileRuleset(withoutDnat(rs), host));
}

describe('a published port bypasses INPUT: said outright', () => {
  it("ufw's deny for the published port is named, with the reason it never applies", () => {
    const r = check('-A ufw-user-input -p tcp -m tcp --dport 8000 -j DROP');
    expect(r?.rule.owner).toBe('ufw');
    expect(r?.sentence).toMatch(
      /^ufw denies 8000\/tcp in INPUT \(filter ufw-user-input rule 1: .*--dport 8000 -j DROP\); this packet is DNAT'd to 192\.168\.0\.2:80 and crosses FORWARD, so INPUT is never consulted$/,
    );
  });

  it('an INPUT that drops by policy is the INPUT firewall; one that would accept the packet anyway is no surprise', () => {
    expect(check('-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT')?.sentence).toMatch(
      /^ufw denies 8000\/tcp in INPUT \(the policy of filter INPUT \(drop\)\)/,
    );
    const rs = parseIptablesSave(`${DOCKER_NAT}*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n`, { source: 't' });
    const ex = explainPacket(compileRuleset(rs, host), { tuple, iif: 'eth0' });
    expect(inputNeverConsulted(ex, { tuple, iif: 'eth0' }, compileRuleset(withoutDnat(rs), host))).toBeNull();
  });

  it('no DNAT, nothing to say', () => {
    const rs = parseIptablesSave(filter('-A ufw-user-input -p tcp -m tcp --dport 8000 -j DROP'), { source: 't' });
    const ex = explainPacket(compileRuleset(rs, host), { tuple, iif: 'eth0' });
    expect(inputNeverConsulted(ex, { tuple, iif: 'eth0' }, compileRuleset(withoutDnat(rs), host))).toBeNull();
  });
});
