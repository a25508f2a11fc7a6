/**
 * Meanings come from what a rule is (src/ruleset/owners.ts): no Docker words on chains Docker did
 * not make (a kube-proxy node, libvirt's NAT, a ufw raw table holding only a trace rule), and
 * Docker's words where Docker made the chain or the rule (moby's Docker 28 goldens).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explainPacket } from '../../src/explain/explain.js';
import type { Explanation } from '../../src/model/explanation.js';
import type { Tuple } from '../../src/model/tuple.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { makeHostContext, parseIpAddr, parseIpRoute } from '../../src/ruleset/host-context.js';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { chainOwner, ruleOwner } from '../../src/ruleset/owners.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const FIX = join(ROOT, 'test', 'fixtures', 'ruleset');
const GOLDEN = process.env['JOURNEY_CORPUS'] ?? join(ROOT, '..', 'shared', 'corpus', 'moby-golden');
const host = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);
const tcp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });
const DOCKER_WORDS = /docker|published port|the container/i;
const meanings = (ex: Explanation): string[] => ex.steps.map((s) => `${s.table} ${s.chain}: ${s.meaning ?? ''}`);

const KUBE = `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-EXT-ABC - [0:0]
:KUBE-SVC-ABC - [0:0]
:KUBE-SEP-ONE - [0:0]
:KUBE-SEP-TWO - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m tcp --dport 31455 -j KUBE-EXT-ABC
-A KUBE-EXT-ABC -j KUBE-MARK-MASQ
-A KUBE-EXT-ABC -j KUBE-SVC-ABC
-A KUBE-SVC-ABC -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-ONE
-A KUBE-SVC-ABC -j KUBE-SEP-TWO
-A KUBE-SEP-ONE -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A KUBE-SEP-TWO -p tcp -m tcp -j DNAT --to-destination 10.244.2.7:8080
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
COMMIT
`;

const LIBVIRT_UFW = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 9999 -j TRACE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LIBVIRT_PRT - [0:0]
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -s 10.0.10.0/24 ! -d 10.0.10.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-before-input - [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-before-input
-A ufw-before-input -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
`;

describe('meanings by owner', () => {
  it('recognises owners by chain and table names, and Docker rules in built-in chains by shape', () => {
    expect(chainOwner('ip', 'nat', 'KUBE-SVC-ABC')).toBe('kube-proxy');
    expect(chainOwner('ip', 'nat', 'LIBVIRT_PRT')).toBe('libvirt');
    expect(chainOwner('ip', 'filter', 'ufw-user-input')).toBe('ufw');
    expect(chainOwner('inet', 'firewalld', 'filter_IN_public')).toBe('firewalld');
    expect(chainOwner('ip', 'filter', 'DOCKER-USER')).toBe('docker');
    expect(chainOwner('ip', 'docker-bridges', 'filter-FORWARD')).toBe('docker');
    expect(chainOwner('ip', 'nat', 'POSTROUTING')).toBe('neutral');
    expect(ruleOwner('ip', 'nat', 'POSTROUTING', '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE')).toBe('docker');
    expect(ruleOwner('ip', 'raw', 'PREROUTING', '-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP')).toBe('docker');
    expect(ruleOwner('ip', 'nat', 'POSTROUTING', '-A POSTROUTING -s 10.0.0.0/8 ! -o eth1 -j MASQUERADE')).toBe('neutral');
  });

  it('a kube-proxy NodePort: kube-proxy words, none of Docker', () => {
    const c = compileRuleset(parseIptablesSave(KUBE, { source: 'kube' }), host);
    const ex = explainPacket(c, { tuple: tcp('10.0.10.5', 40000, '10.0.10.26', 31455), iif: 'eth0' });
    const m = meanings(ex);
    expect(m.filter((x) => DOCKER_WORDS.test(x))).toEqual([]);
    expect(m.join('\n')).toMatch(/KUBE-SERVICES: .*kube-proxy/);
    expect(m.join('\n')).toMatch(/nat PREROUTING: .*KUBE-SERVICES|kube-proxy: Kubernetes services/);
  });

  it("the docker-proxy note only on a port Docker published: a hand-written port forward is not docker-proxy's", () => {
    // the same port forward twice: by hand in PREROUTING (neutral), by Docker in nat DOCKER; the
    // host's own packet to that port skips PREROUTING, is not DNATed and is delivered to the host
    const natTable = (rule: string): string => `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
${rule}
COMMIT
`;
    const local = { tuple: tcp('10.0.10.26', 40000, '10.0.10.26', 8000), local: true } as const;
    const notes = (rules: string): readonly string[] =>
      explainPacket(compileRuleset(parseIptablesSave(natTable(rules), { source: 't' }), host), local).notes ?? [];
    expect(notes('-A PREROUTING -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80').join('\n')).not.toMatch(/docker-proxy/);
    expect(notes('-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80').join('\n')).toMatch(
      /port 8000\/tcp is published \(DNAT to 172\.17\.0\.2:80\).*docker-proxy/,
    );
  });

  it("libvirt's masquerade and a ufw raw table holding only a trace rule: no Docker words", () => {
    const c = compileRuleset(parseIptablesSave(LIBVIRT_UFW, { source: 'libvirt+ufw' }), host);
    const out = explainPacket(c, { tuple: tcp('10.0.10.26', 40000, '198.51.100.10', 80), local: true });
    const fwd = explainPacket(c, { tuple: tcp('10.0.10.5', 40000, '10.0.10.26', 9999), iif: 'eth0' });
    const m = [...meanings(out), ...meanings(fwd)];
    expect(m.filter((x) => DOCKER_WORDS.test(x))).toEqual([]);
    expect(m.join('\n')).toMatch(/ufw: ufw-before-input/);
  });

  it("Docker 28 goldens: Docker's words appear only on Docker's chains and rules", () => {
    const dir = join(GOLDEN, 'iptables');
    const files = readdirSync(dir).filter((f) => f.endsWith('__iptables.golden'));
    expect(files.length).toBeGreaterThan(10);
    let docker = 0;
    for (const f of files) {
      const rs = parseIptablesSave(readFileSync(join(dir, f), 'utf8'), { source: f });
      const c = compileRuleset(rs, host);
      for (const spec of [
        { tuple: tcp('10.0.10.5', 40000, '10.0.10.26', 8080), iif: 'eth0' },
        { tuple: tcp('192.168.0.3', 40000, '198.51.100.10', 80), iif: 'br-dummy' },
      ]) {
        for (const s of explainPacket(c, spec).steps) {
          if (!DOCKER_WORDS.test(s.meaning ?? '')) continue;
          docker++;
          const own = ruleOwner(s.family, s.table, s.chain, s.rule ?? undefined);
          const target = s.target !== undefined ? chainOwner(s.family, s.table, s.target) : 'neutral';
          expect([own, target], `${f}: ${s.table} ${s.chain}: ${s.meaning}`).toContain('docker');
        }
      }
    }
    expect(docker).toBeGreaterThan(files.length);
  });
});
